/**
 * How queue pairs wait for completions (host/waiter.ts), observed in real
 * worker threads: a thread whose only work is its I/O waits in the ring; one
 * that also runs timers keeps them on time; the main thread never blocks.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { Engine } from '../../../dist/index.js';
import { deferPerTest, tempDirsPerTest } from '../../helpers/harness.js';
import { dataPathStatus } from '../../../src/engine/uring/data-path.js';

const task = new URL('../../fixtures/wait-task.mjs', import.meta.url).href;
const dir = tempDirsPerTest();
const defer = deferPerTest();
const uring = dataPathStatus().path === 'io_uring';

type Report = { mode: string; ios: number; ringWaits: number; ringCompletions: number; ticks: number; p50: number; p99: number };

async function open(waitMode?: 'adaptive' | 'event-loop' | 'ring'): Promise<Engine> {
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: path.join(dir(), 'w.img'), size: 8 << 20 }], workers: 1, ...(waitMode ? { waitMode } : {}) });
  defer(() => e.close());
  return e;
}

describe('waiting for completions', () => {
  it(`a worker whose only work is its I/O waits in the ring (adaptive, the default)${uring ? '' : ': not on the portable path, where there is no ring to wait in'}`, async () => {
    const e = await open();
    const r = await e.run<Report>(task, { ms: 400, depth: 4, timer: false });
    expect(r.mode).toBe('adaptive');
    expect(r.ios).toBeGreaterThan(0);
    if (uring) {
      expect(r.ringWaits).toBeGreaterThan(0);
      expect(r.ringCompletions).toBeGreaterThan(r.ios / 4);
    } else {
      expect(r.ringWaits).toBe(0);
    }
  });

  it('pinned to the event loop, it never waits in the ring', async () => {
    const e = await open('event-loop');
    const r = await e.run<Report>(task, { ms: 200, depth: 4, timer: false });
    expect(r.mode).toBe('event-loop');
    expect(r.ios).toBeGreaterThan(0);
    expect(r.ringWaits).toBe(0);
  });

  it('a worker that also runs a 1 ms timer keeps it firing while its I/O waits', async () => {
    const e = await open();
    const r = await e.run<Report>(task, { ms: 600, depth: 4, timer: true });
    expect(r.ios).toBeGreaterThan(0);
    // Each wait blocks the thread for at most a millisecond: the timer runs every turn of the loop.
    expect(r.ticks).toBeGreaterThan(100);
    expect(r.p50).toBeLessThan(1.5);
  });

  it('the main thread never blocks: its pair waits through the event loop', async () => {
    const e = await open('ring');
    expect((await e.queue()).waiter.mode).toBe('event-loop');
  });

  it('a wait mode that does not exist is refused in one line', async () => {
    await expect(Engine.open({ namespaces: [{ backend: 'memory', size: 1 << 20 }], waitMode: 'spin' as never })).rejects.toMatchObject({
      code: 'NVMQ_INVALID_ARGUMENT',
      message: expect.stringContaining("waitMode must be one of 'adaptive', 'event-loop', 'ring', 'poll'"),
    });
  });
});

describe('the waiter under a closed loop that resubmits inside its wait', () => {
  it('arms one check per turn, not one more each time (timers keep running, work does not grow)', async () => {
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(new URL('../../fixtures/waiter-worker.mjs', import.meta.url));
    defer(() => w.terminate());
    const { perTick } = await new Promise<{ perTick: number[] }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    // One check per event-loop turn: about the same number every tick. Arming a second check each time
    // doubled them every turn (tens of thousands within a few ticks, timers starving).
    expect(perTick).toHaveLength(30);
    const sorted = [...perTick].sort((a, b) => a - b);
    expect(sorted[29]!).toBeLessThan(20 * Math.max(1, sorted[15]!));
  });
});
