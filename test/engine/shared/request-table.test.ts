import { describe, it, expect } from 'vitest';
import { threadId } from 'node:worker_threads';
import { RequestTable, SlotState } from '../../../src/engine/shared/request-table.js';
import { run } from './helpers.js';

describe('RequestTable', () => {
  it('hands out each CID once until released, lowest first', () => {
    const t = RequestTable.create(3);
    expect([t.tryAllocate(), t.tryAllocate(), t.tryAllocate(), t.tryAllocate()]).toEqual([0, 1, 2, -1]);
    t.release(1);
    expect(t.tryAllocate()).toBe(1);
    expect(() => t.release(7)).toThrow(/outside/);
    t.release(2);
    expect(() => t.release(2)).toThrow(/twice/);
  });

  it('delivers a completion through the slot to a waiting submitter', async () => {
    const t = RequestTable.create(2);
    const cid = t.tryAllocate();
    t.describe(cid, 0x02, 1, 2 ** 40 + 5, 4096);
    expect(t.state(cid)).toBe(SlotState.SUBMITTED);
    const waiting = t.waitCompleted(cid, 2000);
    setTimeout(() => t.complete(cid, 0x4080, 0x1234), 10);
    expect(await waiting).toBe(true);
    expect([t.state(cid), t.status(cid), t.dw0(cid), t.opcode(cid)]).toEqual([SlotState.COMPLETED, 0x4080, 0x1234, 0x02]);
  });

  it('records the thread that took each slot: its own count, and a gone thread’s completed slots freed for it', () => {
    const t = RequestTable.create(4);
    const [a, b] = [t.tryAllocate(), t.tryAllocate()];
    expect([t.heldBy(threadId), t.heldBy(threadId + 1)]).toEqual([2, 0]);
    t.complete(a, 0, 0);
    // One completed (freed now), one still in flight (held until it completes).
    expect(t.releaseCompletedOf(threadId)).toBe(1);
    expect([t.state(a), t.freeCount(), t.heldBy(threadId)]).toEqual([SlotState.FREE, 3, 1]);
    expect(t.releaseCompletedOf(threadId + 1)).toBe(0);
    t.complete(b, 0, 0);
    expect(t.releaseCompletedOf(threadId)).toBe(0);
    expect([t.freeCount(), t.heldBy(threadId)]).toEqual([4, 0]);
  });

  it('never gives one CID to two threads (8 threads, 4 slots)', async () => {
    const table = RequestTable.create(4);
    const owners = new SharedArrayBuffer(4 * 4);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => run<{ conflicts: number; timeouts: number }>('request-table-worker.mjs', { handle: table.handle, owners, id: i + 1, iterations: 5000, useAsync: i % 2 === 0 })),
    );
    for (const r of results) expect(r).toEqual({ conflicts: 0, timeouts: 0 });
    expect(table.freeCount()).toBe(4);
    expect(table.waiters()).toBe(0);
  });

  describe('regression: lost wake-up of the seed driver (unlock → completion frees a slot → wait)', () => {
    async function race(order: 'naive' | 'ours'): Promise<{ cid: number; ms: number }> {
      const table = RequestTable.create(1);
      const held = table.tryAllocate();
      const flagSab = new SharedArrayBuffer(4);
      const flag = new Int32Array(flagSab);
      const result = run<{ cid: number; ms: number }>('lost-wakeup-worker.mjs', { handle: table.handle, flagSab, order, timeoutMs: 750 });
      // Wait (without blocking the event loop) for the worker to reach the window after its unlock.
      for (;;) {
        const w = Atomics.waitAsync(flag, 0, 0, 5000);
        if (w.async) await w.value;
        if (Atomics.load(flag, 0) === 1) break;
      }
      // The completion: the only slot is freed inside the window.
      table.release(held);
      Atomics.store(flag, 0, 2);
      Atomics.notify(flag, 0);
      return result;
    }

    it('the naive order sleeps through the free and only the timeout ends it', async () => {
      const r = await race('naive');
      expect(r.cid).toBe(-1);
      expect(r.ms).toBeGreaterThanOrEqual(700);
    });

    it('waiting on the sequence value read under the lock returns at once and gets the slot', async () => {
      const r = await race('ours');
      expect(r.cid).toBe(0);
      expect(r.ms).toBeLessThan(700);
    });
  });
});
