/**
 * The application's own worker threads (not the engine's pool) attach with
 * engine.attachHandle() and get an I/O queue pair of their own.
 */
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Engine, attach } from '../../dist/index.js';
import { deferPerTest } from '../helpers/harness.js';

const fixture = new URL('../fixtures/attached-worker.mjs', import.meta.url);
const defer = deferPerTest();

async function openEngine(): Promise<Engine> {
  const e = await Engine.open({ namespaces: [{ backend: 'memory', size: 32 << 20 }], workers: 1 });
  defer(() => e.close());
  return e;
}

type Report = { threadId: number; qid: number; bad: number; exiting?: boolean };
type Mode = 'exit' | 'hold' | 'reattach';

/** Starts the fixture in a Worker of our own, and collects what it posts until it exits. */
function startWorker(e: Engine, data: { first: number; count: number; mode?: Mode }): {
  messages: unknown[];
  first: Promise<Report>;
  /** The message at index `n`, once it has come. */
  message(n: number): Promise<unknown>;
  exited: Promise<number>;
  post(m: unknown): void;
} {
  const handle = e.attachHandle();
  const w = new Worker(fixture, { workerData: { ...data, handle }, transferList: [handle.port] });
  defer(() => w.terminate());
  const messages: unknown[] = [];
  const first = new Promise<Report>((resolve, reject) => {
    w.on('message', (m) => {
      messages.push(m);
      if (messages.length === 1) resolve(m as Report);
    });
    w.on('error', reject);
  });
  const exited = new Promise<number>((resolve) => w.on('exit', resolve));
  const message = async (n: number): Promise<unknown> => {
    while (messages.length <= n) await new Promise((r) => setTimeout(r, 5));
    return messages[n];
  };
  return { messages, first, message, exited, post: (m) => w.postMessage(m) };
}

const pairs = (e: Engine): number[] => e.driver.ioQueuePairs.map((q) => q.qid);

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('attached application threads', () => {
  it('attach, verified I/O on a queue pair of its own, detach', async () => {
    const e = await openEngine();
    const poolQids = e.threadIds.map((t) => e.queueOf(t));
    const w = startWorker(e, { first: 0, count: 256 });
    const r = await w.first;
    expect(r.bad).toBe(0);
    expect(poolQids).not.toContain(r.qid);
    expect(r.threadId).not.toBe(0);
    expect(await w.exited).toBe(0);
    expect(w.messages[1]).toEqual({ detached: true, afterDetach: 'NVMQ_QUEUE_DELETED' });
    // Detached: its pair is gone, and what it wrote is there for everyone.
    expect(pairs(e)).not.toContain(r.qid);
    const block = await e.read(1, 5, 1);
    expect(new DataView(block.buffer).getUint32(0, true)).toBe((5 * 2654435761) >>> 0);
  });

  it('two threads at once, each on its own pair', async () => {
    const e = await openEngine();
    // Both hold on to their queue until told to go on: a thread that detached first would give its
    // QID back, and the other could then be granted the same one.
    const hold = { count: 128, mode: 'hold' as const };
    const [a, b] = [startWorker(e, { first: 0, ...hold }), startWorker(e, { first: 1000, ...hold })];
    const [ra, rb] = await Promise.all([a.first, b.first]);
    expect(ra.bad + rb.bad).toBe(0);
    expect(ra.qid).not.toBe(rb.qid);
    expect(pairs(e)).toEqual(expect.arrayContaining([ra.qid, rb.qid]));
    a.post('go');
    b.post('go');
    expect(await Promise.all([a.message(1), b.message(1)])).toEqual([{ afterClose: 'ok' }, { afterClose: 'ok' }]);
    await Promise.all([a.exited, b.exited]);
  });

  it('a thread that exits without detaching: its queue is taken back, the engine serves the others', async () => {
    const e = await openEngine();
    const dying = startWorker(e, { first: 0, count: 64, mode: 'exit' });
    const r = await dying.first;
    expect(r.exiting).toBe(true);
    await dying.exited;
    await until(() => !pairs(e).includes(r.qid));
    // The rest goes on: the main thread, the pool and another attached thread.
    await e.write(1, 3000, new Uint8Array(4096).fill(7));
    expect((await e.read(1, 3000, 1))[100]).toBe(7);
    const next = startWorker(e, { first: 2000, count: 64 });
    expect((await next.first).bad).toBe(0);
    expect(await next.exited).toBe(0);
  });

  it('attach() refuses what is not a handle, in one line', async () => {
    await expect(attach({} as never)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('attachHandle') });
  });

  it('closing the engine with a thread attached: close ends, the thread’s I/O then fails, handles are refused', async () => {
    const e = await openEngine();
    const handle = e.attachHandle();
    const w = new Worker(fixture, { workerData: { first: 0, count: 8, mode: 'hold', handle }, transferList: [handle.port] });
    defer(() => w.terminate());
    const next = (): Promise<unknown> => new Promise((resolve) => w.once('message', resolve));
    expect(((await next()) as Report).bad).toBe(0);
    await e.close();
    expect(() => e.attachHandle()).toThrow(expect.objectContaining({ code: 'NVMQ_ENGINE_CLOSED' }));
    w.postMessage('go');
    const after = (await next()) as { afterClose: string };
    expect(['NVMQ_QUEUE_DELETED', 'NVMQ_CONTROLLER_SHUTDOWN']).toContain(after.afterClose);
  });

  it('after engine.reset() an attached thread’s queue fails; it detaches and attaches again with the same handle', async () => {
    const e = await openEngine();
    const w = startWorker(e, { first: 500, count: 16, mode: 'reattach' });
    const r = await w.first;
    expect(r.bad).toBe(0);
    await e.reset();
    w.post('go');
    const after = (await w.message(1)) as { failed: string; qid: number; same: boolean };
    expect(after.failed).toBe('NVMQ_CONTROLLER_RESET');
    expect(after.same).toBe(true);
    expect(await w.exited).toBe(0);
  });

  it('a thread that dies while the engine closes: close() still ends (its commands are abandoned, not waited for)', async () => {
    const e = await openEngine();
    const handle = e.attachHandle();
    const w = new Worker(fixture, { workerData: { first: 0, count: 8, mode: 'hold', handle }, transferList: [handle.port] });
    await new Promise((resolve) => w.once('message', resolve));
    const t0 = Date.now();
    await Promise.all([e.close(), w.terminate()]);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
