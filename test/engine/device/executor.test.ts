/**
 * The queue executor's entry point for commands that do not come through an
 * SQ in the arena (what a network transport feeds it): they run through the
 * same accounting and post their completions to the SQ's CQ.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { bringUp, pattern, type Harness } from '../../helpers/harness.js';
import { AdminOpcode, NvmOpcode } from '../../../src/engine/spec/opcodes.js';
import { CQE_SIZE, decodeCompletion, decodeCommandWords, encodeCommandWords, type Command, type Completion } from '../../../src/engine/spec/command.js';
import { INVALID_OPCODE, LBA_OUT_OF_RANGE } from '../../../src/engine/device/status.js';
import type { DmaBuffer } from '../../../src/engine/dma-arena.js';
import { sqTailDb, cqHeadDb } from './registers/helpers.js';

const QID = 60;
const QSIZE = 4;

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** An I/O SQ / CQ pair made with admin commands, interrupts off, whose CQ the test reads itself. */
async function rawQueue(size = QSIZE): Promise<{ h: Harness; cq: DmaBuffer; entry(i: number): Completion }> {
  h = await bringUp();
  const cq = h.arena.alloc(4096);
  const sq = h.arena.alloc(4096);
  await h.driver.adminCommand({ opcode: AdminOpcode.CREATE_IO_CQ, cdw10: QID | ((size - 1) << 16), cdw11: 1, prp1: cq.iova });
  await h.driver.adminCommand({ opcode: AdminOpcode.CREATE_IO_SQ, cdw10: QID | ((size - 1) << 16), cdw11: 1 | (QID << 16), prp1: sq.iova });
  const dv = new DataView(cq.bytes.buffer, cq.bytes.byteOffset, cq.bytes.byteLength);
  return { h, cq, entry: (i) => decodeCompletion(dv, i * CQE_SIZE) };
}

function command(fields: Partial<Command> & { opcode: number }, cid: number): Command {
  const w = new Uint32Array(16);
  encodeCommandWords(w, 0, fields, cid);
  return decodeCommandWords(w, 0);
}

describe('QueueExecutor.submit', () => {
  it('runs a Read handed to it directly: data placed, completion posted to the SQ’s CQ', async () => {
    const { h, entry } = await rawQueue();
    const data = pattern(4096, 7);
    await (await h.driver.createIoQueuePair()).write(1, 5, 1, data);
    const buf = h.arena.alloc(4096);
    const exec = h.controller.executor;
    expect(exec.submit(exec.sq(QID)!, command({ opcode: NvmOpcode.READ, nsid: 1, cdw10: 5, prp1: buf.iova }, 0x1234))).toBe(true);
    const c = entry(0);
    expect(c).toMatchObject({ cid: 0x1234, sqid: QID, status: 0, phase: 1 });
    expect(Buffer.from(buf.bytes.subarray(0, 4096)).equals(Buffer.from(data))).toBe(true);
  });

  it('a command the set lacks completes with its NVMe status', async () => {
    const { h, entry } = await rawQueue();
    const exec = h.controller.executor;
    expect(exec.submit(exec.sq(QID)!, command({ opcode: 0x7f, nsid: 1 }, 9))).toBe(true);
    expect(entry(0)).toMatchObject({ cid: 9, status: INVALID_OPCODE });
  });

  it('refuses, running nothing, when the CQ has no room left', async () => {
    const { h, entry } = await rawQueue(2);
    const exec = h.controller.executor;
    const sq = exec.sq(QID)!;
    // A CQ of 2 entries holds one completion; the second command finds no room and is not run.
    expect(exec.submit(sq, command({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 1))).toBe(true);
    expect(exec.submit(sq, command({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 2))).toBe(false);
    expect(entry(0).cid).toBe(1);
    expect(entry(1).phase).toBe(0);
    expect(sq.inflight).toBe(0);
  });

  it('refuses once the controller is reset', async () => {
    const { h } = await rawQueue();
    const exec = h.controller.executor;
    const sq = exec.sq(QID)!;
    await h.driver.reset();
    expect(exec.submit(sq, command({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 1))).toBe(false);
  });
});

/** The 16 words of an SQE with `fields`, as QueueExecutor.submitDirect takes them (a fabrics SGL in DPTR, which it ignores). */
function words(fields: Partial<Command> & { opcode: number }, cid: number): Uint32Array {
  const w = new Uint32Array(16);
  encodeCommandWords(w, 0, { ...fields, psdt: 1, prp1: 0xdead_b000, prp2: 0x1000 }, cid);
  return w;
}

describe('QueueExecutor.submitDirect', () => {
  it('a Read and a Write with their data in a buffer: the data moves, the status goes to the callback, nothing to the CQ', async () => {
    const { h, entry } = await rawQueue();
    const q = await h.driver.createIoQueuePair();
    const data = pattern(4096, 3);
    await q.write(1, 9, 1, data);
    const exec = h.controller.executor;
    const sq = exec.sq(QID)!;
    const into = new Uint8Array(4096);
    const got: Array<[number, number]> = [];
    expect(exec.submitDirect(QID, words({ opcode: NvmOpcode.READ, nsid: 1, cdw10: 9 }, 0x77), into, (status, dw0) => got.push([status, dw0]))).toBe(true);
    // A memory namespace completes inside the call.
    expect(got).toEqual([[0, 0]]);
    expect(Buffer.from(into).equals(Buffer.from(data))).toBe(true);
    const other = pattern(4096, 11);
    expect(exec.submitDirect(QID, words({ opcode: NvmOpcode.WRITE, nsid: 1, cdw10: 10 }, 0x77), other, (status) => got.push([status, -1]))).toBe(true);
    expect(got[1]).toEqual([0, -1]);
    const back = new Uint8Array(4096);
    await q.read(1, 10, 1, back);
    expect(Buffer.from(back).equals(Buffer.from(other))).toBe(true);
    expect(entry(0).phase).toBe(0);
    expect(sq.inflight).toBe(0);
  });

  it('the controller’s checks give their statuses: LBA out of range, an opcode the set lacks, a buffer shorter than the transfer', async () => {
    const { h } = await rawQueue();
    const exec = h.controller.executor;
    const blocks = h.controller.namespaces.get(1)!.blocks;
    const got: number[] = [];
    const done = (status: number): void => void got.push(status);
    exec.submitDirect(QID, words({ opcode: NvmOpcode.READ, nsid: 1, cdw10: blocks }, 1), new Uint8Array(4096), done);
    exec.submitDirect(QID, words({ opcode: 0x7f, nsid: 1 }, 2), undefined, done);
    exec.submitDirect(QID, words({ opcode: NvmOpcode.READ, nsid: 1, cdw10: 0, cdw12: 1 }, 3), new Uint8Array(4096), done);
    expect(got.slice(0, 2)).toEqual([LBA_OUT_OF_RANGE, INVALID_OPCODE]);
    expect(got[2]).not.toBe(0);
  });

  it('refuses on a queue that does not exist (or the admin queue), and once the controller is reset', async () => {
    const { h } = await rawQueue();
    const exec = h.controller.executor;
    const done = (): void => {
      throw new Error('nothing runs');
    };
    expect(exec.submitDirect(QID + 1, words({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 1), undefined, done)).toBe(false);
    expect(exec.submitDirect(0, words({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 1), undefined, done)).toBe(false);
    await h.driver.reset();
    expect(exec.submitDirect(QID, words({ opcode: NvmOpcode.FLUSH, nsid: 1 }, 1), undefined, done)).toBe(false);
  });
});

describe('a CQ with no room', () => {
  it('stops the fetch, and the next head doorbell resumes every SQ posting to it', async () => {
    h = await bringUp();
    // One CQ of 3 entries (room for 2 completions) fed by two SQs of 8.
    const CQ = 50;
    const cq = h.arena.alloc(4096);
    await h.driver.adminCommand({ opcode: AdminOpcode.CREATE_IO_CQ, cdw10: CQ | (2 << 16), cdw11: 1, prp1: cq.iova });
    const sqs = [51, 52].map((qid) => ({ qid, mem: h!.arena.alloc(4096), tail: 0 }));
    for (const sq of sqs) {
      await h.driver.adminCommand({ opcode: AdminOpcode.CREATE_IO_SQ, cdw10: sq.qid | (7 << 16), cdw11: 1 | (CQ << 16), prp1: sq.mem.iova });
    }
    const dv = new DataView(cq.bytes.buffer, cq.bytes.byteOffset, cq.bytes.byteLength);
    const t = h.transport;
    const post = (sq: (typeof sqs)[number], cid: number): void => {
      encodeCommandWords(new Uint32Array(sq.mem.bytes.buffer, sq.mem.bytes.byteOffset, 16 * 8), sq.tail * 16, { opcode: NvmOpcode.FLUSH, nsid: 1 }, cid);
      sq.tail = (sq.tail + 1) % 8;
    };
    // Three commands on the first SQ, two on the second: only two completions fit.
    for (const cid of [1, 2, 3]) post(sqs[0]!, cid);
    t.write32(sqTailDb(sqs[0]!.qid), sqs[0]!.tail);
    for (const cid of [4, 5]) post(sqs[1]!, cid);
    t.write32(sqTailDb(sqs[1]!.qid), sqs[1]!.tail);
    let head = 0;
    let phase = 1;
    const reap = (): number[] => {
      const cids: number[] = [];
      for (;;) {
        const c = decodeCompletion(dv, head * CQE_SIZE);
        if (c.phase !== phase) return cids;
        expect(c.status).toBe(0);
        cids.push(c.cid);
        head = (head + 1) % 3;
        if (head === 0) phase ^= 1;
      }
    };
    const seen = reap();
    expect(seen).toEqual([1, 2]);
    // Each head doorbell frees room: the stalled SQs go on, the first one's rest and then the second's.
    for (let i = 0; i < 3 && seen.length < 5; i++) {
      t.write32(cqHeadDb(CQ), head);
      seen.push(...reap());
    }
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5]);
    // Nothing stalled any more: a head doorbell with room to spare fetches nothing new and loses nothing.
    t.write32(cqHeadDb(CQ), head);
    expect(reap()).toEqual([]);
    post(sqs[1]!, 6);
    t.write32(sqTailDb(sqs[1]!.qid), sqs[1]!.tail);
    expect(reap()).toEqual([6]);
  });
});
