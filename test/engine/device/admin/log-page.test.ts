/**
 * Admin command set conformance: Get Log Page (NVMe 1.4, 5.14). Conventions
 * in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { IMPLEMENTED_ADMIN, IMPLEMENTED_IO, LID, st, SUCCESS, INVALID_OPCODE, INVALID_FIELD, LBA_OUT_OF_RANGE, INVALID_LOG_PAGE, up, admin, arenaBuffer, u32, u16, u64, identify, getLogPage } from './helpers.js';

describe('Get Log Page', () => {
  it('Error Information lists failed commands newest first with error count, SQID, CID, status and phase, LBA, NSID', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const first = await admin(h, { opcode: 0x03 }); // reserved opcode
    const second = await identify(h, 0xff, 0);
    const third = await qp.passthru({ opcode: 0x02, nsid: 1, cdw10: 0x10_0000, cdw12: 0 }, { buffer: new Uint8Array(4096), direction: 'from-device' });
    expect(st(first)).toEqual(INVALID_OPCODE);
    expect(st(second)).toEqual(INVALID_FIELD);
    expect(st(third)).toEqual(LBA_OUT_OF_RANGE);

    const log = arenaBuffer(h, 64 * 64);
    expect(st(await getLogPage(h, LID.ERROR, log))).toEqual(SUCCESS);
    const entry = (i: number): Record<string, number> => {
      const b = i * 64;
      return { count: u64(log, b), sqid: u16(log, b + 8), cid: u16(log, b + 10), status: u16(log, b + 12) >>> 1, phase: u16(log, b + 12) & 1, lba: u64(log, b + 16), nsid: u32(log, b + 24) };
    };
    expect(entry(0)).toMatchObject({ count: 3, sqid: qp.qid, cid: third.cid, status: third.status, phase: third.phase, lba: 0x10_0000, nsid: 1 });
    expect(entry(1)).toMatchObject({ count: 2, sqid: 0, cid: second.cid, status: second.status, phase: second.phase });
    expect(entry(2)).toMatchObject({ count: 1, sqid: 0, cid: first.cid, status: first.status, phase: first.phase });
    for (let i = 3; i < 64; i++) expect(entry(i).count).toBe(0);

    // The driver's parser agrees, and the SMART log counts the entries.
    const parsed = await h.driver.errorLog();
    expect(parsed.map((e) => e.errorCount)).toEqual([3, 2, 1]);
    expect((await h.driver.smartLog()).errorLogEntries).toBe(3);
  });

  it('SMART / Health counts host read and write commands and data units (thousands of 512 bytes, rounded up) exactly', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 16 });
    const s0 = await h.driver.smartLog();
    expect([s0.hostReadCommands, s0.hostWriteCommands, s0.dataUnitsRead, s0.dataUnitsWritten]).toEqual([0, 0, 0, 0]);

    await qp.write(1, 0, 125, pattern(125 * 4096, 1)); // 1000 units of 512 bytes
    let s = await h.driver.smartLog();
    expect([s.hostWriteCommands, s.dataUnitsWritten]).toEqual([1, 1]);
    await qp.write(1, 200, 1, pattern(4096, 2)); // 1008 units
    s = await h.driver.smartLog();
    expect([s.hostWriteCommands, s.dataUnitsWritten]).toEqual([2, 2]);

    await qp.read(1, 0, 125, new Uint8Array(125 * 4096));
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.dataUnitsRead]).toEqual([1, 1]);
    await qp.read(1, 0, 1, new Uint8Array(4096));
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.dataUnitsRead]).toEqual([2, 2]);

    // Flush, Write Zeroes and Dataset Management are neither reads nor writes for these counters.
    await qp.flush(1);
    await qp.writeZeroes(1, 300, 200);
    await qp.deallocate(1, [{ slba: 0, nlb: 10 }]);
    s = await h.driver.smartLog();
    expect([s.hostReadCommands, s.hostWriteCommands, s.dataUnitsRead, s.dataUnitsWritten]).toEqual([2, 2, 2, 2]);
    expect(s.powerCycles).toBe(1);
    expect(s.temperatureKelvin).toBeGreaterThan(0);
  });

  for (const nsid of [1, 2, 0xfffffffe]) {
    it(`SMART / Health with NSID 0x${nsid.toString(16)} (no per-namespace data): Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid }))).toEqual(INVALID_FIELD);
    });
  }

  it('SMART / Health with NSID 0 or FFFFFFFFh succeeds', async () => {
    const h = await up();
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid: 0 }))).toEqual(SUCCESS);
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(512), { nsid: 0xffffffff }))).toEqual(SUCCESS);
  });

  it('Commands Supported and Effects lists exactly the implemented admin and I/O opcodes', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const log = arenaBuffer(h, 4096);
    expect(st(await getLogPage(h, LID.EFFECTS, log))).toEqual(SUCCESS);
    const acs = (op: number): number => u32(log, op * 4);
    const iocs = (op: number): number => u32(log, 1024 + op * 4);
    for (let op = 0; op < 256; op++) {
      expect(acs(op) & 1, `admin opcode 0x${op.toString(16)} CSUPP`).toBe(IMPLEMENTED_ADMIN.includes(op) ? 1 : 0);
      expect(iocs(op) & 1, `I/O opcode 0x${op.toString(16)} CSUPP`).toBe(IMPLEMENTED_IO.includes(op) ? 1 : 0);
      if (!IMPLEMENTED_ADMIN.includes(op)) expect(acs(op)).toBe(0);
      if (!IMPLEMENTED_IO.includes(op)) expect(iocs(op)).toBe(0);
    }
    // Write, Write Zeroes and Dataset Management change logical block content; Read and Flush do not.
    expect(iocs(0x01) & 2).toBe(2);
    expect(iocs(0x08) & 2).toBe(2);
    expect(iocs(0x09) & 2).toBe(2);
    expect(iocs(0x02) & 2).toBe(0);
    expect(iocs(0x00) & 2).toBe(0);
    expect(log.subarray(2048).every((x) => x === 0)).toBe(true); // reserved

    // And every opcode not listed is really rejected as an invalid opcode.
    for (let op = 0; op < 256; op++) {
      if (!IMPLEMENTED_ADMIN.includes(op)) expect(st(await admin(h, { opcode: op })), `admin 0x${op.toString(16)}`).toEqual(INVALID_OPCODE);
      if (!IMPLEMENTED_IO.includes(op)) expect(st(await qp.passthru({ opcode: op, nsid: 1 })), `I/O 0x${op.toString(16)}`).toEqual(INVALID_OPCODE);
    }
  });

  it('a dword-aligned offset returns the log from there; bytes past the end of the log read as zero', async () => {
    const h = await up();
    const whole = arenaBuffer(h, 512);
    expect(st(await getLogPage(h, LID.SMART, whole))).toEqual(SUCCESS);
    const part = arenaBuffer(h, 16, 0xa5);
    expect(st(await getLogPage(h, LID.SMART, part, { offset: 500 }))).toEqual(SUCCESS);
    expect(Array.from(part.subarray(0, 12))).toEqual(Array.from(whole.subarray(500, 512)));
    expect(Array.from(part.subarray(12))).toEqual([0, 0, 0, 0]);
  });

  for (const offset of [1, 2, 3, 6]) {
    it(`an offset that is not dword aligned (${offset}): Invalid Field in Command`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset }))).toEqual(INVALID_FIELD);
    });
  }

  it('an offset beyond the end of the log: Invalid Field in Command', async () => {
    const h = await up();
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset: 516 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.SMART, new Uint8Array(8), { offset: 0x1_0000_0000 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.ERROR, new Uint8Array(64), { offset: 64 * 64 + 64 }))).toEqual(INVALID_FIELD);
    expect(st(await getLogPage(h, LID.EFFECTS, new Uint8Array(8), { offset: 8192 }))).toEqual(INVALID_FIELD);
  });

  for (const lid of [0x00, 0x6f, 0xc0]) {
    it(`unknown LID 0x${lid.toString(16)}: Invalid Log Page`, async () => {
      const h = await up();
      expect(st(await getLogPage(h, lid, new Uint8Array(64)))).toEqual(INVALID_LOG_PAGE);
    });
  }
});
