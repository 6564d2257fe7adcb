/**
 * Register and doorbell writes for the fuzz tests (see commands.test.ts).
 *
 * Two kinds:
 *
 * - `benignStepArb`: writes a host may make at any moment without breaking
 *   its own view of the queues: reads anywhere in BAR0 and past it, writes
 *   to read-only and reserved registers, INTMS / INTMC, AQA / ASQ / ACQ while
 *   enabled (they only matter at the next enable), NSSR with a value other
 *   than "NVMe", and doorbells that name no queue, are past a queue's size,
 *   are misaligned or past the BAR. They run between the checked I/O
 *   commands; every check of the I/O runner still holds, and the registers
 *   the host cannot change read as before.
 * - `chaosStepArb`: anything: CC (enable, disable, shutdown, garbage), AQA /
 *   ASQ / ACQ anywhere (guard pages, the host's rings, outside the arena,
 *   unaligned), NSSR resets, any doorbell with any value, with I/O submitted
 *   in between. What the controller then does with the memory it was pointed
 *   at is the host's business; what is checked is that no MMIO call throws,
 *   nothing outside the arena changes, a controller reset always completes
 *   (and after it nothing in host memory changes any more), and a fresh
 *   bring-up serves a verified sanity round.
 */
import fc from 'fast-check';
import { Regs, DOORBELL_BASE, NSSR_RESET_VALUE } from '../../../../src/engine/spec/registers.js';
import { PS, MAX_IO_QUEUES, w, checkOutside } from './world.js';
import { countKind } from './runners.js';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Doorbell stride with CAP.DSTRD 0, and the BAR's end: the doorbells of the admin queue and MAX_IO_QUEUES I/O queues. */
const STRIDE = 4;
export const BAR_END = DOORBELL_BASE + 2 * (MAX_IO_QUEUES + 1) * STRIDE;

export type RegStep =
  | { k: 'read'; offset: number; wide: boolean }
  | { k: 'write'; offset: number; value: number; wide: boolean; kind: string }
  | { k: 'doorbell'; qid: number; cq: boolean; value: number; which: 'absent' | 'past size' | 'any' }
  | { k: 'raw doorbell'; offset: number; value: number }
  | { k: 'io'; n: number }
  | { k: 'wait'; ms: number };

const anyOffsetArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x40 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: BAR_END + 64 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xfffffff }) },
);
const smallValueArb = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 64 }) }, { weight: 1, arbitrary: u32 });
/** Offsets a host write must leave alone: CAP, VS, CSTS (but NSSRO), reserved space below the doorbells. */
const readOnlyArb = fc.oneof(
  fc.constantFrom(Regs.CAP.offset, Regs.CAP.offset + 4, Regs.VS.offset, Regs.CSTS.offset, 0x18, 0x38, 0x3c),
  fc.integer({ min: 0x40, max: DOORBELL_BASE - 4 }).map((x) => x & ~3),
  fc.integer({ min: 0, max: DOORBELL_BASE - 1 }).filter((x) => x % 4 !== 0),
);

export const benignStepArb: fc.Arbitrary<RegStep> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant('read' as const), offset: anyOffsetArb, wide: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant('write' as const), offset: readOnlyArb, value: u32, wide: fc.boolean(), kind: fc.constant('read-only or reserved register') }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant('write' as const), offset: fc.constantFrom(Regs.INTMS.offset, Regs.INTMC.offset), value: u32, wide: fc.constant(false), kind: fc.constant('INTMS / INTMC') }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('write' as const),
      offset: fc.constantFrom(Regs.AQA.offset, Regs.ASQ.offset, Regs.ASQ.offset + 4, Regs.ACQ.offset, Regs.ACQ.offset + 4),
      value: u32,
      wide: fc.boolean(),
      kind: fc.constant('AQA / ASQ / ACQ while enabled'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('write' as const), offset: fc.constant(Regs.NSSR.offset), value: u32.filter((v) => v !== NSSR_RESET_VALUE), wide: fc.constant(false), kind: fc.constant('NSSR, not a reset') }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('doorbell' as const),
      qid: fc.integer({ min: 0, max: MAX_IO_QUEUES + 2 }),
      cq: fc.boolean(),
      value: smallValueArb,
      which: fc.constantFrom('absent' as const, 'past size' as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('raw doorbell' as const),
      offset: fc.oneof(
        fc.integer({ min: DOORBELL_BASE, max: BAR_END - 1 }).filter((x) => x % STRIDE !== 0),
        fc.integer({ min: BAR_END - 3, max: BAR_END + 0x100 }),
        fc.integer({ min: BAR_END, max: 0xfffffff }),
      ),
      value: u32,
    }),
  },
);

/** Registers a host write cannot change, read back after each benign step. */
const FIXED = [Regs.CAP.offset, Regs.CAP.offset + 4, Regs.VS.offset, Regs.CC.offset];

function mmio(what: string, f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    throw new Error(`${what}: the controller threw out of an MMIO call: ${(e as Error).stack ?? String(e)}`);
  }
}

function doorbellOffset(qid: number, cq: boolean): number {
  return DOORBELL_BASE + (2 * qid + (cq ? 1 : 0)) * STRIDE;
}

export function describeStep(s: RegStep): string {
  switch (s.k) {
    case 'read':
      return `read${s.wide ? '64' : '32'} 0x${s.offset.toString(16)}`;
    case 'write':
      return `write${s.wide ? '64' : '32'} 0x${s.offset.toString(16)} = 0x${s.value.toString(16)} (${s.kind})`;
    case 'doorbell':
      return `${s.cq ? 'CQ head' : 'SQ tail'} doorbell QID ${s.qid} = ${s.value} (${s.which})`;
    case 'raw doorbell':
      return `doorbell-area write 0x${s.offset.toString(16)} = 0x${s.value.toString(16)}`;
    case 'io':
      return `${s.n} I/O commands submitted`;
    case 'wait':
      return `wait ${s.ms} ms`;
  }
}

/**
 * Runs one benign step. Doorbells are made invalid against the queues that
 * exist now (the admin queue and the harness's pair): a QID with no queue, or
 * a value at or past the queue's size (a CQ head that is not the current
 * head, since the host has consumed every entry). Returns what it did.
 */
export function runBenign(s: RegStep, chaos = false): string {
  const t = w.h.transport;
  const before = FIXED.map((o) => t.read32(o));
  let step = s;
  if (s.k === 'doorbell') {
    const exists = (qid: number): boolean => (s.cq ? w.h.controller.executor.cq(qid) : w.h.controller.executor.sq(qid)) !== undefined;
    let qid = s.qid;
    let value = s.value;
    if (s.which === 'absent') {
      while (exists(qid)) qid = (qid + 1) % (MAX_IO_QUEUES + 3);
    } else {
      qid = s.qid % 2 === 0 ? 0 : w.qp.qid;
      const q = s.cq ? w.h.controller.executor.cq(qid) : w.h.controller.executor.sq(qid);
      // (After register chaos the queue may be gone: the value is written as it is.)
      if (!q) {
        /* nothing to make invalid */
      } else if (s.cq) {
        // Any head but the current one points past what was posted (nothing is).
        if (value % q.size === (q as { head: number }).head) value = q.size + (value % 7);
      } else if (value < q.size) value = q.size + value;
    }
    step = { ...s, qid, value };
  }
  const what = describeStep(step);
  countKind(`register: ${step.k === 'write' ? step.kind : step.k === 'doorbell' ? `doorbell, ${step.which === 'absent' ? 'no such queue' : 'value past the queue'}` : step.k === 'raw doorbell' ? 'doorbell-area offset that is no doorbell' : step.k}`);
  switch (step.k) {
    case 'read': {
      const v = mmio(what, () => (step.wide ? t.read64(step.offset) : t.read32(step.offset))) as number;
      if (!Number.isInteger(v) || v < 0 || v > (step.wide ? 2 ** 64 : 2 ** 32 - 1)) throw new Error(`${what}: read ${v}`);
      break;
    }
    case 'write':
      mmio(what, () => (step.wide ? t.write64(step.offset, step.value * 0x1_0000_0000 + step.value) : t.write32(step.offset, step.value)));
      break;
    case 'doorbell':
      mmio(what, () => t.write32(doorbellOffset(step.qid, step.cq), step.value));
      break;
    case 'raw doorbell':
      mmio(what, () => t.write32(step.offset, step.value));
      break;
    default:
      throw new Error(`not a benign step: ${what}`);
  }
  const after = FIXED.map((o) => t.read32(o));
  // (CC.EN and CC.SHN are the controller's to act on, never its to change; after chaos a doorbell may fetch and run anything.)
  if (!chaos) FIXED.forEach((o, i) => {
    if (before[i] !== after[i]) throw new Error(`${what}: register 0x${o.toString(16)} changed from 0x${before[i]!.toString(16)} to 0x${after[i]!.toString(16)}`);
  });
  checkOutside(what);
  return what;
}

// ------------------------------------------------------------------ chaos

/** An admin queue address: a guard page, the host's own rings, the arena's edges, outside it, unaligned, zero, anything. */
const queueAddrArb = fc.oneof(
  { weight: 3, arbitrary: fc.nat({ max: 100_000 }).map((p) => ({ k: 'guard' as const, p })) },
  { weight: 2, arbitrary: fc.constantFrom({ k: 'host sq' as const, p: 0 }, { k: 'host cq' as const, p: 0 }, { k: 'admin sq' as const, p: 0 }, { k: 'admin cq' as const, p: 0 }) },
  { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }).map((p) => ({ k: 'end' as const, p: p * PS })) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }).map((v) => ({ k: 'raw' as const, p: Number(v) })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: PS - 1 }).map((p) => ({ k: 'unaligned' as const, p })) },
);
type QueueAddr = typeof queueAddrArb extends fc.Arbitrary<infer T> ? T : never;

function resolveAddr(a: QueueAddr): number {
  const base = w.h.arena.base;
  switch (a.k) {
    case 'guard':
      return base + w.guardPages[a.p % w.guardPages.length]! * PS;
    case 'host sq':
      return base + w.qp.sq.offset;
    case 'host cq':
      return base + w.qp.cq.offset;
    case 'admin sq':
    case 'admin cq': {
      const reg = a.k === 'admin sq' ? Regs.ASQ.offset : Regs.ACQ.offset;
      return w.h.transport.read64(reg);
    }
    case 'end':
      return base + w.h.arena.size + a.p;
    case 'raw':
      return a.p;
    case 'unaligned':
      return base + w.guardPages[0]! * PS + a.p;
  }
}

export type ChaosStep = RegStep | { k: 'cc'; how: 'toggle' | 'enable' | 'disable' | 'shutdown' | 'abrupt' | 'any'; value: number } | { k: 'queue reg'; reg: 'asq' | 'acq'; addr: QueueAddr; wide: boolean } | { k: 'aqa'; value: number } | { k: 'nssr'; value: number };

/** CC.EN 1 with the configuration the driver uses (IOSQES 6, IOCQES 4, MPS 0, CSS NVM). */
const CC_ENABLE = (6 << 16) | (4 << 20) | 1;

export const chaosStepArb: fc.Arbitrary<ChaosStep> = fc.oneof(
  { weight: 3, arbitrary: benignStepArb },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('doorbell' as const),
      qid: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_IO_QUEUES + 1 }) }),
      cq: fc.boolean(),
      value: smallValueArb,
      which: fc.constant('any' as const),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('cc' as const),
      how: fc.constantFrom('toggle' as const, 'enable' as const, 'disable' as const, 'shutdown' as const, 'abrupt' as const, 'any' as const),
      value: u32,
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('queue reg' as const), reg: fc.constantFrom('asq' as const, 'acq' as const), addr: queueAddrArb, wide: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('aqa' as const), value: fc.oneof(fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 64 })).map(([a, b]) => (a | (b << 16)) >>> 0), u32) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('nssr' as const), value: fc.oneof(fc.constant(NSSR_RESET_VALUE), u32) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('io' as const), n: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('wait' as const), ms: fc.constantFrom(0, 0, 1, 3) }) },
);

/** One chaos step: what it did, as text. I/O steps are left to the caller (they need the plans). */
export function runChaos(s: ChaosStep): string {
  const t = w.h.transport;
  let what: string;
  switch (s.k) {
    case 'cc': {
      const cc = t.read32(Regs.CC.offset);
      const value =
        s.how === 'toggle' ? cc ^ 1 : s.how === 'enable' ? CC_ENABLE : s.how === 'disable' ? cc & ~1 : s.how === 'shutdown' ? (cc & ~(3 << 14)) | ((1 + (s.value & 1)) << 14) : s.how === 'abrupt' ? (cc & ~1 & ~(3 << 14)) | (2 << 14) : s.value;
      what = `CC = 0x${(value >>> 0).toString(16)} (${s.how}, was 0x${cc.toString(16)})`;
      countKind(`register: CC ${s.how}`);
      mmio(what, () => t.write32(Regs.CC.offset, value >>> 0));
      break;
    }
    case 'queue reg': {
      const addr = resolveAddr(s.addr);
      const reg = s.reg === 'asq' ? Regs.ASQ.offset : Regs.ACQ.offset;
      what = `${s.reg.toUpperCase()} = 0x${addr.toString(16)} (${s.addr.k})`;
      countKind(`register: ${s.reg.toUpperCase()}`);
      mmio(what, () => {
        if (s.wide) t.write64(reg, addr);
        else {
          t.write32(reg, addr % 0x1_0000_0000);
          t.write32(reg + 4, Math.floor(addr / 0x1_0000_0000));
        }
      });
      break;
    }
    case 'aqa':
      what = `AQA = 0x${s.value.toString(16)}`;
      countKind('register: AQA');
      mmio(what, () => t.write32(Regs.AQA.offset, s.value));
      break;
    case 'nssr':
      what = `NSSR = 0x${s.value.toString(16)}`;
      countKind(s.value === NSSR_RESET_VALUE ? 'register: NSSR reset' : 'register: NSSR, not a reset');
      mmio(what, () => t.write32(Regs.NSSR.offset, s.value));
      break;
    case 'doorbell':
      if (s.which !== 'any') return runBenign(s, true);
      what = describeStep(s);
      countKind('register: doorbell, any queue and value');
      mmio(what, () => t.write32(doorbellOffset(s.qid, s.cq), s.value));
      break;
    case 'read':
    case 'write':
    case 'raw doorbell':
      what = describeStep(s);
      countKind(`register: ${s.k === 'write' ? s.kind : s.k}`);
      mmio(what, () => {
        if (s.k === 'read') return s.wide ? t.read64(s.offset) : t.read32(s.offset);
        if (s.k === 'write') return s.wide ? t.write64(s.offset, s.value) : t.write32(s.offset, s.value);
        return t.write32(s.offset, s.value);
      });
      break;
    default:
      throw new Error(`runChaos: ${describeStep(s)} is the caller's`);
  }
  checkOutside(what);
  return what;
}
