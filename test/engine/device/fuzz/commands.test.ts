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
 *
 * The pieces live next to this file: the world and its model (world.ts), SQE
 * bytes (sqe.ts), the reference (reference.ts), the command plans and their
 * generators (plans.ts), and the runners that check each command (runners.ts).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { PS, ARENA_SIZE, IO_ENTRIES, SEED, w, setUpWorld, closeWorld, reset } from './world.js';
import { ioPlanArb, buildIo, adminPlanArb, buildAdmin } from './plans.js';
import { stats, runIo, runAdmin } from './runners.js';

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

beforeAll(setUpWorld);
afterAll(closeWorld);

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
