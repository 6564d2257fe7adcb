/**
 * The application's own worker threads (not the engine's pool) attach with
 * engine.attachHandle() and get an I/O queue pair of their own, or a share
 * of one when the controller has no queue left for them.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Engine, attach, type EngineOptions } from '../../dist/index.js';
import { DATA_PATHS, deferPerTest, tempDirsPerTest, writtenImage } from '../helpers/harness.js';

const fixture = new URL('../fixtures/attached-worker.mjs', import.meta.url);
const defer = deferPerTest();
const dir = tempDirsPerTest();

async function openEngine(opts: Partial<EngineOptions> = {}): Promise<Engine> {
  const e = await Engine.open({ namespaces: [{ backend: 'memory', size: 32 << 20 }], workers: 1, ...opts });
  defer(() => e.close());
  return e;
}

type Report = { threadId: number; qid: number; bad: number; exiting?: boolean };
type Mode = 'exit' | 'hold' | 'reattach' | 'serve';

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

/** A thread in mode 'serve': `order(o)` posts an order and waits for the thread's answer to it. */
function startSharer(e: Engine, first: number): ReturnType<typeof startWorker> & { order(o: unknown): Promise<unknown> } {
  const w = startWorker(e, { first, count: 0, mode: 'serve' });
  let answers = 0;
  return { ...w, order: (o) => (w.post(o), w.message(++answers)) };
}

/** One pool worker (QID 1) and the main thread's pair (QID 2) leave the controller one QID: attached threads share it. */
async function openShared(): Promise<Engine> {
  const e = await openEngine({ poolSize: 1 << 20, controller: { maxIoQueues: 3 } });
  await e.write(1, 8000, new Uint8Array(4096));
  expect(pairs(e)).toEqual([1, 2]);
  return e;
}

const DETACHED = { detached: true, afterDetach: 'NVMQ_QUEUE_DELETED' };

describe('attached threads beyond the controller’s queues share one', () => {
  it('three threads on the last free QID: one shared pair, verified I/O from all of them at once', async () => {
    const e = await openShared();
    const threads = [0, 1, 2].map((k) => startSharer(e, k * 1000));
    const reports = await Promise.all(threads.map((t) => t.first));
    const qid = reports[0]!.qid;
    expect(reports.map((r) => r.qid)).toEqual([qid, qid, qid]);
    expect(new Set(reports.map((r) => r.threadId)).size).toBe(3);
    expect(pairs(e)).toEqual([1, 2, qid]);
    expect(e.driver.ioQueuePairs.find((q) => q.qid === qid)!.shared).toBe(true);
    const results = await Promise.all(threads.map((t, k) => t.order({ io: { first: k * 1000, count: 512 } })));
    expect(results).toEqual([{ bad: 0 }, { bad: 0 }, { bad: 0 }]);
    // What each wrote is there for everyone.
    for (const k of [0, 1, 2]) {
      const block = await e.read(1, k * 1000 + 511, 1);
      expect(new DataView(block.buffer).getUint32(0, true)).toBe(((k * 1000 + 511) * 2654435761) >>> 0);
    }
    expect(await Promise.all(threads.map((t) => t.order('detach')))).toEqual([DETACHED, DETACHED, DETACHED]);
    expect(pairs(e)).toEqual([1, 2]);
  });

  it('one detaches while the other keeps going; the queue stays until the last holder detaches', async () => {
    const e = await openShared();
    const [a, b] = [startSharer(e, 0), startSharer(e, 1000)];
    const [ra, rb] = await Promise.all([a.first, b.first]);
    expect(rb.qid).toBe(ra.qid);
    // Which of the two finishes first is not known, nor needed.
    const [going, left] = await Promise.all([b.order({ io: { first: 1000, count: 1024 } }), a.order('detach')]);
    expect(going).toEqual({ bad: 0 });
    expect(left).toEqual(DETACHED);
    expect(await a.exited).toBe(0);
    expect(pairs(e)).toContain(ra.qid);
    expect(await b.order({ io: { first: 3000, count: 256 } })).toEqual({ bad: 0 });
    // A newcomer joins the pair b still holds.
    const c = startSharer(e, 5000);
    expect((await c.first).qid).toBe(ra.qid);
    expect(await b.order('detach')).toEqual(DETACHED);
    expect(pairs(e)).toContain(ra.qid);
    expect(await c.order({ io: { first: 5000, count: 64 } })).toEqual({ bad: 0 });
    expect(await c.order('detach')).toEqual(DETACHED);
    expect(pairs(e)).toEqual([1, 2]);
  });

  it('one exits without detaching while the others keep going: its request slots come back; the queue goes with the last holder', async () => {
    const e = await openShared();
    const [a, b, c] = [startSharer(e, 0), startSharer(e, 1000), startSharer(e, 2000)];
    const qid = (await a.first).qid;
    expect([(await b.first).qid, (await c.first).qid]).toEqual([qid, qid]);
    const qp = e.driver.ioQueuePairs.find((q) => q.qid === qid)!;
    // a ends with reads in flight (a memory namespace completes them, but a never picks them up) while b and c work.
    a.post({ exit: { count: 8, nlb: 1 } });
    const going = await Promise.all([b.order({ io: { first: 1000, count: 512 } }), c.order({ io: { first: 2000, count: 512 } })]);
    expect(going).toEqual([{ bad: 0 }, { bad: 0 }]);
    await a.exited;
    // Nothing is left holding a request slot of the pair: the engine freed a's for it.
    await until(() => qp.outstanding === 0);
    expect(pairs(e)).toContain(qid);
    expect(await b.order({ io: { first: 1000, count: 256 } })).toEqual({ bad: 0 });
    expect(await b.order('detach')).toEqual(DETACHED);
    expect(pairs(e)).toContain(qid);
    expect(await c.order({ io: { first: 2000, count: 64 } })).toEqual({ bad: 0 });
    // The last holder ends without detaching too: the pair goes with it.
    c.post({ exit: { count: 4, nlb: 1 } });
    await c.exited;
    await until(() => !pairs(e).includes(qid));
    expect(pairs(e)).toEqual([1, 2]);
    // The engine serves on, and a new thread gets the QID back.
    const d = startSharer(e, 6000);
    expect((await d.first).qid).toBe(qid);
    expect(await d.order({ io: { first: 6000, count: 64 } })).toEqual({ bad: 0 });
    expect(await d.order('detach')).toEqual(DETACHED);
  });

  // The dying threads' reads are executing in those threads when they end: on the portable path libuv cannot finish
  // them before they are gone; on io_uring O_DIRECT keeps them on the disk (see the pool worker's test in engine.test.ts).
  it.each(DATA_PATHS)('two end together with commands executing in their threads: those complete aborted, the third goes on (%s)', async (dataPath) => {
    const file = path.join(dir(), 's.img');
    const ns = dataPath === 'io_uring' ? { backend: 'file' as const, path: writtenImage(file, 16 << 20), direct: true } : { backend: 'file' as const, path: file, size: 16 << 20 };
    // The pool worker takes QID 1; the attached threads share QID 2, the last.
    const e = await openEngine({ namespaces: [ns], poolSize: 7 << 20, controller: { dataPath, maxIoQueues: 2 } });
    const poolThreads = e.threadIds;
    const [a, b, c] = [startSharer(e, 0), startSharer(e, 3000), startSharer(e, 0)];
    const qid = (await a.first).qid;
    expect([(await b.first).qid, (await c.first).qid]).toEqual([qid, qid]);
    const qp = e.driver.ioQueuePairs.find((q) => q.qid === qid)!;
    const dying = dataPath === 'io_uring' ? { count: 12, nlb: 128 } : { count: 4, nlb: 1 };
    a.post({ exit: dying });
    c.post({ exit: dying });
    await Promise.all([a.exited, c.exited]);
    await until(() => qp.outstanding === 0, 15_000);
    // Each of their reads ended once: completed as Command Aborted due to SQ Deletion (SCT 0, SC 08h) when a dying
    // thread was executing it, or read (a read one thread rang while the engine held fetching for the other's
    // leaving is fetched and run by the engine; on io_uring the disk may also finish some before their thread is
    // gone). On the portable path at least the first thread's reads are aborted: a dying thread executes them.
    const aborted = (await e.driver.errorLog()).filter((x) => x.sqid === qid);
    expect(aborted.every((x) => x.status === 0x08)).toBe(true);
    expect(aborted.length + (await e.driver.smartLog()).hostReadCommands).toBe(2 * dying.count);
    if (dataPath === 'portable') expect(aborted.length).toBeGreaterThanOrEqual(dying.count);
    // Without a reset: the pool's worker is the one from before, and b's queue never failed.
    expect(e.threadIds).toEqual(poolThreads);
    expect(pairs(e)).toContain(qid);
    expect(await b.order({ io: { first: 3000, count: 256 } })).toEqual({ bad: 0 });
    expect(await b.order('detach')).toEqual(DETACHED);
    expect(pairs(e)).not.toContain(qid);
  }, 30_000);

  /** Two threads in `mode` on the shared pair, their first verified I/O done; `goOn()` tells both to go on and returns what each says next. */
  async function startTwo(e: Engine, mode: Mode): Promise<{ exited: Promise<number[]>; goOn(): Promise<unknown[]> }> {
    const ws = [500, 1500].map((first) => startWorker(e, { first, count: 16, mode }));
    const [ra, rb] = await Promise.all(ws.map((w) => w.first));
    expect([ra!.bad, rb!.bad]).toEqual([0, 0]);
    expect(rb!.qid).toBe(ra!.qid);
    return {
      exited: Promise.all(ws.map((w) => w.exited)),
      goOn: () => Promise.all(ws.map((w) => (w.post('go'), w.message(1)))),
    };
  }

  it('closing the engine with threads sharing a queue: close ends, their I/O then fails', async () => {
    const e = await openShared();
    const both = await startTwo(e, 'hold');
    await e.close();
    for (const after of (await both.goOn()) as Array<{ afterClose: string }>) {
      expect(['NVMQ_QUEUE_DELETED', 'NVMQ_CONTROLLER_SHUTDOWN']).toContain(after.afterClose);
    }
  });

  it('after engine.reset() the shared queue fails for each holder; each detaches and attaches again', async () => {
    const e = await openShared();
    const both = await startTwo(e, 'reattach');
    await e.reset();
    for (const after of (await both.goOn()) as Array<{ failed: string; same: boolean }>) {
      expect(after).toMatchObject({ failed: 'NVMQ_CONTROLLER_RESET', same: true });
    }
    expect(await both.exited).toEqual([0, 0]);
  });

  it('no QID free and no shared pair to join: attach() fails with NVMQ_NO_QUEUE, in one line', async () => {
    // Two pool workers take both QIDs, each a pair of its own.
    const e = await openEngine({ workers: 2, controller: { maxIoQueues: 2 } });
    const w = startWorker(e, { first: 0, count: 0 });
    const r = (await w.first) as unknown as { refused: string; message: string };
    expect(r.refused).toBe('NVMQ_NO_QUEUE');
    expect(r.message).toMatch(/^no I\/O queue for this thread: all 2 I\/O queues .* in use/);
    expect(r.message).not.toContain('\n');
  });

  it('a share with no room left for its buffer pool: attach() fails naming the arena, not the queue', async () => {
    // The arena holds pools for three threads: the pool worker's and two attached threads'.
    const e = await openEngine({ poolSize: 16 << 20, controller: { maxIoQueues: 2 } });
    const [a, b] = [startSharer(e, 0), startSharer(e, 1000)];
    expect((await b.first).qid).toBe((await a.first).qid);
    const c = startWorker(e, { first: 0, count: 0 });
    const r = (await c.first) as unknown as { refused: string; message: string };
    expect(r.refused).toBe('NVMQ_ARENA_EXHAUSTED');
    expect(r.message).toMatch(/^this thread cannot attach: DMA arena exhausted/);
    // The others are not disturbed.
    expect(await a.order({ io: { first: 0, count: 64 } })).toEqual({ bad: 0 });
  });
});
