/**
 * NVM command set: Force Unit Access and Flush. Rigs and conventions in
 * ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { PS, INVALID_NAMESPACE, OP, FUA, withRig, KINDS, rwFields, capturedSqe, expectStatus, expectMedium, expectBytes } from './helpers.js';

describe('FUA and Flush', () => {
  for (const kind of KINDS) {
    it(`FUA writes (${kind}) complete with the data on the medium`, async () => {
      await withRig([{ kind, lbaSize: 4096, size: 1 << 20 }], async ({ h, qp, ns }) => {
        const n = ns.get(1)!;
        const model = new Uint8Array(n.size);
        const a = pattern(4 * PS, 1);
        const c = await capturedSqe(qp, () => qp.write(1, 2, 4, a, { fua: true }));
        expect(c.cdw12 & FUA).toBe(FUA);
        model.set(a, 2 * PS);
        expectMedium(n, model);
        // FUA in a raw command, and with the volatile write cache disabled.
        const buf = h.arena.alloc(PS);
        buf.bytes.set(pattern(PS, 2));
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 40, 1, FUA), prp1: buf.iova }), 0);
        model.set(buf.bytes, 40 * PS);
        await h.driver.setVolatileWriteCache(false);
        buf.bytes.set(pattern(PS, 3));
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 41, 1), prp1: buf.iova }), 0);
        model.set(buf.bytes, 41 * PS);
        expectMedium(n, model);
      });
    });
  }

  it('Flush of every namespace (FFFFFFFFh) and of one namespace succeed', async () => {
    await withRig(
      [
        { kind: 'file', lbaSize: 4096, size: 1 << 20 },
        { kind: 'memory', lbaSize: 512, size: 1 << 20 },
        { kind: 'file', lbaSize: 512, size: 1 << 20 },
      ],
      async ({ qp, ns }) => {
        await qp.write(1, 0, 1, pattern(PS, 1));
        await qp.write(3, 0, 1, pattern(512, 3));
        await qp.flush(0xffffffff);
        await qp.flush(1);
        await qp.flush(2);
        expectStatus(await qp.passthru({ opcode: OP.FLUSH, nsid: 3 }), 0);
        expectBytes(ns.get(1)!.bytes().subarray(0, PS), pattern(PS, 1));
        expectBytes(ns.get(3)!.bytes().subarray(0, 512), pattern(512, 3));
      },
    );
  });

  it('Flush of NSID 0, an inactive NSID or one past NN is Invalid Namespace or Format', async () => {
    await withRig(
      [
        { kind: 'memory', lbaSize: 4096, size: 1 << 20, nsid: 1 },
        { kind: 'file', lbaSize: 4096, size: 1 << 20, nsid: 3 },
      ],
      async ({ qp }) => {
        for (const nsid of [0, 2, 4, 0x1234, 0xfffffffe]) {
          expectStatus(await qp.passthru({ opcode: OP.FLUSH, nsid }), INVALID_NAMESPACE);
        }
        expectStatus(await qp.passthru({ opcode: OP.FLUSH, nsid: 0xffffffff }), 0);
      },
    );
  });
});
