/**
 * NVM command set: every rejection of an NVM command with its exact status.
 * Rigs and conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { PS, TWO32, INVALID_OPCODE, INVALID_FIELD, DATA_TRANSFER_ERROR, INVALID_NAMESPACE, PRP_OFFSET_INVALID, LBA_OUT_OF_RANGE, OP, DSM_AD, withRig, KINDS, rwFields, putEntry, dsmRanges, expectStatus, expectMedium } from './helpers.js';

describe('rejections', () => {
  it('LBA Out of Range: a read, write or write zeroes past NSZE, and nothing moves', async () => {
    for (const kind of KINDS) {
      await withRig([{ kind, lbaSize: 512, size: 256 << 10 }], async ({ h, qp, ns }) => {
        const n = ns.get(1)!;
        const blocks = 512;
        const model = pattern(n.size, 10);
        n.fill(model);
        const buf = h.arena.alloc(2 * PS);
        const cases: Array<[number, number]> = [
          [blocks - 1, 2],
          [blocks, 1],
          [blocks + 100, 8],
          [TWO32, 1], // only the upper SLBA dword is set
          [TWO32 + 1, 1],
          [2 ** 53, 1],
          [Number.MAX_SAFE_INTEGER, 16],
        ];
        for (const [slba, nlb] of cases) {
          buf.bytes.fill(0xee);
          for (const op of [OP.READ, OP.WRITE]) {
            expectStatus(await qp.passthru({ ...rwFields(op, 1, slba, nlb), prp1: buf.iova, prp2: buf.iova + PS }), LBA_OUT_OF_RANGE);
          }
          expectStatus(await qp.passthru({ ...rwFields(OP.WRITE_ZEROES, 1, slba, nlb) }), LBA_OUT_OF_RANGE);
          expect(buf.bytes.findIndex((b) => b !== 0xee)).toBe(-1);
        }
        // SLBA FFFFFFFF_FFFFFFFFh: must not wrap around to block 0.
        const wrap = { opcode: OP.WRITE, nsid: 1, cdw10: 0xffffffff, cdw11: 0xffffffff, cdw12: 1, prp1: buf.iova };
        expectStatus(await qp.passthru(wrap), LBA_OUT_OF_RANGE);
        expectStatus(await qp.passthru({ ...wrap, opcode: OP.WRITE_ZEROES }), LBA_OUT_OF_RANGE);
        expectStatus(await qp.passthru({ ...wrap, opcode: OP.READ }), LBA_OUT_OF_RANGE);
        expectMedium(n, model);
        // The driver's helpers surface the same status as a typed error.
        const back = new Uint8Array(2 * 512).fill(0x11);
        await expect(qp.read(1, blocks - 1, 2, back)).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE', sct: 0, sc: 0x80, dnr: true });
        expect(back.every((b) => b === 0x11)).toBe(true);
        await expect(qp.writeZeroes(1, blocks, 1)).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
        // The last block itself is fine.
        await qp.writeZeroes(1, blocks - 1, 1);
        model.fill(0, (blocks - 1) * 512);
        expectMedium(n, model);
      });
    }
  });

  it('LBA Out of Range in any one Dataset Management range rejects the command, and no range is deallocated', async () => {
    for (const kind of KINDS) {
      await withRig([{ kind, lbaSize: 4096, size: 1 << 20 }], async ({ qp, ns }) => {
        const n = ns.get(1)!;
        const model = pattern(n.size, 11);
        n.fill(model);
        const good = [
          { slba: 0, nlb: 4 },
          { slba: 50, nlb: 10 },
          { slba: 200, nlb: 56 }, // ends exactly at NSZE
        ];
        const bad = [
          { slba: 250, nlb: 7 },
          { slba: 256, nlb: 1 },
          { slba: 2 ** 40, nlb: 1 },
          { slba: 1, nlb: 0xffffffff },
        ];
        for (const b of bad) {
          for (const at of [0, 1, 3]) {
            const ranges = [...good];
            ranges.splice(at, 0, b);
            const c = await qp.passthru(
              { opcode: OP.DSM, nsid: 1, cdw10: ranges.length - 1, cdw11: DSM_AD },
              { buffer: dsmRanges(ranges), direction: 'to-device' },
            );
            expectStatus(c, LBA_OUT_OF_RANGE);
            expectMedium(n, model);
          }
        }
        // The good ranges alone are fine.
        await qp.deallocate(1, good);
        for (const r of good) model.fill(0, r.slba * PS, (r.slba + r.nlb) * PS);
        expectMedium(n, model);
      });
    }
  });

  it('Invalid Namespace or Format: NSID 0, an inactive NSID, FFFFFFFFh and past NN for data commands', async () => {
    await withRig(
      [
        { kind: 'memory', lbaSize: 4096, size: 1 << 20, nsid: 1 },
        { kind: 'file', lbaSize: 512, size: 1 << 20, nsid: 3 },
      ],
      async ({ h, qp, ns }) => {
        const models = new Map([...ns].map(([id, n]) => [id, n.bytes()]));
        const buf = h.arena.alloc(2 * PS);
        buf.bytes.set(dsmRanges([{ slba: 0, nlb: 1 }]));
        for (const nsid of [0, 2, 4, 1000, 0xfffffffe, 0xffffffff]) {
          for (const op of [OP.READ, OP.WRITE, OP.WRITE_ZEROES]) {
            expectStatus(await qp.passthru({ ...rwFields(op, nsid, 0, 1), prp1: buf.iova }), INVALID_NAMESPACE);
          }
          expectStatus(await qp.passthru({ opcode: OP.DSM, nsid, cdw10: 0, cdw11: DSM_AD, prp1: buf.iova }), INVALID_NAMESPACE);
        }
        for (const [id, n] of ns) expectMedium(n, models.get(id)!);
      },
    );
  });

  it('Invalid Command Opcode for I/O opcodes the controller does not implement', async () => {
    await withRig([{ kind: 'memory', lbaSize: 4096, size: 1 << 20 }], async ({ h, qp, ns }) => {
      const model = ns.get(1)!.bytes();
      const buf = h.arena.alloc(PS);
      // Write Uncorrectable, Compare, Verify, reserved and vendor specific ones, and admin opcodes on an I/O queue.
      for (const opcode of [0x03, 0x04, 0x05, 0x06, 0x0a, 0x0c, 0x0d, 0x11, 0x7f, 0x80, 0x81, 0xc0, 0xff]) {
        const c = await qp.passthru({ ...rwFields(opcode, 1, 0, 1), prp1: buf.iova });
        expectStatus(c, INVALID_OPCODE);
        expect(c.sqid).toBe(qp.qid);
      }
      expectMedium(ns.get(1)!, model);
    });
  });

  it('fused commands and SGLs (not supported) are Invalid Field', async () => {
    await withRig([{ kind: 'memory', lbaSize: 4096, size: 1 << 20 }], async ({ h, qp, ns }) => {
      const model = ns.get(1)!.bytes();
      const buf = h.arena.alloc(PS);
      buf.bytes.fill(0x42);
      expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, 1), fuse: 1, prp1: buf.iova }), INVALID_FIELD);
      expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, 1), psdt: 1, prp1: buf.iova }), INVALID_FIELD);
      expectMedium(ns.get(1)!, model);
    });
  });

  it('PRP errors in raw commands: PRP Offset Invalid and Data Transfer Error, with nothing moved', async () => {
    for (const kind of KINDS) {
      await withRig([{ kind, lbaSize: 4096, size: 1 << 20 }], async ({ h, qp, ns }) => {
        const n = ns.get(1)!;
        const model = pattern(n.size, 12);
        n.fill(model);
        const data = h.arena.alloc(4 * PS);
        data.bytes.fill(0x5a);
        const list = h.arena.alloc(PS);
        const end = h.arena.base + h.arena.size;
        const put = (entries: number[]): number => {
          entries.forEach((e, i) => putEntry(h, list.offset + i * 8, e));
          return list.iova;
        };
        const cases: Array<{ what: string; nlb: number; prp1: number; prp2: () => number; want: number }> = [
          { what: 'PRP1 not dword aligned', nlb: 1, prp1: data.iova + 2, prp2: () => 0, want: PRP_OFFSET_INVALID },
          { what: 'PRP1 zero', nlb: 1, prp1: 0, prp2: () => 0, want: DATA_TRANSFER_ERROR },
          { what: 'PRP1 outside the arena', nlb: 1, prp1: end, prp2: () => 0, want: DATA_TRANSFER_ERROR },
          { what: 'PRP1 below the arena', nlb: 1, prp1: h.arena.base - PS, prp2: () => 0, want: DATA_TRANSFER_ERROR },
          { what: 'PRP2 data pointer not page aligned', nlb: 2, prp1: data.iova, prp2: () => data.iova + PS + 512, want: PRP_OFFSET_INVALID },
          { what: 'PRP2 data pointer zero', nlb: 2, prp1: data.iova, prp2: () => 0, want: DATA_TRANSFER_ERROR },
          { what: 'PRP2 data pointer past the arena', nlb: 2, prp1: data.iova, prp2: () => end, want: DATA_TRANSFER_ERROR },
          { what: 'list pointer not qword aligned', nlb: 3, prp1: data.iova, prp2: () => put([data.iova + PS, data.iova + 2 * PS]) + 4, want: PRP_OFFSET_INVALID },
          { what: 'list pointer outside the arena', nlb: 3, prp1: data.iova, prp2: () => end + 8, want: DATA_TRANSFER_ERROR },
          { what: 'list entry not page aligned', nlb: 3, prp1: data.iova, prp2: () => put([data.iova + PS, data.iova + 2 * PS + 8]), want: PRP_OFFSET_INVALID },
          { what: 'list entry zero', nlb: 4, prp1: data.iova, prp2: () => put([data.iova + PS, 0, data.iova + 3 * PS]), want: DATA_TRANSFER_ERROR },
          { what: 'list entry outside the arena', nlb: 3, prp1: data.iova, prp2: () => put([data.iova + PS, end]), want: DATA_TRANSFER_ERROR },
          { what: 'PRP1 with an offset, so the transfer needs a list', nlb: 2, prp1: data.iova + 8, prp2: () => put([0x77]), want: PRP_OFFSET_INVALID },
        ];
        for (const c of cases) {
          for (const op of [OP.WRITE, OP.READ]) {
            data.bytes.fill(0x5a);
            const prp2 = c.prp2();
            const got = await qp.passthru({ ...rwFields(op, 1, 20, c.nlb), prp1: c.prp1, prp2 });
            expect(`${c.what} (${op === OP.READ ? 'read' : 'write'}): 0x${got.status.toString(16)}`).toBe(`${c.what} (${op === OP.READ ? 'read' : 'write'}): 0x${c.want.toString(16)}`);
            expect(data.bytes.every((b) => b === 0x5a)).toBe(true);
          }
          // Dataset Management reads its ranges (at most one page of them) through PRP1 the same way.
          if (c.nlb === 1) {
            const dsm = await qp.passthru({ opcode: OP.DSM, nsid: 1, cdw10: 255, cdw11: DSM_AD, prp1: c.prp1, prp2: 0 });
            expectStatus(dsm, c.want);
          }
        }
        expectMedium(n, model);
      });
    }
  });
});
