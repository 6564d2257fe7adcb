/**
 * NVM command set: Write Zeroes and Dataset Management (deallocate and hints).
 * Rigs and conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { PS, OP, FUA, DSM_IDR, DSM_IDW, withRig, KINDS, LBA_SIZES, rwFields, dsmRanges, expectStatus, expectMedium, expectBytes, isZero } from './helpers.js';

describe('Write Zeroes', () => {
  for (const kind of KINDS) {
    for (const lbaSize of LBA_SIZES) {
      for (const deac of [false, true]) {
        it(`${kind}, ${lbaSize}-byte blocks${deac ? ', DEAC' : ''}: zeroes exactly the range`, async () => {
          await withRig([{ kind, lbaSize, size: 1 << 20 }], async ({ qp, ns }) => {
            const n = ns.get(1)!;
            const blocks = n.size / lbaSize;
            const model = pattern(n.size, 4);
            n.fill(model);
            // Odd starts and lengths: with 512-byte blocks none of these is file-system-block aligned.
            for (const [slba, nlb] of [
              [3, 5],
              [17, 1],
              [101, 33],
              [blocks - 2, 2],
            ] as const) {
              await qp.writeZeroes(1, slba, nlb, { deallocate: deac });
              model.fill(0, slba * lbaSize, (slba + nlb) * lbaSize);
              expectMedium(n, model);
            }
            const back = new Uint8Array(40 * lbaSize);
            await qp.read(1, 100, 40, back);
            expectBytes(back, model.subarray(100 * lbaSize, 140 * lbaSize));
            expect(isZero(back.subarray(lbaSize, 34 * lbaSize))).toBe(true);
            // Written again after zeroing, the blocks hold the new data.
            await qp.write(1, 17, 1, pattern(lbaSize, 99));
            model.set(pattern(lbaSize, 99), 17 * lbaSize);
            expectMedium(n, model);
          });
        });
      }
    }
  }

  it('the largest NLB (65536 blocks) zeroes a whole namespace; FUA is accepted', async () => {
    await withRig([{ kind: 'memory', lbaSize: 512, size: 32 << 20 }], async ({ qp, ns }) => {
      const n = ns.get(1)!;
      n.fill(pattern(n.size, 5));
      expectStatus(await qp.passthru({ ...rwFields(OP.WRITE_ZEROES, 1, 0, 0x10000, FUA) }), 0);
      expect(isZero(n.bytes())).toBe(true);
    });
    await withRig([{ kind: 'file', lbaSize: 4096, size: 1 << 20 }], async ({ qp, ns }) => {
      const n = ns.get(1)!;
      const model = pattern(n.size, 6);
      n.fill(model);
      await qp.writeZeroes(1, 10, 6, { fua: true, deallocate: true });
      model.fill(0, 10 * PS, 16 * PS);
      expectMedium(n, model);
    });
  });
});

describe('Dataset Management', () => {
  for (const kind of KINDS) {
    for (const lbaSize of LBA_SIZES) {
      it(`${kind}, ${lbaSize}-byte blocks: deallocated ranges read as zeroes, everything else is intact`, async () => {
        await withRig([{ kind, lbaSize, size: 1 << 20 }], async ({ qp, ns }) => {
          const n = ns.get(1)!;
          const blocks = n.size / lbaSize;
          const model = pattern(n.size, 7);
          n.fill(model);
          const ranges = [
            { slba: 2, nlb: 3 },
            { slba: 10, nlb: 1 },
            { slba: 11, nlb: 4 }, // adjacent to the previous one
            { slba: 64, nlb: 37 },
            { slba: blocks - 1, nlb: 1 },
          ];
          await qp.deallocate(1, ranges);
          for (const r of ranges) model.fill(0, r.slba * lbaSize, (r.slba + r.nlb) * lbaSize);
          expectMedium(n, model);
          for (const r of ranges) {
            const back = new Uint8Array((r.nlb + 2) * lbaSize).fill(0xaa);
            const from = Math.max(0, r.slba - 1);
            const nlb = Math.min(r.nlb + 2, blocks - from);
            await qp.read(1, from, nlb, back.subarray(0, nlb * lbaSize));
            expectBytes(back.subarray(0, nlb * lbaSize), model.subarray(from * lbaSize, (from + nlb) * lbaSize));
          }
        });
      });
    }
  }

  it('256 ranges (the maximum) in one command', async () => {
    await withRig([{ kind: 'file', lbaSize: 512, size: 1 << 20 }], async ({ qp, ns }) => {
      const n = ns.get(1)!;
      const model = pattern(n.size, 8);
      n.fill(model);
      const ranges = Array.from({ length: 256 }, (_, i) => ({ slba: i * 7, nlb: 1 + (i % 3) }));
      await qp.deallocate(1, ranges);
      for (const r of ranges) model.fill(0, r.slba * 512, (r.slba + r.nlb) * 512);
      expectMedium(n, model);
    });
  });

  it('without the Deallocate attribute (hints only) changes nothing', async () => {
    for (const kind of KINDS) {
      await withRig([{ kind, lbaSize: 4096, size: 1 << 20 }], async ({ qp, ns }) => {
        const n = ns.get(1)!;
        const model = pattern(n.size, 9);
        n.fill(model);
        const data = dsmRanges([
          { slba: 0, nlb: 8 },
          { slba: 100, nlb: 50 },
        ]);
        for (const attr of [0, DSM_IDR, DSM_IDW, DSM_IDR | DSM_IDW]) {
          expectStatus(await qp.passthru({ opcode: OP.DSM, nsid: 1, cdw10: 1, cdw11: attr }, { buffer: data, direction: 'to-device' }), 0);
        }
        expectMedium(n, model);
      });
    }
  });
});
