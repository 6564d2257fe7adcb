/**
 * Property-based fuzzing of the controller through the host's raw passthrough:
 * random and mutated 64-byte SQEs, with PRPs pointing inside, outside and at
 * the edges of the DMA arena, aligned or not, including hand-built (and
 * broken) PRP lists and chains.
 *
 * Every byte of host memory the host does not own (everything but the queue
 * rings and the host's per-slot PRP list pages) and every byte of both
 * namespaces is mirrored in a model. An independent reference of the spec's
 * rules (section 4.3 for PRPs, section 6 for the NVM commands) predicts, for
 * each command, whether it can succeed and what it may change. After every
 * command (or batch):
 *
 * - the command completed, with exactly one CQE posted by the controller, and
 *   no status is Internal Error (the controller caught an exception);
 * - a failure carries DNR (nothing here is worth retrying) and changed nothing;
 * - a success changed only the bytes the command addressed: the namespace range
 *   of a Write / Write Zeroes / Dataset Management, the data buffer of a Read /
 *   Identify / Get Log Page, and with exactly the data the model predicts;
 * - an I/O command succeeds exactly when the reference says it can.
 *
 * Admin commands that rebuild the harness's queues (Create / Delete I/O SQ and
 * CQ), the Asynchronous Event Request (it completes only on an event) and Set
 * Features Number of Queues are replaced by Identify / Volatile Write Cache.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { bringUp, pattern, type Harness } from '../../helpers/harness.js';
import { MemoryBackend } from '../../../src/engine/device/backends/memory.js';
import type { IoQueuePair } from '../../../src/engine/host/io-queue-pair.js';
import type { Completion } from '../../../src/engine/spec/command.js';

const PS = 4096;
const PSn = 4096n;
const ARENA_SIZE = 2 << 20;
/** Controller option mdts: 5, so transfers over 2^5 × 4 KiB are Invalid Field. */
const MDTS = 5;
const MDTS_BYTES = (1 << MDTS) * PS;
const NAMESPACES = [
  { nsid: 1, lbaSize: 512, size: 512 << 10 }, // 1024 blocks
  { nsid: 2, lbaSize: 4096, size: 1 << 20 }, // 256 blocks
] as const;
const IO_ENTRIES = 32;
const TIMEOUT_MS = 2000;
const SEED = 0x6e766d71;

const DNR = 1 << 14;
const INTERNAL_ERROR_CODE = 0x006; // SCT 0, SC 06h

// ------------------------------------------------------------------ world

interface State {
  /** Model of the whole arena; only guard pages are meaningful. */
  arena: Uint8Array;
  ns: Map<number, Uint8Array>;
}

interface World {
  h: Harness;
  qp: IoQueuePair;
  base: bigint;
  end: bigint;
  /** Arena page indices the host does not own, ascending. */
  guardPages: number[];
  isGuard: Uint8Array;
  /** Contiguous [offset, length) runs of guard pages. */
  guardRuns: Array<[number, number]>;
  nsBytes: Map<number, Uint8Array>;
  nsBlocks: Map<number, { lbaSize: number; blocks: number }>;
  state: State;
  arenaFills: Uint8Array[];
  nsFills: Map<number, Uint8Array[]>;
}

let w: World;

beforeAll(async () => {
  const backends = NAMESPACES.map((n) => new MemoryBackend({ size: n.size }));
  const h = await bringUp({
    arenaSize: ARENA_SIZE,
    namespaces: NAMESPACES.map((n, i) => ({ backend: backends[i]!, lbaSize: n.lbaSize, nsid: n.nsid })),
    controller: { mdts: MDTS },
  });
  const qp = await h.driver.createIoQueuePair({ entries: IO_ENTRIES });
  // Every page still free after bring-up becomes a guard page, owned by the test.
  const isGuard = new Uint8Array(ARENA_SIZE / PS);
  for (;;) {
    let b;
    try {
      b = h.arena.alloc(PS);
    } catch {
      break;
    }
    isGuard[b.offset / PS] = 1;
  }
  const guardPages = [...isGuard.keys()].filter((p) => isGuard[p] === 1);
  const guardRuns: Array<[number, number]> = [];
  for (const p of guardPages) {
    const last = guardRuns[guardRuns.length - 1];
    if (last && last[0] + last[1] === p * PS) last[1] += PS;
    else guardRuns.push([p * PS, PS]);
  }
  const nsBytes = new Map(NAMESPACES.map((n, i) => [n.nsid, new Uint8Array(backends[i]!.buffer)] as const));
  const nsBlocks = new Map(NAMESPACES.map((n) => [n.nsid, { lbaSize: n.lbaSize, blocks: n.size / n.lbaSize }] as const));
  w = {
    h,
    qp,
    base: BigInt(h.arena.base),
    end: BigInt(h.arena.base + h.arena.size),
    guardPages,
    isGuard,
    guardRuns,
    nsBytes,
    nsBlocks,
    state: { arena: h.arena.bytes.slice(), ns: new Map([...nsBytes].map(([k, v]) => [k, v.slice()])) },
    arenaFills: [1, 2, 3].map((s) => pattern(ARENA_SIZE, 100 + s)),
    nsFills: new Map(NAMESPACES.map((n) => [n.nsid, [1, 2, 3].map((s) => pattern(n.size, 200 * n.nsid + s))] as const)),
  };
});

afterAll(async () => {
  await w?.h.close();
});

/** Fills every guard page and both namespaces with a known pattern, in the real world and in the model. */
function reset(seed: number): void {
  const fill = w.arenaFills[seed % w.arenaFills.length]!;
  for (const [off, len] of w.guardRuns) {
    w.h.arena.bytes.set(fill.subarray(off, off + len), off);
    w.state.arena.set(fill.subarray(off, off + len), off);
  }
  for (const [nsid, bytes] of w.nsBytes) {
    const f = w.nsFills.get(nsid)![seed % 3]!;
    bytes.set(f);
    w.state.ns.get(nsid)!.set(f);
  }
}

function firstDiff(a: Uint8Array, b: Uint8Array, from: number, len: number): number {
  const x = Buffer.from(a.buffer, a.byteOffset + from, len);
  const y = Buffer.from(b.buffer, b.byteOffset + from, len);
  if (x.equals(y)) return -1;
  for (let i = 0; i < len; i++) if (x[i] !== y[i]) return from + i;
  return -1;
}

/** Guard pages and namespaces equal the model. */
function checkWorld(what: string): void {
  for (const [off, len] of w.guardRuns) {
    const d = firstDiff(w.h.arena.bytes, w.state.arena, off, len);
    if (d >= 0) {
      throw new Error(`${what}: host memory changed outside the command's scope at arena offset 0x${d.toString(16)} (page ${d / PS | 0}): ` +
        `0x${w.h.arena.bytes[d]!.toString(16)}, model 0x${w.state.arena[d]!.toString(16)}`);
    }
  }
  for (const [nsid, bytes] of w.nsBytes) {
    const model = w.state.ns.get(nsid)!;
    const d = firstDiff(bytes, model, 0, bytes.length);
    if (d >= 0) {
      const lba = w.nsBlocks.get(nsid)!.lbaSize;
      throw new Error(`${what}: namespace ${nsid} differs from the model at byte ${d} (LBA ${Math.floor(d / lba)}): ${bytes[d]}, model ${model[d]}`);
    }
  }
}

function cloneState(s: State): State {
  return { arena: s.arena.slice(), ns: new Map([...s.ns].map(([k, v]) => [k, v.slice()])) };
}

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no completion within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ reference PRP walker (spec 4.3), on the model

interface Mapping {
  /** [arena offset, length] pieces in transfer order, or null when the PRPs are invalid. */
  regions: Array<[number, number]> | null;
  /** The walk read or addressed host-owned memory: the command is not used. */
  touchesHost: boolean;
  /** PRP list pages followed through a chain pointer. */
  chains: number;
}

function inArena(addr: bigint, n: number): boolean {
  return addr >= w.base && addr + BigInt(n) <= w.end;
}

function guardSpan(off: number, n: number): boolean {
  for (let p = Math.floor(off / PS); p <= Math.floor((off + n - 1) / PS); p++) if (!w.isGuard[p]) return false;
  return true;
}

function refMap(arena: Uint8Array, prp1: bigint, prp2: bigint, len: number): Mapping {
  const m: Mapping = { regions: [], touchesHost: false, chains: 0 };
  if (len === 0) return m;
  const dv = new DataView(arena.buffer, arena.byteOffset, arena.byteLength);
  const fail = (): Mapping => ({ regions: null, touchesHost: m.touchesHost, chains: m.chains });
  const take = (addr: bigint, n: number): boolean => {
    if (!inArena(addr, n)) return false;
    const off = Number(addr - w.base);
    if (!guardSpan(off, n)) m.touchesHost = true;
    m.regions!.push([off, n]);
    return true;
  };
  if (prp1 % 4n !== 0n) return fail();
  const first = Math.min(len, PS - Number(prp1 % PSn));
  if (!take(prp1, first)) return fail();
  let rem = len - first;
  if (rem === 0) return m;
  if (rem <= PS) {
    if (prp2 % PSn !== 0n) return fail();
    return take(prp2, rem) ? m : fail();
  }
  if (prp2 % 8n !== 0n) return fail();
  let at = prp2;
  while (rem > 0) {
    if (!inArena(at, 8)) return fail();
    const off = Number(at - w.base);
    if (!guardSpan(off, 8)) m.touchesHost = true;
    const entry = dv.getBigUint64(off, true);
    if (entry % PSn !== 0n) return fail();
    if (at % PSn === PSn - 8n && rem > PS) {
      at = entry; // chain to the next list page
      m.chains++;
      continue;
    }
    const n = Math.min(rem, PS);
    if (!take(entry, n)) return fail();
    rem -= n;
    at += 8n;
  }
  return m;
}

function gatherModel(arena: Uint8Array, regions: ReadonlyArray<[number, number]>): Uint8Array {
  const out = new Uint8Array(regions.reduce((n, r) => n + r[1], 0));
  let p = 0;
  for (const [off, n] of regions) {
    out.set(arena.subarray(off, off + n), p);
    p += n;
  }
  return out;
}

// ------------------------------------------------------------------ SQE encoding (little endian, 64-bit fields exact)

interface SqeFields {
  opcode: number;
  fuse: number;
  psdt: number;
  nsid: number;
  cdw2: number;
  cdw3: number;
  mptr: bigint;
  prp1: bigint;
  prp2: bigint;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
}

function encode(f: SqeFields): Uint8Array {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, ((f.opcode & 0xff) | ((f.fuse & 3) << 8) | ((f.psdt & 3) << 14)) >>> 0, true);
  dv.setUint32(4, f.nsid >>> 0, true);
  dv.setUint32(8, f.cdw2 >>> 0, true);
  dv.setUint32(12, f.cdw3 >>> 0, true);
  dv.setBigUint64(16, f.mptr, true);
  dv.setBigUint64(24, f.prp1, true);
  dv.setBigUint64(32, f.prp2, true);
  [f.cdw10, f.cdw11, f.cdw12, f.cdw13, f.cdw14, f.cdw15].forEach((v, i) => dv.setUint32(40 + 4 * i, v >>> 0, true));
  return b;
}

interface Decoded {
  opcode: number;
  fuse: number;
  psdt: number;
  nsid: number;
  prp1: bigint;
  prp2: bigint;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
}

function decode(b: Uint8Array): Decoded {
  const dv = new DataView(b.buffer, b.byteOffset, 64);
  const cdw0 = dv.getUint32(0, true);
  return {
    opcode: cdw0 & 0xff,
    fuse: (cdw0 >>> 8) & 3,
    psdt: (cdw0 >>> 14) & 3,
    nsid: dv.getUint32(4, true),
    prp1: dv.getBigUint64(24, true),
    prp2: dv.getBigUint64(32, true),
    cdw10: dv.getUint32(40, true),
    cdw11: dv.getUint32(44, true),
    cdw12: dv.getUint32(48, true),
    cdw13: dv.getUint32(52, true),
  };
}

// ------------------------------------------------------------------ reference NVM command semantics (section 6)

type Verdict = 'ok' | 'fail' | 'either';
interface Outcome {
  verdict: Verdict;
  touchesHost: boolean;
  /** Applies the effects of a successful completion to a state. */
  apply: (s: State) => void;
  why: string;
  /** Pieces of host memory a successful command transfers, and list chains followed. */
  pieces?: number;
  chains?: number;
}

const nothing = (): void => {};

function refIo(s: State, sqe: Uint8Array): Outcome {
  const c = decode(sqe);
  const fail = (why: string, touchesHost = false): Outcome => ({ verdict: 'fail', touchesHost, apply: nothing, why });
  if (c.fuse !== 0 || c.psdt !== 0) return fail('fused / SGL');
  const ns = w.nsBlocks.get(c.nsid);
  const slba = (BigInt(c.cdw11) << 32n) | BigInt(c.cdw10);
  switch (c.opcode) {
    case 0x00:
      return c.nsid === 0xffffffff || ns ? { verdict: 'ok', touchesHost: false, apply: nothing, why: 'flush' } : fail('flush: namespace');
    case 0x01:
    case 0x02: {
      if (!ns) return fail('rw: namespace');
      const nlb = (c.cdw12 & 0xffff) + 1;
      const len = nlb * ns.lbaSize;
      if (len > MDTS_BYTES) return fail('rw: MDTS');
      if (slba + BigInt(nlb) > BigInt(ns.blocks)) return fail('rw: LBA range');
      const m = refMap(s.arena, c.prp1, c.prp2, len);
      if (!m.regions) return fail('rw: PRPs', m.touchesHost);
      const regions = m.regions;
      const pos = Number(slba) * ns.lbaSize;
      const nsid = c.nsid;
      const shape = { pieces: regions.length, chains: m.chains };
      if (c.opcode === 0x01) {
        return { verdict: 'ok', touchesHost: m.touchesHost, why: 'write', ...shape, apply: (t) => t.ns.get(nsid)!.set(gatherModel(t.arena, regions), pos) };
      }
      return {
        verdict: 'ok',
        touchesHost: m.touchesHost,
        why: 'read',
        ...shape,
        apply: (t) => {
          let p = pos;
          const src = t.ns.get(nsid)!;
          for (const [off, n] of regions) {
            t.arena.set(src.subarray(p, p + n), off);
            p += n;
          }
        },
      };
    }
    case 0x08: {
      if (!ns) return fail('write zeroes: namespace');
      const nlb = (c.cdw12 & 0xffff) + 1;
      if (slba + BigInt(nlb) > BigInt(ns.blocks)) return fail('write zeroes: LBA range');
      const pos = Number(slba) * ns.lbaSize;
      const nsid = c.nsid;
      return { verdict: 'ok', touchesHost: false, why: 'write zeroes', apply: (t) => t.ns.get(nsid)!.fill(0, pos, pos + nlb * ns.lbaSize) };
    }
    case 0x09: {
      if (!ns) return fail('dsm: namespace');
      const nr = (c.cdw10 & 0xff) + 1;
      const ad = (c.cdw11 >>> 2) & 1;
      const m = refMap(s.arena, c.prp1, c.prp2, nr * 16);
      if (!m.regions) {
        // Without Deallocate the ranges are only hints: fetching them (and failing) or not are both fine.
        return ad ? fail('dsm: PRPs', m.touchesHost) : { verdict: 'either', touchesHost: m.touchesHost, apply: nothing, why: 'dsm hints, bad PRPs' };
      }
      if (!ad) return { verdict: 'ok', touchesHost: m.touchesHost, apply: nothing, why: 'dsm hints' };
      const data = gatherModel(s.arena, m.regions);
      const dv = new DataView(data.buffer);
      const ranges: Array<[number, number]> = [];
      let zeroLength = false;
      for (let i = 0; i < nr; i++) {
        const nlb = dv.getUint32(i * 16 + 4, true);
        const r = dv.getBigUint64(i * 16 + 8, true);
        if (nlb === 0) {
          zeroLength = true;
          continue;
        }
        if (r + BigInt(nlb) > BigInt(ns.blocks)) return fail('dsm: LBA range', m.touchesHost);
        ranges.push([Number(r) * ns.lbaSize, nlb * ns.lbaSize]);
      }
      const nsid = c.nsid;
      return {
        // A zero-length range means nothing; ignoring it or rejecting the command are both defensible.
        verdict: zeroLength ? 'either' : 'ok',
        touchesHost: m.touchesHost,
        why: 'dsm deallocate',
        pieces: m.regions.length,
        chains: m.chains,
        apply: (t) => {
          for (const [pos, n] of ranges) t.ns.get(nsid)!.fill(0, pos, pos + n);
        },
      };
    }
    default:
      return fail('opcode');
  }
}

/** Admin: where a successful command may write (its data buffer), if anywhere. */
function refAdmin(s: State, sqe: Uint8Array): { writes: boolean; mapping: Mapping; len: number } {
  const c = decode(sqe);
  const none = { writes: false, mapping: { regions: [], touchesHost: false, chains: 0 }, len: 0 };
  if (c.fuse !== 0 || c.psdt !== 0) return none;
  let len: number;
  if (c.opcode === 0x06) len = 4096;
  else if (c.opcode === 0x02) len = ((c.cdw11 & 0xffff) * 0x10000 + (c.cdw10 >>> 16) + 1) * 4;
  else return none;
  if (len > MDTS_BYTES) return { writes: true, mapping: { regions: null, touchesHost: false, chains: 0 }, len };
  return { writes: true, mapping: refMap(s.arena, c.prp1, c.prp2, len), len };
}

/** Keeps the harness alive: no queue rebuilding, no held AER, no Number of Queues. */
function sanitizeAdmin(sqe: Uint8Array): Uint8Array {
  if ([0x00, 0x01, 0x04, 0x05, 0x0c].includes(sqe[0]!)) sqe[0] = 0x06;
  if (sqe[0] === 0x09 && sqe[40] === 0x07) sqe[40] = 0x06;
  return sqe;
}

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

const ioPlanArb: fc.Arbitrary<IoPlan> = fc.oneof(
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
function buildIo(plan: IoPlan): Uint8Array {
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

const adminPlanArb: fc.Arbitrary<AdminPlan | RandomPlan> = fc.oneof(
  {
    weight: 9,
    arbitrary: fc
      .record({
        opcode: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(0x06, 0x06, 0x02, 0x02, 0x0a, 0x09, 0x08) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
        nsid: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 3, 0xffffffff, 0xfffffffe) }, { weight: 1, arbitrary: u32 }),
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

function buildAdmin(plan: AdminPlan | RandomPlan): Uint8Array {
  if (plan.kind === 'random') return sanitizeAdmin(plan.bytes.slice());
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
    cdw10: plan.cdw10,
    cdw11: plan.cdw11,
    cdw12: plan.cdw12,
    cdw13: plan.cdw13,
    cdw14: 0,
    cdw15: 0,
  });
  for (const m of plan.mutations) sqe[m.at] = m.value;
  return sanitizeAdmin(sqe);
}

// ------------------------------------------------------------------ runners

const stats = {
  io: 0,
  ioOk: 0,
  admin: 0,
  adminOk: 0,
  skipped: 0,
  /** Successful I/O by what the reference says it did. */
  okKinds: new Map<string, number>(),
  /** Successful transfers through a PRP list (3+ pieces) and through chained lists. */
  okListed: 0,
  okChained: 0,
  statuses: new Map<number, number>(),
};

function describeSqe(sqe: Uint8Array): string {
  const c = decode(sqe);
  return `opcode 0x${c.opcode.toString(16)} fuse ${c.fuse} psdt ${c.psdt} nsid 0x${c.nsid.toString(16)} prp1 0x${c.prp1.toString(16)} prp2 0x${c.prp2.toString(16)} ` +
    `cdw10 0x${c.cdw10.toString(16)} cdw11 0x${c.cdw11.toString(16)} cdw12 0x${c.cdw12.toString(16)}`;
}

function checkStatus(c: Completion, what: string): void {
  stats.statuses.set(c.status & 0x7ff, (stats.statuses.get(c.status & 0x7ff) ?? 0) + 1);
  if ((c.status & 0x7ff) === INTERNAL_ERROR_CODE) throw new Error(`${what}: Internal Error (the controller threw)`);
  if (c.status !== 0 && !(c.status & DNR)) throw new Error(`${what}: failure 0x${c.status.toString(16)} without DNR`);
}

/** Submits I/O SQEs as one batch (one doorbell write), then checks completions and state against the reference, in order. */
async function runIo(sqes: Uint8Array[]): Promise<void> {
  // Drop commands whose PRPs reach host-owned memory (as predicted in order on a scratch copy).
  let list = sqes;
  for (;;) {
    const scratch = cloneState(w.state);
    const keep: Uint8Array[] = [];
    for (const s of list) {
      const o = refIo(scratch, s);
      if (o.touchesHost) continue;
      keep.push(s);
      if (o.verdict !== 'fail') o.apply(scratch);
    }
    if (keep.length === list.length) break;
    stats.skipped += list.length - keep.length;
    list = keep;
  }
  if (list.length === 0) return;
  const { qp, h } = w;
  const cq = h.controller.executor.cq(qp.qid)!;
  const tailBefore = cq.tail;
  const spurious = qp.stats.spurious;
  qp.plug();
  const pending = list.map((raw) => qp.passthru({ raw }));
  qp.unplug();
  const done = await withTimeout(Promise.all(pending), `I/O batch of ${list.length}`);
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'CQEs posted for the batch').toBe(list.length);
  expect(cq.used, "CQ room reserved and not released").toBe(0);
  expect(qp.stats.spurious).toBe(spurious);
  expect(qp.outstanding).toBe(0);
  expect(qp.processCompletions(), 'CQEs after the batch').toBe(0);
  list.forEach((sqe, i) => {
    const c = done[i]!;
    const what = `I/O ${describeSqe(sqe)}`;
    expect(c.sqid).toBe(qp.qid);
    checkStatus(c, what);
    const o = refIo(w.state, sqe);
    stats.io++;
    if (o.verdict === 'ok' && c.status !== 0) throw new Error(`${what}: reference says it succeeds (${o.why}), got status 0x${c.status.toString(16)}`);
    if (o.verdict === 'fail' && c.status === 0) throw new Error(`${what}: reference says it fails (${o.why}), but it succeeded`);
    if (c.status === 0) {
      stats.ioOk++;
      stats.okKinds.set(o.why, (stats.okKinds.get(o.why) ?? 0) + 1);
      if ((o.pieces ?? 0) >= 3) stats.okListed++;
      if ((o.chains ?? 0) > 0) stats.okChained++;
      o.apply(w.state);
    }
  });
  checkWorld(`after I/O ${list.map(describeSqe).join(' | ')}`);
}

async function runAdmin(sqe: Uint8Array): Promise<void> {
  const ref = refAdmin(w.state, sqe);
  if (ref.mapping.touchesHost) {
    stats.skipped++;
    return;
  }
  const cq = w.h.controller.executor.cq(0)!;
  const tailBefore = cq.tail;
  const what = `admin ${describeSqe(sqe)}`;
  const c = await withTimeout(w.h.driver.adminPassthru({ raw: sqe }), what);
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'admin CQEs posted').toBe(1);
  expect(cq.used, "CQ room reserved and not released").toBe(0);
  expect(c.sqid).toBe(0);
  checkStatus(c, what);
  stats.admin++;
  if (c.status === 0) {
    stats.adminOk++;
    if (ref.writes) {
      if (!ref.mapping.regions) throw new Error(`${what}: succeeded although its ${ref.len}-byte data buffer is not valid`);
      // The contents are the controller's business; where they went is checked below.
      for (const [off, n] of ref.mapping.regions) w.state.arena.set(w.h.arena.bytes.subarray(off, off + n), off);
    }
  }
  checkWorld(`after ${what}`);
}

// ------------------------------------------------------------------ properties

const ioSequence = fc.record({ fill: fc.nat({ max: 2 }), plans: fc.array(ioPlanArb, { minLength: 1, maxLength: 6 }) });
const ioBatches = fc.record({ fill: fc.nat({ max: 2 }), plans: fc.array(ioPlanArb, { minLength: 2, maxLength: IO_ENTRIES - 1 }) });
const adminSequence = fc.record({ fill: fc.nat({ max: 2 }), plans: fc.array(adminPlanArb, { minLength: 1, maxLength: 6 }) });

const ioOneByOne = fc.asyncProperty(ioSequence, async ({ fill, plans }) => {
  reset(fill);
  for (const p of plans) await runIo([buildIo(p)]);
});
const ioBatched = fc.asyncProperty(ioBatches, async ({ fill, plans }) => {
  reset(fill);
  // Every plan is built (lists and ranges written) before the doorbell: later commands see what earlier ones did.
  await runIo(plans.map(buildIo));
});
const adminOneByOne = fc.asyncProperty(adminSequence, async ({ fill, plans }) => {
  reset(fill);
  for (const p of plans) await runAdmin(buildAdmin(p));
});

describe('fuzzing the controller with random and mutated commands', () => {
  it('sets up guard memory around what the host owns', () => {
    // The arena's last pages are guard pages, so PRPs at the arena's upper edge land in checked memory.
    const last = ARENA_SIZE / PS - 1;
    expect(w.isGuard[last]).toBe(1);
    expect(w.isGuard[last - 1]).toBe(1);
    expect(w.guardPages.length).toBeGreaterThan(ARENA_SIZE / PS / 2);
    // The host owns the rest: at least the admin and I/O rings.
    expect(w.isGuard[(w.qp.sq.offset / PS) | 0]).toBe(0);
    expect(w.isGuard[(w.qp.cq.offset / PS) | 0]).toBe(0);
  });

  it('I/O commands one at a time (seeded)', async () => {
    await fc.assert(ioOneByOne, { seed: SEED, numRuns: 600 });
  });

  it('I/O commands in batches behind one doorbell (seeded)', async () => {
    await fc.assert(ioBatched, { seed: SEED + 1, numRuns: 200 });
  });

  it('admin commands one at a time (seeded)', async () => {
    await fc.assert(adminOneByOne, { seed: SEED + 2, numRuns: 400 });
  });

  it('I/O and admin commands, unseeded', async () => {
    await fc.assert(ioOneByOne, { numRuns: 300 });
    await fc.assert(ioBatched, { numRuns: 100 });
    await fc.assert(adminOneByOne, { numRuns: 200 });
  });

  it('reached successes of every kind and the interesting failures', () => {
    // Guards against generators that only ever produce rejections.
    expect(stats.ioOk).toBeGreaterThan(stats.io / 5);
    expect(stats.adminOk).toBeGreaterThan(stats.admin / 10);
    for (const kind of ['read', 'write', 'write zeroes', 'dsm deallocate', 'dsm hints', 'flush']) {
      expect(stats.okKinds.get(kind) ?? 0, `successful ${kind}`).toBeGreaterThan(5);
    }
    expect(stats.okListed, 'successful transfers through PRP lists').toBeGreaterThan(20);
    expect(stats.okChained, 'successful transfers through chained PRP lists').toBeGreaterThan(5);
    for (const code of [0x000, 0x001, 0x002, 0x004, 0x00b, 0x013, 0x080]) {
      expect(stats.statuses.get(code) ?? 0, `status 0x${code.toString(16)} seen`).toBeGreaterThan(0);
    }
    if (process.env.NVMQ_FUZZ_STATS) console.log(stats);
  });
});
