/**
 * Admin command set conformance: Abort and Asynchronous Event Request (NVMe
 * 1.4, 5.1, 5.2). Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { tick, DATA_PATHS } from '../../../helpers/harness.js';
import { OPC, st, SUCCESS, ABORT_REQUESTED, AER_LIMIT_EXCEEDED, up, stalledFile, admin, identify, track, nextAdminSlot, adminSqeCid } from './helpers.js';

describe('Abort', () => {
  it('aborting a held AER completes it with Command Abort Requested; Abort DW0 bit 0 = 0', async () => {
    const h = await up();
    const slot = await nextAdminSlot(h);
    const aer = track(admin(h, { opcode: OPC.AER }));
    await tick(5);
    expect(aer.settled).toBe(false);
    const cid = adminSqeCid(h, slot);
    const abort = await admin(h, { opcode: OPC.ABORT, cdw10: ((cid << 16) | 0) >>> 0 });
    expect(st(abort)).toEqual(SUCCESS);
    expect(abort.dw0 & 1).toBe(0);
    await tick();
    expect(aer.settled).toBe(true);
    expect(st(aer.value!)).toEqual(ABORT_REQUESTED);
    expect(aer.value!.cid).toBe(cid);
  });

  it('aborting a command that is not outstanding: success with DW0 bit 0 = 1', async () => {
    const h = await up();
    const a = await admin(h, { opcode: OPC.ABORT, cdw10: ((0xbeef << 16) | 0) >>> 0 });
    expect(st(a)).toEqual(SUCCESS);
    expect(a.dw0 & 1).toBe(1);
    const b = await admin(h, { opcode: OPC.ABORT, cdw10: ((0 << 16) | 7) >>> 0 }); // SQ 7 does not exist
    expect(st(b)).toEqual(SUCCESS);
    expect(b.dw0 & 1).toBe(1);
  });

  it.each(DATA_PATHS)('aborting an I/O command still in flight on a file namespace completes it with Command Abort Requested (%s)', async (dataPath) => {
    const { backend, device } = stalledFile(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const read = qp.passthru({ opcode: 0x02, nsid: 1, cdw10: 0, cdw12: 63 }, { buffer: new Uint8Array(64 * 4096), direction: 'from-device' });
    const cid = h.arena.view.getUint16(qp.sq.offset + 2, true); // slot 0 of the fresh SQ
    const abort = await admin(h, { opcode: OPC.ABORT, cdw10: ((cid << 16) | qp.qid) >>> 0 });
    expect(st(abort)).toEqual(SUCCESS);
    expect(abort.dw0 & 1).toBe(0);
    await device.feed(64 * 4096);
    const c = await read;
    expect(st(c)).toEqual(ABORT_REQUESTED);
    expect(c.cid).toBe(cid);
  });
});

describe('Asynchronous Event Request', () => {
  it('is held while there is nothing to report', async () => {
    const h = await up();
    const aer = track(admin(h, { opcode: OPC.AER }));
    await tick(20);
    expect(aer.settled).toBe(false);
    // Other admin commands complete around it.
    expect(st(await identify(h, 0x01, 0))).toEqual(SUCCESS);
    expect(aer.settled).toBe(false);
  });

  it('more than AERL + 1 outstanding: Asynchronous Event Request Limit Exceeded', async () => {
    const h = await up();
    const aerl = h.driver.controller.aerl;
    expect(aerl).toBe(3);
    const held = Array.from({ length: aerl + 1 }, () => track(admin(h, { opcode: OPC.AER })));
    await tick(5);
    expect(held.some((a) => a.settled)).toBe(false);
    expect(st(await admin(h, { opcode: OPC.AER }))).toEqual(AER_LIMIT_EXCEEDED);
    await tick(5);
    expect(held.some((a) => a.settled)).toBe(false);
  });
});
