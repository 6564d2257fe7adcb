import { describe, it, expect } from 'vitest';
import { Mutex } from '../../../src/engine/shared/mutex.js';
import { run } from './helpers.js';

describe('Mutex', () => {
  it('excludes four threads from each other: no increment is lost', async () => {
    const sab = new SharedArrayBuffer(8);
    const iterations = 10_000;
    await Promise.all([0, 1, 2, 3].map((i) => run('mutex-worker.mjs', { sab, iterations, useAsync: i % 2 === 1 })));
    expect(new Int32Array(sab)[1]).toBe(4 * iterations);
    expect(new Mutex(new Int32Array(sab), 0).isLocked()).toBe(false);
  });

  it('tryLock fails while held and succeeds after unlock', () => {
    const m = new Mutex(new Int32Array(new SharedArrayBuffer(4)), 0);
    expect(m.tryLock()).toBe(true);
    expect(m.tryLock()).toBe(false);
    m.unlock();
    expect(m.tryLock()).toBe(true);
  });
});

