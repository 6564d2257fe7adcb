/**
 * An independent reference of the spec's rules for the fuzz tests, on the
 * model: the PRP walker (section 4.3) and what each NVM command (section 6)
 * and each admin command with data may do.
 */
import { PS, PSn, MDTS_BYTES, type State, w } from './world.js';
import { decode } from './sqe.js';

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

export function refMap(arena: Uint8Array, prp1: bigint, prp2: bigint, len: number): Mapping {
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

export function refIo(s: State, sqe: Uint8Array): Outcome {
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
export function refAdmin(s: State, sqe: Uint8Array): { writes: boolean; mapping: Mapping; len: number } {
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
export function sanitizeAdmin(sqe: Uint8Array): Uint8Array {
  if ([0x00, 0x01, 0x04, 0x05, 0x0c].includes(sqe[0]!)) sqe[0] = 0x06;
  if (sqe[0] === 0x09 && sqe[40] === 0x07) sqe[40] = 0x06;
  return sqe;
}
