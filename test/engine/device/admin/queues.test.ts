/**
 * Admin command set conformance: Create / Delete I/O Submission and Completion
 * Queues (NVMe 1.4, 5.3 - 5.7). Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern, DATA_PATHS, type Harness, type HarnessOptions } from '../../../helpers/harness.js';
import { OPC, st, SUCCESS, INVALID_FIELD, DATA_TRANSFER_ERROR, ABORTED_SQ_DELETION, PRP_OFFSET_INVALID, COMPLETION_QUEUE_INVALID, INVALID_QUEUE_IDENTIFIER, INVALID_QUEUE_SIZE, INVALID_INTERRUPT_VECTOR, INVALID_QUEUE_DELETION, up, stalledFile, admin, createCq, createSq } from './helpers.js';

describe('Create I/O Completion Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4, mqes: 63 }, driver: { ioQueues: 2 } };

  it('good case: the CQ receives the completions of an SQ bound to it', async () => {
    const h = await up(opts);
    const cq = h.arena.alloc(8 * 16);
    const sq = h.arena.alloc(8 * 64);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cq.iova, iv: 1 }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sq.iova }))).toEqual(SUCCESS);

    // A Flush written by hand into SQ slot 0 completes in CQ slot 0.
    const dv = h.arena.view;
    dv.setUint32(sq.offset, (0x00 | (0x77 << 16)) >>> 0, true);
    dv.setUint32(sq.offset + 4, 1, true);
    h.transport.write32(0x1000 + 2 * 1 * 4, 1);
    expect(dv.getUint16(cq.offset + 14, true)).toBe(1); // phase 1, status 0
    expect(dv.getUint16(cq.offset + 12, true)).toBe(0x77); // CID
    expect(dv.getUint16(cq.offset + 10, true)).toBe(1); // SQID
    expect(dv.getUint16(cq.offset + 8, true)).toBe(1); // SQHD
  });

  it('the largest QID granted and the largest size (MQES + 1) are accepted', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 2, qsize: 63, prp1: h.arena.alloc(64 * 16).iova }))).toEqual(SUCCESS);
  });

  it('QID 0: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 0, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('QID above the number granted by Number of Queues: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 3, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createCq(h, { qid: 0xffff, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('a QID already in use: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('QSIZE 0 (one entry): Invalid Queue Size', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('QSIZE above CAP.MQES: Invalid Queue Size', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 64, prp1: h.arena.alloc(65 * 16).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('PC = 0 while CAP.CQR = 1: Invalid Field in Command', async () => {
    const h = await up(opts);
    expect(st(await createCq(h, { qid: 1, qsize: 7, pc: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_FIELD);
  });

  it('IV beyond the interrupt vectors: Invalid Interrupt Vector', async () => {
    const h = await up(opts); // 4 I/O queues: 5 vectors by default
    expect(st(await createCq(h, { qid: 1, qsize: 7, iv: 4, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 2, qsize: 7, iv: 5, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_INTERRUPT_VECTOR);
    expect(st(await createCq(h, { qid: 2, qsize: 7, iv: 0xffff, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_INTERRUPT_VECTOR);
  });

  it('PRP1 zero or not page aligned: PRP Offset Invalid', async () => {
    const h = await up(opts);
    const mem = h.arena.alloc(4096);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: 0 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: mem.iova + 16 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: mem.iova + 2048 }))).toEqual(PRP_OFFSET_INVALID);
  });

  it('a queue outside host memory: Data Transfer Error', async () => {
    const h = await up({ controller: { maxIoQueues: 4 } });
    const a = h.arena;
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: a.base + a.size }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: a.base - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    // Starts in the last page, ends past it: 512 entries of 16 bytes.
    expect(st(await createCq(h, { qid: 1, qsize: 511, prp1: a.base + a.size - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createCq(h, { qid: 1, qsize: 255, prp1: a.base + a.size - 4096 }))).toEqual(SUCCESS);
  });
});

describe('Create I/O Submission Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4, mqes: 63 }, driver: { ioQueues: 2 } };

  async function withCq(h: Harness, qid = 1): Promise<void> {
    expect(st(await createCq(h, { qid, qsize: 7, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
  }

  it('good case, including several SQs on one CQ and the largest size', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 2, qsize: 63, cqid: 1, qprio: 3, prp1: h.arena.alloc(64 * 64).iova }))).toEqual(SUCCESS);
  });

  it('QID 0, above the number granted, or in use: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 0, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createSq(h, { qid: 3, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('CQID 0 (the admin CQ) or a CQ that does not exist: Completion Queue Invalid', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 2, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 0xffff, prp1: h.arena.alloc(4096).iova }))).toEqual(COMPLETION_QUEUE_INVALID);
  });

  it('QSIZE 0 or above CAP.MQES: Invalid Queue Size', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 0, cqid: 1, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_QUEUE_SIZE);
    expect(st(await createSq(h, { qid: 1, qsize: 64, cqid: 1, prp1: h.arena.alloc(65 * 64).iova }))).toEqual(INVALID_QUEUE_SIZE);
  });

  it('PC = 0: Invalid Field in Command', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, pc: 0, prp1: h.arena.alloc(4096).iova }))).toEqual(INVALID_FIELD);
  });

  it('PRP1 zero or not page aligned: PRP Offset Invalid', async () => {
    const h = await up(opts);
    await withCq(h);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: 0 }))).toEqual(PRP_OFFSET_INVALID);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: h.arena.alloc(4096).iova + 64 }))).toEqual(PRP_OFFSET_INVALID);
  });

  it('a queue outside host memory: Data Transfer Error', async () => {
    const h = await up({ controller: { maxIoQueues: 4 } });
    await withCq(h);
    const a = h.arena;
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: a.base + a.size }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: a.base - 8192 }))).toEqual(DATA_TRANSFER_ERROR);
    // Starts in the last page, ends past it: 128 entries of 64 bytes.
    expect(st(await createSq(h, { qid: 1, qsize: 127, cqid: 1, prp1: a.base + a.size - 4096 }))).toEqual(DATA_TRANSFER_ERROR);
    expect(st(await createSq(h, { qid: 1, qsize: 63, cqid: 1, prp1: a.base + a.size - 4096 }))).toEqual(SUCCESS);
  });
});

describe('Delete I/O Submission / Completion Queue', () => {
  const opts: HarnessOptions = { controller: { maxIoQueues: 4 }, driver: { ioQueues: 2 } };

  it('good case: SQ then CQ; the QIDs can be used again', async () => {
    const h = await up(opts);
    const cqMem = h.arena.alloc(4096);
    const sqMem = h.arena.alloc(4096);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cqMem.iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sqMem.iova }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 1 }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 1 }))).toEqual(SUCCESS);
    expect(st(await createCq(h, { qid: 1, qsize: 7, prp1: cqMem.iova }))).toEqual(SUCCESS);
    expect(st(await createSq(h, { qid: 1, qsize: 7, cqid: 1, prp1: sqMem.iova }))).toEqual(SUCCESS);
  });

  it('Delete I/O SQ with QID 0 or a QID that does not exist: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 0 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 1 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: 0xffff }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(SUCCESS);
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('Delete I/O CQ with QID 0 or a QID that does not exist: Invalid Queue Identifier', async () => {
    const h = await up(opts);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 0 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: 2 }))).toEqual(INVALID_QUEUE_IDENTIFIER);
  });

  it('Delete I/O CQ while an SQ still uses it: Invalid Queue Deletion; the queues keep working', async () => {
    const h = await up(opts);
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_DELETION);
    await qp.write(1, 0, 1, pattern(4096, 1));
    await h.driver.deleteIoQueuePair(qp);
  });

  it.each(DATA_PATHS)('commands in flight on a file namespace complete with Command Aborted due to SQ Deletion before the delete completes (%s)', async (dataPath) => {
    const { backend } = stalledFile(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const ios = Array.from({ length: 6 }, (_, i) => qp.passthru({ opcode: 0x02, nsid: 1, cdw10: i * 32, cdw12: 31 }, { buffer: new Uint8Array(32 * 4096), direction: 'from-device' }));
    // When the delete's completion reaches the host, the aborted commands' CQEs are already in the I/O CQ (phase tag 1).
    let postedBefore = -1;
    const del = admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }).then((c) => {
      postedBefore = Array.from({ length: 16 }, (_, i) => qp.cq.bytes[i * 16 + 14]! & 1).filter((p) => p === 1).length;
      return c;
    });
    const d = await del;
    expect(st(d)).toEqual(SUCCESS);
    const done = await Promise.all(ios);
    for (const c of done) {
      expect(st(c)).toEqual(ABORTED_SQ_DELETION);
      expect(c.sqid).toBe(qp.qid);
    }
    expect(postedBefore).toBe(ios.length);
    // The SQ is gone; its CQ can now be deleted.
    expect(st(await admin(h, { opcode: OPC.DELETE_SQ, cdw10: qp.qid }))).toEqual(INVALID_QUEUE_IDENTIFIER);
    expect(st(await admin(h, { opcode: OPC.DELETE_CQ, cdw10: qp.qid }))).toEqual(SUCCESS);
  });
});
