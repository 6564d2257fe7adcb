/**
 * The fuzz properties, shared by the suite (commands.test.ts, file.test.ts)
 * and the long run (long-run.fuzz.ts): each is a fast-check property over
 * the world set up by world.ts, so a failure reproduces from its seed and
 * path.
 */
import fc from 'fast-check';
import { Regs } from '../../../../src/engine/spec/registers.js';
import { IO_ENTRIES, PS, NAMESPACES, w, reset, recover, checkWorld, withTimeout, worldName } from './world.js';
import { ioPlanArb, buildIo, adminPlanArb, buildAdmin } from './plans.js';
import { stats, countKind, runIo, runAdmin, endAdminSequence, resetAdminModel, settle } from './runners.js';
import { benignStepArb, chaosStepArb, runBenign, runChaos } from './registers.js';
import { refIo } from './reference.js';
import { encode } from './sqe.js';

/** What a run is, for the watchdog's message: the caller sets the property's name and seed. */
let context = '';
let run = 0;

export function label(property: string, seed: number | undefined): void {
  context = `world ${worldName(w.kind)}, property "${property}", seed ${seed ?? 'unseeded'}`;
  run = 0;
}

function startRun(fill: number): void {
  w.watchdog.set(`${context}, run ${run++} (fast-check path ${run - 1})`);
  reset(fill);
}

/** Unmasks every vector (a masked one holds completions back), counting it when something was masked. */
function unmaskAll(): void {
  if (w.h.transport.read32(Regs.INTMS.offset) !== 0) countKind('register: INTMC with vectors masked');
  w.h.transport.write32(Regs.INTMC.offset, 0xffffffff);
}

const fillArb = fc.nat({ max: 2 });
const ioSequence = fc.record({ fill: fillArb, plans: fc.array(ioPlanArb, { minLength: 1, maxLength: 6 }) });
const ioBatches = fc.record({ fill: fillArb, plans: fc.array(ioPlanArb, { minLength: 2, maxLength: IO_ENTRIES - 1 }) });
/** Now and then AERs past the limit (AERL + 1 held) first. */
const adminSequence = fc.record({ fill: fillArb, aers: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: 6 }) }), plans: fc.array(adminPlanArb, { minLength: 1, maxLength: 8 }) });
const ioAndRegisters = fc.record({
  fill: fillArb,
  steps: fc.array(fc.oneof({ weight: 2, arbitrary: ioPlanArb.map((p) => ({ io: p })) }, { weight: 3, arbitrary: benignStepArb.map((r) => ({ reg: r })) }), { minLength: 1, maxLength: 10 }),
});
const chaos = fc.record({
  fill: fillArb,
  steps: fc.array(chaosStepArb, { minLength: 1, maxLength: 16 }),
  plans: fc.array(ioPlanArb, { minLength: 8, maxLength: 8 }),
});

export const properties = {
  ioOneByOne: fc.asyncProperty(ioSequence, async ({ fill, plans }) => {
    startRun(fill);
    for (const p of plans) await runIo([buildIo(p)]);
  }),
  ioBatched: fc.asyncProperty(ioBatches, async ({ fill, plans }) => {
    startRun(fill);
    // Every plan is built (lists and ranges written) before the doorbell: later commands see what earlier ones did.
    await runIo(plans.map(buildIo));
  }),
  adminOneByOne: fc.asyncProperty(adminSequence, async ({ fill, aers, plans }) => {
    startRun(fill);
    // A run that failed may have left AERs held and queues made: gone before this one starts.
    await endAdminSequence().catch(() => {});
    resetAdminModel();
    for (let i = 0; i < aers; i++) await runAdmin(encode({ opcode: 0x0c, fuse: 0, psdt: 0, nsid: 0, cdw2: 0, cdw3: 0, mptr: 0n, prp1: 0n, prp2: 0n, cdw10: 0, cdw11: 0, cdw12: 0, cdw13: 0, cdw14: 0, cdw15: 0 }));
    // Built one at a time: an Abort names an AER held at that moment.
    for (const p of plans) await runAdmin(buildAdmin(p));
    await endAdminSequence();
  }),
  /** Checked I/O with register and doorbell writes a host may make at any moment in between. */
  ioWithRegisters: fc.asyncProperty(ioAndRegisters, async ({ fill, steps }) => {
    startRun(fill);
    for (const s of steps) {
      if ('reg' in s) {
        runBenign(s.reg);
        w.watchdog.beat();
        continue;
      }
      unmaskAll();
      await runIo([buildIo(s.io)]);
    }
    unmaskAll();
    await settle();
    checkWorld('after I/O and register writes');
  }),
  /** Anything at all, then a reset: it completes, nothing moves after it, and the controller serves again. */
  registerChaos: fc.asyncProperty(chaos, async ({ fill, steps, plans }) => {
    startRun(fill);
    const submitted: Array<Promise<unknown>> = [];
    let next = 0;
    for (const s of steps) {
      if (s.k === 'io') {
        countKind('chaos: I/O submitted', s.n);
        for (let i = 0; i < s.n; i++) {
          const raw = buildIo(plans[next++ % plans.length]!);
          stats.commands++;
          // The host may have failed the pair already, or be out of request slots: either way the promise settles.
          const qp = w.qp;
          submitted.push(
            Promise.resolve()
              .then(() => qp.passthru({ raw }))
              .then(
                () => 'completed',
                () => 'failed',
              ),
          );
        }
      } else if (s.k === 'wait') await new Promise((r) => setTimeout(r, s.ms));
      else runChaos(s);
      w.watchdog.beat();
    }
    await recover();
    // Every command the host submitted settles: completed, or failed by the reset.
    await withTimeout(Promise.allSettled(submitted), `${submitted.length} I/O commands submitted during register chaos`);
    // Once CSTS.RDY has cleared nothing writes host memory or the namespaces: fill them, wait, look.
    reset(fill);
    await new Promise((r) => setTimeout(r, 2));
    checkWorld('after the reset that ended register chaos');
    await sanityRound();
    resetAdminModel();
  }),
};

export type PropertyName = keyof typeof properties;

/** Runs property `name` `numRuns` times (from `seed` when given; fast-check names the seed of a failure). */
export async function check(name: PropertyName, numRuns: number, seed?: number): Promise<void> {
  label(name, seed);
  await fc.assert(properties[name] as fc.IAsyncProperty<[unknown]>, { numRuns, endOnFailure: true, ...(seed !== undefined ? { seed } : {}) });
  w.watchdog.disarm();
}

/**
 * Valid commands the controller must serve after any sequence: per
 * namespace a write through a PRP list, a read of it, Write Zeroes, a
 * deallocate and a flush, each checked against the reference;
 * then an Identify.
 */
export async function sanityRound(): Promise<void> {
  const g = (i: number): bigint => w.base + BigInt(w.guardPages[(i * 7) % w.guardPages.length]! * PS);
  const list = (at: number, entries: bigint[]): bigint => {
    const off = w.guardPages[(at * 7) % w.guardPages.length]! * PS;
    entries.forEach((e, i) => {
      w.h.arena.view.setBigUint64(off + 8 * i, e, true);
      new DataView(w.state.arena.buffer).setBigUint64(off + 8 * i, e, true);
    });
    return g(at);
  };
  const sqes: Uint8Array[] = [];
  const words = { fuse: 0, psdt: 0, cdw2: 0, cdw3: 0, mptr: 0n, cdw13: 0, cdw14: 0, cdw15: 0 };
  NAMESPACES.forEach((n, k) => {
    const b = 10 * k;
    const nlb = (3 * PS) / n.lbaSize;
    sqes.push(encode({ ...words, opcode: 0x01, nsid: n.nsid, prp1: g(b), prp2: list(b + 1, [g(b + 2), g(b + 3)]), cdw10: 4, cdw11: 0, cdw12: nlb - 1 }));
    sqes.push(encode({ ...words, opcode: 0x02, nsid: n.nsid, prp1: g(b + 4), prp2: list(b + 5, [g(b + 6), g(b + 7)]), cdw10: 4, cdw11: 0, cdw12: nlb - 1 }));
    sqes.push(encode({ ...words, opcode: 0x08, nsid: n.nsid, prp1: 0n, prp2: 0n, cdw10: 5, cdw11: 0, cdw12: 0 }));
    const ranges = w.guardPages[((b + 8) * 7) % w.guardPages.length]! * PS;
    for (const a of [w.h.arena.view, new DataView(w.state.arena.buffer)]) {
      a.setUint32(ranges + 4, 2, true);
      a.setBigUint64(ranges + 8, 1n, true);
    }
    sqes.push(encode({ ...words, opcode: 0x09, nsid: n.nsid, prp1: g(b + 8), prp2: 0n, cdw10: 0, cdw11: 4, cdw12: 0 }));
    sqes.push(encode({ ...words, opcode: 0x00, nsid: n.nsid, prp1: 0n, prp2: 0n, cdw10: 0, cdw11: 0, cdw12: 0 }));
  });
  for (const s of sqes) if (refIo(w.state, s).verdict !== 'ok') throw new Error(`sanity round: the reference does not expect command ${s[0]} to succeed`);
  const ok = stats.ioOk;
  countKind('sanity round');
  // One at a time: a file namespace runs a batch's commands in any order, and these depend on theirs.
  for (const sqe of sqes) await runIo([sqe]);
  if (stats.ioOk - ok !== sqes.length) throw new Error('sanity round: a command was not run');
  resetAdminModel();
  await runAdmin(encode({ ...words, opcode: 0x06, nsid: 0, prp1: g(30), prp2: 0n, cdw10: 1, cdw11: 0, cdw12: 0 }));
}
