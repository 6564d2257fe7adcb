/**
 * NVM command set: Read and Write round trips on memory and file namespaces,
 * and host buffers inside and outside the DMA arena (zero copy and bounce).
 * Rigs and conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { PS, INVALID_NAMESPACE, OP, type NsSpec, withRig, KINDS, LBA_SIZES, rwFields, capturedSqe, u64At, expectStatus, expectMedium, expectBytes } from './helpers.js';

describe('Read and Write round trips', () => {
  for (const kind of KINDS) {
    for (const lbaSize of LBA_SIZES) {
      it(`${kind} namespace with ${lbaSize}-byte blocks: data lands at exactly the addressed LBAs`, async () => {
        await withRig([{ kind, lbaSize, size: 2 << 20 }], async ({ qp, ns, h }) => {
          const n = ns.get(1)!;
          const blocks = n.size / lbaSize;
          expect(h.driver.namespaces.get(1)).toMatchObject({ lbaSize, blocks });
          const model = pattern(n.size, 1);
          n.fill(model);
          const writes = [
            { slba: 0, nlb: 1 },
            { slba: 7, nlb: 3 },
            { slba: Math.floor(blocks / 2) + 1, nlb: 17 },
            { slba: blocks - 5, nlb: 4 },
            { slba: blocks - 1, nlb: 1 },
          ];
          for (const [i, w] of writes.entries()) {
            const data = pattern(w.nlb * lbaSize, 10 + i);
            await qp.write(1, w.slba, w.nlb, data);
            model.set(data, w.slba * lbaSize);
          }
          expectMedium(n, model);
          for (const w of writes) {
            const back = new Uint8Array(w.nlb * lbaSize);
            await qp.read(1, w.slba, w.nlb, back);
            expectBytes(back, model.subarray(w.slba * lbaSize, (w.slba + w.nlb) * lbaSize));
          }
          // A read spanning written blocks and untouched ones around them.
          const span = new Uint8Array(20 * lbaSize);
          await qp.read(1, 2, 20, span);
          expectBytes(span, model.subarray(2 * lbaSize, 22 * lbaSize));
          // The whole namespace, in MDTS-sized pieces.
          const chunk = (512 << 10) / lbaSize;
          for (let slba = 0; slba < blocks; slba += chunk) {
            const part = new Uint8Array(chunk * lbaSize);
            await qp.read(1, slba, chunk, part);
            expectBytes(part, model.subarray(slba * lbaSize, (slba + chunk) * lbaSize));
          }
        });
      });
    }
  }

  it('several namespaces with different LBA sizes and backends on one controller stay apart', async () => {
    const specs: NsSpec[] = [
      { kind: 'memory', lbaSize: 512, size: 1 << 20, nsid: 1 },
      { kind: 'file', lbaSize: 4096, size: 2 << 20, nsid: 2 },
      { kind: 'memory', lbaSize: 4096, size: 1 << 20, nsid: 4 },
      { kind: 'file', lbaSize: 512, size: 1 << 20, nsid: 5 },
    ];
    await withRig(specs, async ({ h, qp, ns }) => {
      expect([...h.driver.namespaces.keys()]).toEqual([1, 2, 4, 5]);
      for (const s of specs) expect(h.driver.namespaces.get(s.nsid!)).toMatchObject({ lbaSize: s.lbaSize, blocks: s.size / s.lbaSize });
      const written = new Map<number, Uint8Array>();
      for (const s of specs) {
        const data = pattern(3 * s.lbaSize, s.nsid!);
        await qp.write(s.nsid!, 5, 3, data);
        written.set(s.nsid!, data);
      }
      for (const s of specs) {
        const n = ns.get(s.nsid!)!;
        const model = new Uint8Array(s.size);
        model.set(written.get(s.nsid!)!, 5 * s.lbaSize);
        expectMedium(n, model);
        const back = new Uint8Array(3 * s.lbaSize);
        await qp.read(s.nsid!, 5, 3, back);
        expectBytes(back, written.get(s.nsid!)!);
      }
      // NSID 3 lies between active ones but is not active.
      const buf = h.arena.alloc(PS);
      expectStatus(await qp.passthru({ ...rwFields(OP.READ, 3, 0, 1), prp1: buf.iova }), INVALID_NAMESPACE);
    });
  });
});

describe('host buffers', () => {
  it('outside the DMA arena go through a bounce buffer, released afterwards', async () => {
    await withRig([{ kind: 'file', lbaSize: 512, size: 1 << 20 }], async ({ h, qp, ns }) => {
      const free = h.arena.freePages();
      // A view at an odd offset into a plain ArrayBuffer.
      const backing = new ArrayBuffer(40 * 512 + 3);
      const data = new Uint8Array(backing, 3, 40 * 512);
      data.set(pattern(data.length, 8));
      const w = await capturedSqe(qp, () => qp.write(1, 11, 40, data));
      expect(h.arena.translate(w.prp1, 1)).toBeGreaterThanOrEqual(0);
      expect(h.arena.freePages()).toBe(free);
      const model = new Uint8Array(1 << 20);
      model.set(data, 11 * 512);
      expectMedium(ns.get(1)!, model);
      const back = new Uint8Array(40 * 512);
      await qp.read(1, 11, 40, back);
      expectBytes(back, data);
      expect(h.arena.freePages()).toBe(free);
    });
  });

  it('inside the DMA arena are addressed in place (zero copy)', async () => {
    await withRig([{ kind: 'memory', lbaSize: 4096, size: 1 << 20 }], async ({ h, qp }) => {
      const buf = h.arena.alloc(3 * PS);
      const data = buf.bytes.subarray(1024, 1024 + 2 * PS);
      data.set(pattern(data.length, 9));
      const free = h.arena.freePages();
      const w = await capturedSqe(qp, () => qp.write(1, 0, 2, data));
      expect(w.prp1).toBe(buf.iova + 1024);
      // Three pages: a two-entry list.
      expect(u64At(h, w.prp2)).toBe(buf.iova + PS);
      expect(u64At(h, w.prp2 + 8)).toBe(buf.iova + 2 * PS);
      const dst = h.arena.alloc(2 * PS);
      const r = await capturedSqe(qp, () => qp.read(1, 0, 2, dst.bytes));
      expect(r.prp1).toBe(dst.iova);
      expect(r.prp2).toBe(dst.iova + PS); // two pages: PRP2 is a data pointer
      expectBytes(dst.bytes, data);
      expect(h.arena.freePages()).toBe(free - 2);
    });
  });
});
