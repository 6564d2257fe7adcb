/**
 * Command plans for the fuzz tests and their fast-check generators: pointers
 * inside, outside and at the edges of the arena, PRP lists and chains (some
 * broken), structured and random I/O and admin commands; `buildIo()` /
 * `buildAdmin()` turn a plan into SQE bytes, writing its lists into guard
 * memory.
 */
import fc from 'fast-check';
import { PS, NAMESPACES, MAX_IO_QUEUES, MQES, w } from './world.js';
import { encode } from './sqe.js';
import { refMap, sanitizeAdmin } from './reference.js';
import { adminModel } from './runners.js';

// ------------------------------------------------------------------ pointer plans and their resolution

type Ptr =
  | { k: 'guard'; page: number; off: number }
  | { k: 'end'; delta: number }
  | { k: 'below'; delta: number }
  | { k: 'zero' }
  | { k: 'raw'; v: bigint }
  | { k: 'list'; page: number; off: number; entries: Ptr[] };

function guardPage(page: number): number {
  return w.guardPages[page % w.guardPages.length]!;
}

/** The pointer's value; lists are written into their guard page (real memory and model) first. */
function resolve(p: Ptr): bigint {
  switch (p.k) {
    case 'guard':
      return w.base + BigInt(guardPage(p.page) * PS + p.off);
    case 'end':
      return w.end + BigInt(p.delta);
    case 'below':
      return w.base + BigInt(p.delta);
    case 'zero':
      return 0n;
    case 'raw':
      return p.v;
    case 'list': {
      const at = guardPage(p.page) * PS + p.off;
      const values = p.entries.map(resolve);
      const room = Math.floor((PS - p.off) / 8);
      const dv = w.h.arena.view;
      const mv = new DataView(w.state.arena.buffer, w.state.arena.byteOffset, w.state.arena.byteLength);
      values.slice(0, room).forEach((v, i) => {
        dv.setBigUint64(at + i * 8, v, true);
        mv.setBigUint64(at + i * 8, v, true);
      });
      return w.base + BigInt(at);
    }
  }
}

const pageArb = fc.nat({ max: 100_000 });
const dataOffArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: PS / 4 - 1 }).map((x) => x * 4) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: PS - 1 }) },
);
const edgePtrArb: fc.Arbitrary<Ptr> = fc.oneof(
  fc.record({ k: fc.constant('end' as const), delta: fc.constantFrom(-8192, -4096, -2048, -512, -8, -4, -2, 0, 4, 8, 4096) }),
  fc.record({ k: fc.constant('below' as const), delta: fc.constantFrom(-65536, -4096, -8, -4, -1) }),
  fc.constant<Ptr>({ k: 'zero' }),
  fc.record({ k: fc.constant('raw' as const), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
);
const dataPtrArb: fc.Arbitrary<Ptr> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('guard' as const), page: pageArb, off: dataOffArb }) },
  { weight: 2, arbitrary: edgePtrArb },
);
/** A broken list entry: inside a guard page but not page aligned (mostly still dword aligned), or outside, or zero. */
const badEntryArb: fc.Arbitrary<Ptr> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('guard' as const), page: pageArb, off: fc.integer({ min: 1, max: PS / 4 - 1 }).map((x) => x * 4) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('guard' as const), page: pageArb, off: fc.integer({ min: 1, max: PS - 1 }) }) },
  { weight: 2, arbitrary: edgePtrArb },
);
const listOffArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: PS / 8 - 1 }).map((x) => x * 8) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 6 }).map((k) => PS - 8 * k) }, // chains early
  { weight: 1, arbitrary: fc.integer({ min: 0, max: PS - 1 }) },
);
const goodEntryArb: fc.Arbitrary<Ptr> = fc.record({ k: fc.constant('guard' as const), page: pageArb, off: fc.constant(0) });
/** Entries that are all good, then a few replaced by anything. */
function entriesArb(inner: fc.Arbitrary<Ptr>): fc.Arbitrary<Ptr[]> {
  return fc
    .tuple(
      fc.oneof(
        { weight: 3, arbitrary: fc.array(goodEntryArb, { minLength: 0, maxLength: 12 }) },
        { weight: 1, arbitrary: fc.array(goodEntryArb, { minLength: 28, maxLength: 40 }) }, // up to and past MDTS
      ),
      fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: fc.array(fc.tuple(fc.nat({ max: 39 }), inner), { minLength: 1, maxLength: 2 }) }),
    )
    .map(([good, bad]) => {
      const out: Ptr[] = [...good];
      for (const [i, p] of bad) if (out.length > 0) out[i % out.length] = p;
      return out;
    });
}
const chainListArb: fc.Arbitrary<Ptr> = fc.record({ k: fc.constant('list' as const), page: pageArb, off: fc.constant(0), entries: entriesArb(badEntryArb) });
const listArb: fc.Arbitrary<Ptr> = listOffArb.chain((off) => {
  const room = Math.floor((PS - off) / 8);
  // A list page where a data pointer belongs is just another (page-aligned, valid) data page.
  const plain = entriesArb(fc.oneof({ weight: 3, arbitrary: badEntryArb }, { weight: 1, arbitrary: chainListArb }));
  // A list that starts near the end of its page: good entries up to the last slot, which chains to a fresh list page.
  const chained = fc
    .tuple(fc.array(goodEntryArb, { minLength: room - 1, maxLength: room - 1 }), chainListArb)
    .map(([es, next]): Ptr[] => [...es, next]);
  return fc.record({
    k: fc.constant('list' as const),
    page: pageArb,
    off: fc.constant(off),
    entries: room >= 1 && room <= 8 ? fc.oneof({ weight: 3, arbitrary: chained }, { weight: 1, arbitrary: plain }) : plain,
  });
});
const prp2Arb: fc.Arbitrary<Ptr> = fc.oneof({ weight: 3, arbitrary: dataPtrArb }, { weight: 3, arbitrary: listArb });

// ------------------------------------------------------------------ command plans

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const nsidArb = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom(1, 2) },
  { weight: 2, arbitrary: fc.constantFrom(0, 3, 0xffffffff, 0xfffffffe) },
  { weight: 1, arbitrary: u32 },
);
const slbaArb = fc.oneof(
  { weight: 12, arbitrary: fc.bigInt({ min: 0n, max: 64n }) },
  { weight: 3, arbitrary: fc.bigInt({ min: 200n, max: 300n }) },
  { weight: 3, arbitrary: fc.bigInt({ min: 980n, max: 1060n }) },
  { weight: 1, arbitrary: fc.constantFrom(2n ** 32n - 1n, 2n ** 32n, 2n ** 53n, 2n ** 64n - 1n, 2n ** 64n - 256n) },
  { weight: 1, arbitrary: u64 },
);
const nlb0Arb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 9 }) },
  { weight: 3, arbitrary: fc.integer({ min: 10, max: 31 }) }, // long enough for chained lists
  { weight: 3, arbitrary: fc.integer({ min: 29, max: 34 }) }, // MDTS in 4 KiB blocks
  { weight: 3, arbitrary: fc.integer({ min: 253, max: 258 }) }, // MDTS in 512-byte blocks
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
/** When set, SLBA is placed so that the range ends `endDelta` blocks past the namespace's end (0: exactly at it). */
const endDeltaArb = fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: -2, max: 2 }) });
const rangeArb = fc.record({
  slba: fc.oneof({ weight: 24, arbitrary: fc.bigInt({ min: 0n, max: 200n }) }, { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 1100n }) }, { weight: 1, arbitrary: u64 }),
  nlb: fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 1, max: 48 }) }, { weight: 1, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: u32 }),
  endDelta: endDeltaArb,
});
/** Byte offsets a mutation may touch: not the CID (the host owns it) and not PRP1 / PRP2 (they come from pointer plans). */
const mutableBytes = [0, 1, ...Array.from({ length: 20 }, (_, i) => 4 + i), ...Array.from({ length: 24 }, (_, i) => 40 + i)];
const mutationsArb = fc.array(fc.record({ at: fc.constantFrom(...mutableBytes), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 });

interface StructuredPlan {
  kind: 'structured';
  opcode: number;
  nsid: number;
  slba: bigint;
  nlb0: number;
  endDelta: number | undefined;
  cdw12hi: number;
  dsmNr0: number | undefined;
  dsmAttr: number;
  ranges: Array<{ slba: bigint; nlb: number; endDelta: number | undefined }>;
  prp1: Ptr;
  prp2: Ptr;
  fuse: number;
  psdt: number;
  extra: [number, number, bigint, number, number, number];
  mutations: ReadonlyArray<{ at: number; value: number }>;
}
interface RandomPlan {
  kind: 'random';
  bytes: Uint8Array;
}
type IoPlan = StructuredPlan | RandomPlan;

/**
 * A Read or Write whose PRP list is shaped after its own transfer: the list
 * starts so that its page has room for about as many entries as the transfer
 * needs (one less, exactly, one more), chaining when it must, with at most one
 * broken entry. This is where the spec's boundaries are: the last slot of a
 * list page is a chain pointer only when more than one page of data remains.
 */
const shapedRwArb: fc.Arbitrary<IoPlan> = fc
  .record({
    opcode: fc.constantFrom(0x01, 0x02),
    ns: fc.constantFrom(0, 1),
    slba: fc.bigInt({ min: 0n, max: 32n }),
    blocks4k: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 30, max: 34 }) }),
    blocks512: fc.oneof(
      { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 12 }), fc.constantFrom(-1, 0, 1)).map(([x, d]) => 8 * x + d) },
      { weight: 1, arbitrary: fc.integer({ min: 9, max: 100 }) },
      { weight: 1, arbitrary: fc.integer({ min: 254, max: 258 }) },
    ),
    prp1Page: pageArb,
    prp1Off: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: PS / 4 - 1 }).map((x) => x * 4) }),
    fua: fc.boolean(),
  })
  .chain((b) => {
    const lbaSize = NAMESPACES[b.ns]!.lbaSize;
    const nlb = Math.max(1, lbaSize === 4096 ? b.blocks4k : b.blocks512);
    const len = nlb * lbaSize;
    const first = Math.min(len, PS - b.prp1Off);
    const n = Math.ceil((len - first) / PS); // entries (data pages) after PRP1's page
    const rooms = [n - 1, n, n + 1].filter((r) => r >= 1 && r <= PS / 8);
    return fc
      .record({
        room: rooms.length > 0 ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...rooms) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: PS / 8 }) }) : fc.constant(PS / 8),
        listPage: pageArb,
        chainPage: pageArb,
        pages: fc.array(pageArb, { minLength: n + 1, maxLength: n + 1 }),
        bad: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.tuple(fc.nat(), badEntryArb) }),
      })
      .map(({ room, listPage, chainPage, pages, bad }): IoPlan => {
        const data: Ptr[] = pages.slice(0, n).map((page) => ({ k: 'guard', page, off: 0 }));
        let prp2: Ptr;
        if (n === 0) prp2 = { k: 'zero' };
        else if (n === 1) prp2 = data[0]!;
        else if (n <= room) prp2 = { k: 'list', page: listPage, off: PS - 8 * room, entries: data };
        else {
          // The list page's last slot chains to a fresh page holding the rest.
          const next: Ptr = { k: 'list', page: chainPage, off: 0, entries: data.slice(room - 1) };
          prp2 = { k: 'list', page: listPage, off: PS - 8 * room, entries: [...data.slice(0, room - 1), next] };
        }
        if (bad && n > 1) {
          // Break one data entry (in either list page) or the chain pointer.
          const [i, p] = bad;
          const top = prp2 as Extract<Ptr, { k: 'list' }>;
          const last = top.entries[top.entries.length - 1]!;
          if (last.k === 'list' && i % 2 === 1) last.entries[i % last.entries.length] = p;
          else top.entries[i % top.entries.length] = p;
        }
        return {
          kind: 'structured',
          opcode: b.opcode,
          nsid: NAMESPACES[b.ns]!.nsid,
          slba: b.slba,
          nlb0: nlb - 1,
          endDelta: undefined,
          cdw12hi: b.fua ? 1 << 30 : 0,
          dsmNr0: undefined,
          dsmAttr: 0,
          ranges: [],
          prp1: { k: 'guard', page: b.prp1Page, off: b.prp1Off },
          prp2,
          fuse: 0,
          psdt: 0,
          extra: [0, 0, 0n, 0, 0, 0],
          mutations: [],
        };
      });
  });

export const ioPlanArb: fc.Arbitrary<IoPlan> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      kind: fc.constant('structured' as const),
      opcode: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(0x00, 0x01, 0x02, 0x02, 0x01, 0x08, 0x09, 0x09) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
      nsid: nsidArb,
      slba: slbaArb,
      nlb0: nlb0Arb,
      endDelta: endDeltaArb,
      cdw12hi: fc.oneof(
        { weight: 6, arbitrary: fc.constant(0) },
        { weight: 3, arbitrary: fc.constantFrom(1 << 30, 1 << 25, (1 << 30) | (1 << 25), 1 << 31) }, // FUA, DEAC, LR
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((x) => x << 16) },
      ),
      dsmNr0: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
      dsmAttr: fc.oneof({ weight: 6, arbitrary: fc.constant(4) }, { weight: 2, arbitrary: fc.constantFrom(0, 1, 2, 3, 7) }, { weight: 1, arbitrary: u32 }),
      ranges: fc.array(rangeArb, { minLength: 1, maxLength: 8 }),
      prp1: dataPtrArb,
      prp2: prp2Arb,
      fuse: fc.oneof({ weight: 50, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
      psdt: fc.oneof({ weight: 50, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
      extra: fc.tuple(u32, u32, u64, u32, u32, u32),
      mutations: fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: mutationsArb }),
    }),
  },
  { weight: 5, arbitrary: shapedRwArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 64, maxLength: 64 }) }) },
);

/** Turns a plan into SQE bytes, writing its PRP lists and DSM ranges into guard memory (real and model). */
export function buildIo(plan: IoPlan): Uint8Array {
  if (plan.kind === 'random') return plan.bytes.slice();
  const prp1 = resolve(plan.prp1);
  const prp2 = resolve(plan.prp2);
  const dsm = plan.opcode === 0x09;
  const blocks = w.nsBlocks.get(plan.nsid)?.blocks;
  const atEnd = (slba: bigint, nlb: number, delta: number | undefined): bigint => {
    if (delta === undefined || blocks === undefined) return slba;
    const v = BigInt(blocks) - BigInt(nlb) + BigInt(delta);
    return v < 0n ? 0n : v;
  };
  const slba = atEnd(plan.slba, plan.nlb0 + 1, plan.endDelta);
  const nr0 = plan.dsmNr0 ?? plan.ranges.length - 1;
  if (dsm) {
    // Put the ranges where the PRPs say, when they say somewhere valid.
    const m = refMap(w.state.arena, prp1, prp2, (nr0 + 1) * 16);
    if (m.regions && !m.touchesHost) {
      const data = new Uint8Array((nr0 + 1) * 16);
      const dv = new DataView(data.buffer);
      plan.ranges.slice(0, nr0 + 1).forEach((r, i) => {
        dv.setUint32(i * 16 + 4, r.nlb >>> 0, true);
        dv.setBigUint64(i * 16 + 8, atEnd(r.slba, r.nlb, r.endDelta) % 2n ** 64n, true);
      });
      let p = 0;
      for (const [off, n] of m.regions) {
        w.h.arena.bytes.set(data.subarray(p, p + n), off);
        w.state.arena.set(data.subarray(p, p + n), off);
        p += n;
      }
    }
  }
  const [cdw2, cdw3, mptr, cdw13, cdw14, cdw15] = plan.extra;
  const sqe = encode({
    opcode: plan.opcode,
    fuse: plan.fuse,
    psdt: plan.psdt,
    nsid: plan.nsid,
    cdw2,
    cdw3,
    mptr,
    prp1,
    prp2,
    cdw10: dsm ? (nr0 | (plan.nlb0 << 16)) >>> 0 : Number(slba & 0xffffffffn),
    cdw11: dsm ? plan.dsmAttr : Number(slba >> 32n),
    cdw12: (plan.nlb0 | plan.cdw12hi) >>> 0,
    cdw13,
    cdw14,
    cdw15,
  });
  for (const m of plan.mutations) sqe[m.at] = m.value;
  return sqe;
}

interface AdminPlan {
  kind: 'admin';
  /** Abort: names the held AER of this index (modulo those held), when any is held. */
  abortAer: number | undefined;
  opcode: number;
  nsid: number;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  prp1: Ptr;
  prp2: Ptr;
  fuse: number;
  psdt: number;
  mutations: ReadonlyArray<{ at: number; value: number }>;
}

const logPageCdw10 = fc
  .tuple(
    fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0x01, 0x02, 0x05) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    fc.boolean(),
    fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 1023 }) }, { weight: 1, arbitrary: fc.integer({ min: 1024, max: 0xffff }) }),
  )
  .map(([lid, rae, numdl]) => (lid | (rae ? 1 << 15 : 0) | (numdl << 16)) >>> 0);

const qidArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: MAX_IO_QUEUES }) },
  { weight: 2, arbitrary: fc.constantFrom(0, MAX_IO_QUEUES + 1, 0xffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const qsize0Arb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 63 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, MQES - 1, MQES, MQES + 1, 0xffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
/** CDW10 / CDW11 of Create I/O CQ / SQ and Delete I/O SQ / CQ, mostly valid, with every field broken now and then. */
const queueWordsArb = fc.record({
  qid: qidArb,
  qsize0: qsize0Arb,
  pc: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(0) }),
  ien: fc.boolean(),
  iv: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: MAX_IO_QUEUES }) }, { weight: 1, arbitrary: fc.integer({ min: MAX_IO_QUEUES + 1, max: 0xffff }) }),
  cqid: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: MAX_IO_QUEUES }) }, { weight: 2, arbitrary: fc.constantFrom(0, 0xffff) }),
  qprio: fc.integer({ min: 0, max: 3 }),
  rest: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: u32 }),
});
const nsidAdminArb = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 3, 0xffffffff, 0xfffffffe) }, { weight: 1, arbitrary: u32 });
const queuePrp1Arb: fc.Arbitrary<Ptr> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('guard' as const), page: pageArb, off: fc.constant(0) }) },
  { weight: 2, arbitrary: dataPtrArb },
);

/** Queue creation and deletion, Asynchronous Event Requests and Aborts (of held AERs, or of anything), Number of Queues. */
const queueAdminArb: fc.Arbitrary<AdminPlan> = fc
  .record({
    opcode: fc.constantFrom(0x05, 0x05, 0x01, 0x01, 0x00, 0x04, 0x0c, 0x0c, 0x08, 0x08, 0x09),
    q: queueWordsArb,
    abortAer: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 7 }) }, { weight: 1, arbitrary: fc.constant(undefined) }),
    abortWords: fc.tuple(fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }), fc.integer({ min: 0, max: 0xffff })),
    noq: fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 16 }) }, { weight: 1, arbitrary: fc.constant(0xffff) }), fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 16 }) }, { weight: 1, arbitrary: fc.constant(0xffff) }), fc.boolean()),
    nsid: nsidAdminArb,
    prp1: queuePrp1Arb,
    fuse: fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
    psdt: fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
  })
  .map(({ opcode, q, abortAer, abortWords, noq, nsid, prp1, fuse, psdt }): AdminPlan => {
    let cdw10 = 0;
    let cdw11 = 0;
    if (opcode === 0x05) {
      cdw10 = (q.qid | (q.qsize0 << 16)) >>> 0;
      cdw11 = (q.pc | (q.ien ? 2 : 0) | (q.iv << 16) | (q.rest & 0xfffc)) >>> 0;
    } else if (opcode === 0x01) {
      cdw10 = (q.qid | (q.qsize0 << 16)) >>> 0;
      cdw11 = (q.pc | (q.qprio << 1) | (q.cqid << 16)) >>> 0;
    } else if (opcode === 0x00 || opcode === 0x04) {
      cdw10 = (q.qid | (q.rest & 0xffff0000)) >>> 0;
    } else if (opcode === 0x08) {
      cdw10 = (abortWords[0] | (abortWords[1] << 16)) >>> 0;
    } else if (opcode === 0x09) {
      cdw10 = (0x07 | (noq[2] ? 1 << 31 : 0)) >>> 0;
      cdw11 = (noq[0] | (noq[1] << 16)) >>> 0;
    }
    return { kind: 'admin', abortAer: opcode === 0x08 ? abortAer : undefined, opcode, nsid, cdw10, cdw11, cdw12: 0, cdw13: 0, prp1, prp2: { k: 'zero' }, fuse, psdt, mutations: [] };
  });

export const adminPlanArb: fc.Arbitrary<AdminPlan | RandomPlan> = fc.oneof(
  { weight: 5, arbitrary: queueAdminArb },
  {
    weight: 9,
    arbitrary: fc
      .record({
        opcode: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(0x06, 0x06, 0x02, 0x02, 0x0a, 0x09, 0x08) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
        nsid: nsidAdminArb,
        cns: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1, 2) }, { weight: 1, arbitrary: u32 }),
        glp: logPageCdw10,
        feature: fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0x01, 0x04, 0x06, 0x0b) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }), fc.integer({ min: 0, max: 7 })),
        cdw11: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: u32 }),
        cdw12: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 4, 64, 512, 4092, 4096) }, { weight: 1, arbitrary: u32 }),
        cdw13: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: u32 }),
        prp1: dataPtrArb,
        prp2: prp2Arb,
        fuse: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
        psdt: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
        mutations: fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: mutationsArb }),
      })
      .map((r): AdminPlan => ({
        kind: 'admin',
        abortAer: undefined,
        opcode: r.opcode,
        nsid: r.nsid,
        cdw10: r.opcode === 0x06 ? r.cns : r.opcode === 0x02 ? r.glp : r.opcode === 0x09 || r.opcode === 0x0a ? (r.feature[0] | (r.feature[1] << 8)) >>> 0 : r.cns,
        cdw11: r.cdw11,
        cdw12: r.cdw12,
        cdw13: r.cdw13,
        prp1: r.prp1,
        prp2: r.prp2,
        fuse: r.fuse,
        psdt: r.psdt,
        mutations: r.mutations,
      })),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 64, maxLength: 64 }) }) },
);

export function buildAdmin(plan: AdminPlan | RandomPlan): Uint8Array {
  if (plan.kind === 'random') return sanitizeAdmin(plan.bytes.slice());
  let cdw10 = plan.cdw10;
  const held = adminModel.aers.filter((a) => !a.done);
  if (plan.abortAer !== undefined && held.length > 0) cdw10 = (held[plan.abortAer % held.length]!.cid << 16) >>> 0;
  const sqe = encode({
    opcode: plan.opcode,
    fuse: plan.fuse,
    psdt: plan.psdt,
    nsid: plan.nsid,
    cdw2: 0,
    cdw3: 0,
    mptr: 0n,
    prp1: resolve(plan.prp1),
    prp2: resolve(plan.prp2),
    cdw10,
    cdw11: plan.cdw11,
    cdw12: plan.cdw12,
    cdw13: plan.cdw13,
    cdw14: 0,
    cdw15: 0,
  });
  for (const m of plan.mutations) sqe[m.at] = m.value;
  return sanitizeAdmin(sqe);
}
