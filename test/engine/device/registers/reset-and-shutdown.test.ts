/**
 * Controller registers: controller reset (CC.EN 1 -> 0), shutdown (CC.SHN)
 * and NVM subsystem reset (NSSR) (NVMe 1.4, 3.1.5, 3.1.6, 3.1.7, 7.3, 7.6.2).
 * Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import { memoryNamespace, tick, pattern, waitFor, DATA_PATHS } from '../../../helpers/harness.js';
import { CC, CSTS, NSSR, sqTailDb, cqHeadDb, RDY, CFS, NSSRO, shst, NSSR_NVME, aerDw0, AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION, up, csts, track, heldAer, stalledNamespace, fileNamespace } from './helpers.js';

describe('controller reset (CC.EN 1 -> 0)', () => {
  it('clears CSTS.RDY and deletes the I/O queues: a later doorbell write to one raises an error event', async () => {
    const h = await up({ namespaces: [memoryNamespace()] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    await qp.write(1, 0, 1, pattern(4096, 1));
    expect(csts(t) & RDY).toBe(RDY);

    t.write32(CC, t.read32(CC) & ~1);
    // Nothing was in flight on a memory namespace, so the reset is complete at once.
    expect(csts(t) & (RDY | CFS)).toBe(0);
    expect(h.controller.state).toBe('disabled');

    await h.driver.reset();
    expect(csts(t) & RDY).toBe(RDY);
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(1), 1);
    const c = await aer;
    expect(c.status).toBe(0);
    expect(c.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));

    // And the CQ is gone too: an SQ cannot be attached to it.
    const sqMem = h.arena.alloc(8 * 64);
    const create = await h.driver.adminPassthru({ opcode: 0x01, prp1: sqMem.iova, cdw10: (7 << 16) | 1, cdw11: (1 << 16) | 1 });
    expect(create.status).toBe((1 << 14) | (1 << 8) | 0x00); // Completion Queue Invalid, DNR
  });

  it.each(DATA_PATHS)('commands in flight on a file namespace are dropped: CSTS.RDY clears, no completion is posted, the host fails them on reset (%s)', async (dataPath) => {
    const { backend } = stalledNamespace(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const reads = Array.from({ length: 8 }, (_, i) => track(qp.passthru({ opcode: 0x02, nsid: 1, cdw10: i * 16, cdw12: 15 }, { buffer: new Uint8Array(16 * 4096), direction: 'from-device' })));
    t.write32(CC, t.read32(CC) & ~1);
    await waitFor(() => (csts(t) & RDY) === 0, 'CSTS.RDY to clear');
    await tick(20);
    // No CQE was written to the I/O CQ: every status word still has phase tag 0.
    const cq = qp.cq.bytes;
    for (let i = 0; i < 16; i++) expect(cq[i * 16 + 14]! & 1).toBe(0);
    expect(reads.some((r) => r.settled)).toBe(false);
    expect(h.controller.state).toBe('disabled');

    // The host's reset fails what it had outstanding.
    await h.driver.reset();
    await tick();
    for (const r of reads) {
      expect(r.settled).toBe(true);
      expect(r.error).toMatchObject({ code: 'NVMQ_CONTROLLER_RESET' });
    }
  });
});

// ------------------------------------------------------------------ CC.SHN

describe('shutdown (CC.SHN)', () => {
  it('normal shutdown through the registers: SHST reaches 10b only after the namespaces are flushed', async () => {
    const { backend, file } = fileNamespace();
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const data = pattern(4 * 4096, 7);
    await qp.write(1, 10, 4, data);
    backend.flushes = 0;
    backend.watch = () => shst(csts(t));

    t.write32(CC, (t.read32(CC) | (1 << 14)) >>> 0);
    // The flush is still running in libuv's pool, so the shutdown cannot be complete yet.
    expect(shst(csts(t))).not.toBe(2);
    await waitFor(() => shst(csts(t)) === 2, 'CSTS.SHST = 10b');
    expect(backend.flushes).toBeGreaterThanOrEqual(1);
    expect(backend.shstWhenFlushed.length).toBe(backend.flushes);
    expect(backend.shstWhenFlushed.every((s) => s !== 2)).toBe(true);
    expect(new Uint8Array(fs.readFileSync(file).subarray(10 * 4096, 14 * 4096))).toEqual(data);
  });

  it('driver.shutdown(): SHST = 10b after a flush of the file namespace, then RDY clears', async () => {
    const { backend, file } = fileNamespace();
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }] });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const data = pattern(8 * 4096, 9);
    await qp.write(1, 100, 8, data);
    backend.flushes = 0;
    backend.watch = () => shst(csts(t));

    await h.driver.shutdown();
    expect(backend.flushes).toBeGreaterThanOrEqual(1);
    expect(backend.shstWhenFlushed.every((s) => s !== 2)).toBe(true);
    expect(shst(csts(t))).toBe(2);
    expect(csts(t) & RDY).toBe(0);
    expect(new Uint8Array(fs.readFileSync(file).subarray(100 * 4096, 108 * 4096))).toEqual(data);
  });

  it('a memory-only controller reports the shutdown complete at once', async () => {
    const h = await up();
    const t = h.transport;
    t.write32(CC, (t.read32(CC) | (1 << 14)) >>> 0);
    expect(shst(csts(t))).toBe(2);
  });
});

// ------------------------------------------------------------------ NSSR

describe('NVM subsystem reset (NSSR)', () => {
  it('"NVMe" resets the controller and sets CSTS.NSSRO; any other value does nothing; NSSR reads 0', async () => {
    const h = await up();
    const t = h.transport;
    await h.driver.createIoQueuePair({ entries: 8 });
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);

    t.write32(NSSR, 0x12345678);
    t.write32(NSSR, 0x654d564e); // the bytes reversed
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);

    t.write32(NSSR, NSSR_NVME);
    expect(csts(t) & NSSRO).toBe(NSSRO);
    expect(csts(t) & RDY).toBe(0);
    expect(t.read32(CC) & 1).toBe(0);
    expect(t.read32(NSSR)).toBe(0);

    // The controller comes back up, without the I/O queue it had.
    await h.driver.reset();
    expect(csts(t) & RDY).toBe(RDY);
    const { done: aer } = await heldAer(h);
    t.write32(cqHeadDb(1), 0);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });

  it('CSTS.NSSRO is write-1-to-clear and the rest of CSTS is read-only', async () => {
    const h = await up();
    const t = h.transport;
    t.write32(NSSR, NSSR_NVME);
    await h.driver.reset();
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);

    t.write32(CSTS, 0);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);
    t.write32(CSTS, ~NSSRO >>> 0);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY | NSSRO);
    expect(csts(t) & CFS).toBe(0);
    t.write32(CSTS, NSSRO);
    expect(csts(t) & (RDY | NSSRO)).toBe(RDY);
    t.write32(CSTS, 0xffffffff);
    expect(csts(t) & (RDY | CFS | NSSRO)).toBe(RDY);
  });
});
