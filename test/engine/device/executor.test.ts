/**
 * The queue executor's entry point for commands that do not come through an
 * SQ in the arena (what a network transport feeds it): they run through the
 * same accounting and post their completions to the SQ's CQ.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { bringUp, pattern, type Harness } from '../../helpers/harness.js';
import { AdminOpcode, NvmOpcode } from '../../../src/engine/spec/opcodes.js';
import { CQE_SIZE, decodeCompletion, decodeCommandWords, encodeCommandWords, type Command, type Completion } from '../../../src/engine/spec/command.js';
import { INVALID_OPCODE } from '../../../src/engine/device/status.js';
import type { DmaBuffer } from '../../../src/engine/dma-arena.js';

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
