/**
 * The target's I/O path (tcp-command.ts IoPath) on a queue pair a reset
 * failed: an R2T'd write whose data arrives after the reset still holds the
 * old pair, whose QID a new pair may have taken. It must run nothing there:
 * run() says it cannot, and the caller answers Command Interrupted.
 */
import { describe, expect, it } from 'vitest';
import { bringUp, pattern, scratch } from '../../helpers/harness.js';
import { CidSet, IoPath, commandRecord } from '../../../src/engine/target/tcp-command.js';
import { NvmOpcode } from '../../../src/engine/spec/opcodes.js';
import { encodeCommandWords } from '../../../src/engine/spec/command.js';
import { DataDirection } from '../../../src/engine/target/local-io.js';
import type { SpareBuffers } from '../../../src/engine/target/spare-buffers.js';

const { cleanups } = scratch();

describe('IoPath', () => {
  it('runs nothing on a pair a reset failed, even when its QID names a new queue', async () => {
    const h = await bringUp();
    cleanups.push(() => h.close());
    const exec = h.controller.executor;
    const old = await h.driver.createIoQueuePair({ entries: 8 });
    const io = new IoPath(() => exec, { drop() {} } as unknown as SpareBuffers);
    io.use(old);
    await h.driver.reset();
    const fresh = await h.driver.createIoQueuePair({ entries: 8 });
    expect(old.failed).toBe(true);
    expect(fresh.qid).toBe(old.qid);
    const statuses: number[] = [];
    const cmd = commandRecord(5, (_c, status) => void statuses.push(status));
    encodeCommandWords(cmd.words, 0, { opcode: NvmOpcode.WRITE, nsid: 1, cdw10: 7, psdt: 1, prp1: 0, prp2: 0 }, 5);
    cmd.direction = DataDirection.TO_DEVICE;
    cmd.length = 4096;
    cmd.buffer = pattern(4096, 9);
    expect(io.run(old, cmd)).toBe(false);
    expect(statuses).toEqual([]);
    const back = new Uint8Array(4096);
    await fresh.read(1, 7, 1, back);
    expect(back.every((b) => b === 0)).toBe(true);
  });
});

describe('CidSet', () => {
  it('holds each 16-bit CID once, counts them, and forgets what is deleted', () => {
    const s = new CidSet();
    const cids = [0, 1, 31, 32, 33, 4095, 0x8000, 0xfffe, 0xffff];
    for (const c of cids) s.add(c);
    s.add(31);
    expect(s.size).toBe(cids.length);
    for (const c of cids) expect(s.has(c)).toBe(true);
    for (const c of [2, 30, 34, 4094, 0x7fff, 0xfffd]) expect(s.has(c)).toBe(false);
    s.delete(31);
    s.delete(31);
    s.delete(2);
    expect(s.has(31)).toBe(false);
    expect(s.has(32)).toBe(true);
    expect(s.size).toBe(cids.length - 1);
    for (const c of cids) s.delete(c);
    expect(s.size).toBe(0);
    expect(cids.some((c) => s.has(c))).toBe(false);
  });
});
