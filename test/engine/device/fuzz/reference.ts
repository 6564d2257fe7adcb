/**
 * An independent reference of the spec's rules for the fuzz tests, on the
 * model: the PRP walker (section 4.3) and what each NVM command (section 6)
 * and each admin command with data may do.
 */
import { PS, PSn, MDTS_BYTES, MAX_IO_QUEUES, MQES, type State, w } from './world.js';
import { decode } from './sqe.js';

// ------------------------------------------------------------------ reference PRP walker (spec 4.3), on the model

interface Mapping {
  /** [arena offset, length] pieces in transfer order, or null when the PRPs are invalid. */
  regions: Array<[number, number]> | null;
  /** The walk read or addressed host-owned memory: the command is not used. */
  touchesHost: boolean;
  /** PRP list pages followed through a chain pointer. */
  chains: number;
  /** Arena pages the walk read (list entries) or addressed (data), whether or not it succeeded. */
  pages?: Set<number>;
}

function inArena(addr: bigint, n: number): boolean {
  return addr >= w.base && addr + BigInt(n) <= w.end;
}

function guardSpan(off: number, n: number): boolean {
  for (let p = Math.floor(off / PS); p <= Math.floor((off + n - 1) / PS); p++) if (!w.isGuard[p]) return false;
  return true;
}

export function refMap(arena: Uint8Array, prp1: bigint, prp2: bigint, len: number): Mapping {
  const pages = new Set<number>();
  const m: Mapping = { regions: [], touchesHost: false, chains: 0, pages };
  if (len === 0) return m;
  const visit = (addr: bigint, n: number): void => {
    if (!inArena(addr, n)) return;
    const off = Number(addr - w.base);
    for (let p = Math.floor(off / PS); p <= Math.floor((off + n - 1) / PS); p++) pages.add(p);
  };
  const dv = new DataView(arena.buffer, arena.byteOffset, arena.byteLength);
  const fail = (): Mapping => ({ regions: null, touchesHost: m.touchesHost, chains: m.chains, pages });
  const take = (addr: bigint, n: number): boolean => {
    visit(addr, n);
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
    visit(at, 8);
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
  /**
   * What the command may touch, whatever its outcome: arena pages (read or written) and namespace
   * blocks ([nsid, first byte, bytes]). Commands of one batch whose footprints are disjoint give the
   * same result in any order, as the spec lets a controller run them.
   */
  hostPages?: Set<number>;
  nsSpan?: [number, number, number];
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

/** Keeps the harness alive: its own I/O SQ is never deleted (Delete I/O SQ of its QID becomes one of QID 0). */
export function sanitizeAdmin(sqe: Uint8Array): Uint8Array {
  if (sqe[0] === 0x00 && sqe[40]! + sqe[41]! * 256 === w.qp.qid) sqe[40] = sqe[41] = 0;
  return sqe;
}

// ------------------------------------------------------------------ reference admin statuses (section 5)

/** The I/O queues that exist, as the host has made them. */
export interface QueueModel {
  sqs: Map<number, { cqid: number; size: number }>;
  cqs: Map<number, { size: number }>;
}

/** Status codes (SCT << 8 | SC) the admin commands below may fail with. */
export const SC = {
  INVALID_FIELD: 0x002,
  DATA_TRANSFER_ERROR: 0x004,
  ABORT_REQUESTED: 0x007,
  COMMAND_SEQUENCE_ERROR: 0x00c,
  PRP_OFFSET_INVALID: 0x013,
  COMPLETION_QUEUE_INVALID: 0x100,
  INVALID_QUEUE_IDENTIFIER: 0x101,
  INVALID_QUEUE_SIZE: 0x102,
  AER_LIMIT_EXCEEDED: 0x105,
  INVALID_INTERRUPT_VECTOR: 0x108,
  INVALID_QUEUE_DELETION: 0x10c,
  FEATURE_NOT_SAVEABLE: 0x10d,
} as const;
/** Interrupt vectors: maxIoQueues + 1 by default. */
const VECTORS = MAX_IO_QUEUES + 1;

export interface AdminVerdict {
  /** Failures the spec allows here (any one of them when several rules are broken); none: it must succeed. */
  failures: number[];
  /** The model change a success makes. */
  apply: () => void;
  why: string;
}

/** Queue memory (PRP1, physically contiguous): zero or not page aligned is PRP Offset Invalid, outside host memory Data Transfer Error. */
function queueMemory(prp1: bigint, bytes: number): number[] {
  if (prp1 === 0n || prp1 % PSn !== 0n) return [SC.PRP_OFFSET_INVALID];
  return inArena(prp1, bytes) ? [] : [SC.DATA_TRANSFER_ERROR];
}

/**
 * What the queue commands and Set Features Number of Queues must complete
 * with, given the queues that exist (sections 5.3-5.6, 5.21.1.7); undefined
 * for other commands. The controller was brought up with CC.IOSQES / IOCQES
 * 6 / 4 and nothing here changes them.
 */
export function refAdminStatus(q: QueueModel, sqe: Uint8Array): AdminVerdict | undefined {
  const c = decode(sqe);
  const none = (): void => {};
  const qid = c.cdw10 & 0xffff;
  const size = (c.cdw10 >>> 16) + 1;
  const common: number[] = c.fuse !== 0 || c.psdt !== 0 ? [SC.INVALID_FIELD] : [];
  switch (c.opcode) {
    case 0x05: {
      const iv = c.cdw11 >>> 16;
      const f = [...common];
      if (qid === 0 || qid > MAX_IO_QUEUES || q.cqs.has(qid)) f.push(SC.INVALID_QUEUE_IDENTIFIER);
      if (size < 2 || size > MQES + 1) f.push(SC.INVALID_QUEUE_SIZE);
      if (!(c.cdw11 & 1)) f.push(SC.INVALID_FIELD);
      if (iv >= VECTORS) f.push(SC.INVALID_INTERRUPT_VECTOR);
      f.push(...queueMemory(c.prp1, size * 16));
      return { failures: f, apply: () => q.cqs.set(qid, { size }), why: 'create I/O CQ' };
    }
    case 0x01: {
      const cqid = c.cdw11 >>> 16;
      const f = [...common];
      if (qid === 0 || qid > MAX_IO_QUEUES || q.sqs.has(qid)) f.push(SC.INVALID_QUEUE_IDENTIFIER);
      if (cqid === 0 || !q.cqs.has(cqid)) f.push(SC.COMPLETION_QUEUE_INVALID);
      if (size < 2 || size > MQES + 1) f.push(SC.INVALID_QUEUE_SIZE);
      if (!(c.cdw11 & 1)) f.push(SC.INVALID_FIELD);
      f.push(...queueMemory(c.prp1, size * 64));
      return { failures: f, apply: () => q.sqs.set(qid, { cqid, size }), why: 'create I/O SQ' };
    }
    case 0x00: {
      const f = [...common];
      if (qid === 0 || !q.sqs.has(qid)) f.push(SC.INVALID_QUEUE_IDENTIFIER);
      return { failures: f, apply: () => q.sqs.delete(qid), why: 'delete I/O SQ' };
    }
    case 0x04: {
      const f = [...common];
      if (qid === 0 || !q.cqs.has(qid)) f.push(SC.INVALID_QUEUE_IDENTIFIER);
      else if ([...q.sqs.values()].some((s) => s.cqid === qid)) f.push(SC.INVALID_QUEUE_DELETION);
      return { failures: f, apply: () => q.cqs.delete(qid), why: 'delete I/O CQ' };
    }
    case 0x09: {
      if ((c.cdw10 & 0xff) !== 0x07) return undefined;
      // Number of Queues after I/O queues were created (the harness's pair always exists): Command Sequence Error.
      const f: number[] = [...common, SC.COMMAND_SEQUENCE_ERROR];
      if ((c.cdw10 >>> 31) & 1) f.push(SC.FEATURE_NOT_SAVEABLE);
      if ((c.cdw11 & 0xffff) === 0xffff || c.cdw11 >>> 16 === 0xffff) f.push(SC.INVALID_FIELD);
      return { failures: f, apply: none, why: 'set features number of queues' };
    }
    default:
      return undefined;
  }
}

/**
 * An asynchronous event's completion DW0 (Figure 146) is one this
 * controller can report: an error event (invalid doorbell register or value,
 * log page 01h) or the SMART temperature event (log page 02h).
 */
export function validEventWord(dw0: number): boolean {
  const type = dw0 & 7;
  const info = (dw0 >>> 8) & 0xff;
  const lid = (dw0 >>> 16) & 0xff;
  if (type === 0) return (info === 0 || info === 1) && lid === 0x01;
  if (type === 1) return info === 0x01 && lid === 0x02;
  return false;
}

// ------------------------------------------------------------------ footprints (reordering in a batch)

export interface Footprint {
  /** Arena pages the command's PRPs (or DSM ranges) read or address, valid or not. */
  hostPages: Set<number>;
  /** [nsid, first byte, bytes] of the namespace it reads or changes, and whether it changes it. */
  ns: [number, number, number] | undefined;
  nsWrite: boolean;
}

/** What an I/O command may touch, whatever its outcome (a superset). */
export function footprint(s: State, sqe: Uint8Array): Footprint {
  const c = decode(sqe);
  const ns = w.nsBlocks.get(c.nsid);
  const none: Footprint = { hostPages: new Set(), ns: undefined, nsWrite: false };
  if (!ns) return none;
  const slba = (BigInt(c.cdw11) << 32n) | BigInt(c.cdw10);
  const nlb = (c.cdw12 & 0xffff) + 1;
  const span = (): [number, number, number] => {
    const first = slba < BigInt(ns.blocks) ? Number(slba) : ns.blocks;
    return [c.nsid, first * ns.lbaSize, Math.min(nlb, ns.blocks - first) * ns.lbaSize];
  };
  switch (c.opcode) {
    case 0x01:
    case 0x02:
      return { hostPages: refMap(s.arena, c.prp1, c.prp2, Math.min(nlb * ns.lbaSize, MDTS_BYTES)).pages ?? new Set(), ns: span(), nsWrite: c.opcode === 0x01 };
    case 0x08:
      return { hostPages: new Set(), ns: span(), nsWrite: true };
    case 0x09:
      return { hostPages: refMap(s.arena, c.prp1, c.prp2, ((c.cdw10 & 0xff) + 1) * 16).pages ?? new Set(), ns: [c.nsid, 0, ns.blocks * ns.lbaSize], nsWrite: true };
    default:
      return none;
  }
}

/** Two commands whose effects may depend on their order. */
export function conflict(a: Footprint, b: Footprint): boolean {
  for (const p of a.hostPages) if (b.hostPages.has(p)) return true;
  if (!a.ns || !b.ns || a.ns[0] !== b.ns[0] || (!a.nsWrite && !b.nsWrite)) return false;
  return a.ns[1] < b.ns[1] + b.ns[2] && b.ns[1] < a.ns[1] + a.ns[2];
}
