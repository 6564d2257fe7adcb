/**
 * NVM command set: data through PRP lists, as the driver builds them and by hand
 * through passthrough (NVMe 1.4, 4.3). Rigs and conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { pattern } from '../../../helpers/harness.js';
import { PS, INVALID_FIELD, OP, type NsSpec, withRig, LBA_SIZES, rwFields, prpsFor, contiguous, capturedSqe, u64At, expectStatus, expectMedium, expectBytes, isZero } from './helpers.js';

describe('PRP lists', () => {
  it('multi-page transfers from an arena buffer at a dword offset use PRP lists in place (zero copy)', async () => {
    await withRig([{ kind: 'memory', lbaSize: 4096, size: 4 << 20 }], async ({ h, qp, ns }) => {
      const n = ns.get(1)!;
      const buf = h.arena.alloc(64 * 1024 + PS);
      const at = 4 * 333;
      const view = buf.bytes.subarray(at, at + 64 * 1024);
      view.set(pattern(view.length, 5));
      const free = h.arena.freePages();
      const w = await capturedSqe(qp, () => qp.write(1, 9, 16, view));
      expect(w.opcode).toBe(OP.WRITE);
      expect(w.prp1).toBe(buf.iova + at);
      // 17 pages: PRP2 is a list of the 16 page addresses after PRP1's.
      for (let i = 0; i < 16; i++) expect(u64At(h, w.prp2 + 8 * i)).toBe(buf.iova + (i + 1) * PS);
      expect(h.arena.freePages()).toBe(free);
      const model = new Uint8Array(n.size);
      model.set(view, 9 * PS);
      expectMedium(n, model);

      const back = h.arena.alloc(64 * 1024 + PS);
      const backView = back.bytes.subarray(8, 8 + 64 * 1024);
      const r = await capturedSqe(qp, () => qp.read(1, 9, 16, backView));
      expect(r.prp1).toBe(back.iova + 8);
      expectBytes(backView, view);
      // Bytes before and after the read buffer are untouched.
      expect(isZero(back.bytes.subarray(0, 8))).toBe(true);
      expect(isZero(back.bytes.subarray(8 + 64 * 1024))).toBe(true);
    });
  });

  it('hand-built PRP lists with pages out of order: data follows list order, both ways', async () => {
    for (const lbaSize of LBA_SIZES) {
      await withRig([{ kind: 'file', lbaSize, size: 1 << 20 }], async ({ h, qp, ns }) => {
        const n = ns.get(1)!;
        const pages = Array.from({ length: 10 }, () => h.arena.alloc(PS));
        const order = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4];
        const src = pattern(10 * PS, 77 + lbaSize);
        order.forEach((p, i) => pages[p]!.bytes.set(src.subarray(i * PS, (i + 1) * PS)));
        const { prp1, prp2 } = prpsFor(h, order.map((p) => pages[p]!.iova));
        const slba = 3;
        const nlb = (10 * PS) / lbaSize;
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, slba, nlb), prp1, prp2 }), 0);
        const model = new Uint8Array(n.size);
        model.set(src, slba * lbaSize);
        expectMedium(n, model);

        // Read it back into another scattered set, the first piece at an offset.
        const dst = Array.from({ length: 11 }, () => h.arena.alloc(PS));
        const first = dst[10]!.iova + PS - 1024;
        const rest = [4, 0, 8, 2, 6, 1, 9, 3, 7, 5].map((p) => dst[p]!.iova);
        const rp = prpsFor(h, [first, ...rest]);
        expectStatus(await qp.passthru({ ...rwFields(OP.READ, 1, slba, nlb), prp1: rp.prp1, prp2: rp.prp2 }), 0);
        const got = new Uint8Array(10 * PS);
        got.set(dst[10]!.bytes.subarray(PS - 1024), 0);
        let p = 1024;
        for (const [i, idx] of [4, 0, 8, 2, 6, 1, 9, 3, 7, 5].entries()) {
          const len = i === 9 ? PS - 1024 : PS;
          got.set(dst[idx]!.bytes.subarray(0, len), p);
          p += len;
        }
        expectBytes(got, src);
        // The last page got only what the transfer needed.
        expect(isZero(dst[5]!.bytes.subarray(PS - 1024))).toBe(true);
      });
    }
  });

  it('4 MiB transfers need chained PRP lists (MDTS unlimited): driver-built and hand-built', async () => {
    const specs: NsSpec[] = [
      { kind: 'memory', lbaSize: 4096, size: 8 << 20 },
      { kind: 'file', lbaSize: 512, size: 8 << 20 },
    ];
    await withRig(
      specs,
      async ({ h, qp, ns }) => {
        expect(h.driver.controller.mdts).toBe(0);
        expect(h.driver.controller.maxTransferBytes).toBe(Infinity);
        expect(qp.maxTransfer).toBe(4 << 20);
        for (const [nsid, n] of ns) {
          const lba = n.lbaSize;
          const nlb = (4 << 20) / lba;
          const model = new Uint8Array(n.size);
          // From outside the arena (bounce buffer), page aligned inside it.
          const data = pattern(4 << 20, nsid);
          const w = await capturedSqe(qp, () => qp.write(nsid, 1, nlb, data));
          model.set(data, lba);
          // 1024 pages: PRP1 + 1023 entries, so the list's slot 511 chains to a second list page.
          const second = w.prp1 + PS;
          for (let i = 0; i < 511; i++) expect(u64At(h, w.prp2 + 8 * i)).toBe(second + i * PS);
          const chain = u64At(h, w.prp2 + 8 * 511);
          expect(chain % PS).toBe(0);
          expect(chain).not.toBe(second + 511 * PS);
          expect(u64At(h, chain)).toBe(second + 511 * PS);
          expectMedium(n, model);
          // Into the arena at an offset (zero copy): 1025 pages.
          const buf = h.arena.alloc((4 << 20) + PS);
          const view = buf.bytes.subarray(512, 512 + (4 << 20));
          await qp.read(nsid, 1, nlb, view);
          expectBytes(view, data);
          h.arena.release(buf);
        }

        // Hand-built: pages in a scrambled order, none adjacent to the next (so nothing merges), over chained list
        // pages. On the file namespace 1100 pieces are more than one readv / writev takes (IOV_MAX 1024).
        for (const [nsid, count] of [
          [1, 600],
          [2, 1100],
        ] as const) {
          const n = ns.get(nsid)!;
          const pool = h.arena.alloc(2 * count * PS);
          const order = Array.from({ length: count }, (_, i) => (i * 397) % count);
          expect(new Set(order).size).toBe(count);
          const src = pattern(count * PS, count);
          order.forEach((pg, i) => pool.bytes.set(src.subarray(i * PS, (i + 1) * PS), 2 * pg * PS));
          const { prp1, prp2, listPages } = prpsFor(h, order.map((pg) => pool.iova + 2 * pg * PS));
          expect(listPages).toHaveLength(Math.ceil((count - 1) / 511));
          const slba = 100;
          const nlb = (count * PS) / n.lbaSize;
          expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, nsid, slba, nlb), prp1, prp2 }), 0);
          expectBytes(n.bytes().subarray(slba * n.lbaSize, slba * n.lbaSize + count * PS), src);
          pool.bytes.fill(0);
          expectStatus(await qp.passthru({ ...rwFields(OP.READ, nsid, slba, nlb), prp1, prp2 }), 0);
          order.forEach((pg, i) => expectBytes(pool.bytes.subarray(2 * pg * PS, (2 * pg + 1) * PS), src.subarray(i * PS, (i + 1) * PS)));
          // The pages between the listed ones were not touched.
          for (let pg = 0; pg < count; pg++) expect(isZero(pool.bytes.subarray((2 * pg + 1) * PS, (2 * pg + 2) * PS))).toBe(true);
          h.arena.release(pool);
          for (const l of listPages) h.arena.release(l);
        }
      },
      { arenaSize: 40 << 20, controller: { mdts: 0 }, driver: { maxTransferFallback: 4 << 20 } },
    );
  });

  for (const lbaSize of LBA_SIZES) {
    it(`MDTS (${lbaSize}-byte blocks): exactly MDTS succeeds, one block more is Invalid Field and moves nothing`, async () => {
      await withRig([{ kind: 'memory', lbaSize, size: 2 << 20 }], async ({ h, qp, ns }) => {
        const n = ns.get(1)!;
        // Default MDTS 7: 2^7 pages of CAP.MPSMIN (4 KiB).
        expect(h.driver.controller.mdts).toBe(7);
        const mdts = 128 * PS;
        const nlb = mdts / lbaSize;
        const buf = h.arena.alloc(mdts + 2 * PS);
        const src = pattern(mdts + lbaSize, 3);
        buf.bytes.set(src);
        // PRPs that describe one block more than MDTS, valid in every other respect.
        const { prp1, prp2 } = prpsFor(h, contiguous(buf, 0, mdts + lbaSize));
        const model = n.bytes();

        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, nlb + 1), prp1, prp2 }), INVALID_FIELD);
        expectMedium(n, model);
        expectStatus(await qp.passthru({ ...rwFields(OP.WRITE, 1, 0, nlb), prp1, prp2 }), 0);
        model.set(src.subarray(0, mdts), 0);
        expectMedium(n, model);

        buf.bytes.fill(0xee);
        expectStatus(await qp.passthru({ ...rwFields(OP.READ, 1, 0, nlb + 1), prp1, prp2 }), INVALID_FIELD);
        expect(buf.bytes.findIndex((b) => b !== 0xee)).toBe(-1);
        expectStatus(await qp.passthru({ ...rwFields(OP.READ, 1, 0, nlb), prp1, prp2 }), 0);
        expectBytes(buf.bytes.subarray(0, mdts), src.subarray(0, mdts));
        expect(buf.bytes.subarray(mdts).findIndex((b) => b !== 0xee)).toBe(-1);

        // The host refuses to build such a transfer itself.
        await expect(qp.write(1, 0, nlb + 1, new Uint8Array(mdts + lbaSize))).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
      });
    });
  }
});
