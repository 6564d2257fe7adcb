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
import { PS, ARENA_SIZE, SEED, w, setUpWorld, closeWorld } from './world.js';
import { stats } from './runners.js';
import { check, sanityRound } from './properties.js';

beforeAll(() => setUpWorld({ backend: 'memory' }));
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
    await check('ioOneByOne', 600, SEED);
  });

  it('I/O commands in batches behind one doorbell (seeded)', async () => {
    await check('ioBatched', 200, SEED + 1);
  });

  it('admin commands one at a time, queue commands, AERs and Aborts included (seeded)', async () => {
    await check('adminOneByOne', 400, SEED + 2);
  });

  it('I/O commands between register and doorbell writes a host may make at any time (seeded)', async () => {
    await check('ioWithRegisters', 300, SEED + 3);
  });

  it('register chaos, then a reset that completes and a fresh bring-up that serves (seeded)', async () => {
    await check('registerChaos', 60, SEED + 4);
  });

  it('every property, unseeded (the failure report names the seed)', async () => {
    await check('ioOneByOne', 200);
    await check('ioBatched', 60);
    await check('adminOneByOne', 150);
    await check('ioWithRegisters', 100);
    await check('registerChaos', 20);
  });

  it('still serves a verified sanity round', async () => {
    await sanityRound();
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
    for (const code of [0x000, 0x001, 0x002, 0x004, 0x00b, 0x013, 0x080, 0x100, 0x101, 0x102, 0x105, 0x108, 0x10c, 0x00c]) {
      expect(stats.statuses.get(code) ?? 0, `status 0x${code.toString(16)} seen`).toBeGreaterThan(0);
    }
    for (const kind of ['admin: create I/O CQ', 'admin: create I/O SQ', 'admin: delete I/O SQ', 'admin: delete I/O CQ', 'admin: abort', 'admin: async event request', 'register: CC toggle', 'register: NSSR reset', 'register: INTMS / INTMC', 'chaos: I/O submitted']) {
      expect(stats.kinds.get(kind) ?? 0, kind).toBeGreaterThan(0);
    }
    if (process.env.NVMQ_FUZZ_STATS) console.log(stats);
  });
});
