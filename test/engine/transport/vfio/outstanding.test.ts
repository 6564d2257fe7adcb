// Counting outstanding commands from the host's register writes (what the VFIO transport polls by).
import { describe, expect, it } from 'vitest';
import { DmaArena } from '../../../../src/engine/dma-arena.js';
import { OutstandingCommands } from '../../../../src/engine/transport/vfio/outstanding.js';
import { Regs, sqTailDoorbell, cqHeadDoorbell } from '../../../../src/engine/spec/registers.js';
import { AdminOpcode } from '../../../../src/engine/spec/opcodes.js';

describe('OutstandingCommands', () => {
  it('counts SQ tail advances, takes CQ head advances away, wraps, and learns I/O queue sizes', () => {
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const asq = arena.alloc(4 * 64);
    const o = new OutstandingCommands(arena, 4);
    o.write32(Regs.AQA.offset, (3 << 16) | 3); // 4 entries each
    o.write32(Regs.ASQ.offset, asq.iova % 2 ** 32);
    o.write32(Regs.ASQ.offset + 4, Math.floor(asq.iova / 2 ** 32));
    // Create I/O CQ 1 and SQ 1 with 8 entries, and an AER (not counted).
    const put = (slot: number, opcode: number, cdw10: number): void => {
      asq.bytes[slot * 64] = opcode;
      new DataView(asq.bytes.buffer, asq.bytes.byteOffset).setUint32(slot * 64 + 40, cdw10, true);
    };
    put(0, AdminOpcode.CREATE_IO_CQ, (7 << 16) | 1);
    put(1, AdminOpcode.CREATE_IO_SQ, (7 << 16) | 1);
    put(2, AdminOpcode.ASYNC_EVENT_REQUEST, 0);
    o.write32(sqTailDoorbell(0, 0), 3);
    expect(o.count).toBe(2);
    o.write32(cqHeadDoorbell(0, 0), 2);
    expect(o.count).toBe(0);
    o.write32(sqTailDoorbell(1, 0), 6);
    o.write32(cqHeadDoorbell(1, 0), 5);
    expect(o.count).toBe(1);
    o.write32(sqTailDoorbell(1, 0), 2); // wraps past 8: 4 more
    expect(o.count).toBe(5);
    o.write32(cqHeadDoorbell(1, 0), 2); // 5 consumed
    expect(o.count).toBe(0);
    o.write32(sqTailDoorbell(1, 0), 3);
    o.write32(Regs.CC.offset, 0); // disabled: nothing outstanding
    expect(o.count).toBe(0);
  });
});
