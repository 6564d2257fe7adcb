import { describe, it, expect, afterEach } from 'vitest';
import * as path from 'node:path';
// Engine runs its workers from the build (worker threads cannot run TypeScript): tests take it from there too.
import { Engine } from '../../dist/index.js';
import { pattern, sameBytes, tempDirsPerTest, writtenImage, DATA_PATHS } from '../helpers/harness.js';

const fixture = (name: string): string => new URL(`../fixtures/${name}`, import.meta.url).href;
type VerifyResult = { threadId: number; qid: number; ios: number; bad: number[]; outstanding: number; free: number; slots: number };

// Registered first, so it runs after the engine is closed (vitest runs after-hooks last in, first out).
const dir = tempDirsPerTest();
let engine: Engine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

describe('Engine', () => {
  it('gives every worker its own queue pair and runs tasks with it', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 16 << 20 }], workers: 2 });
    const ids = engine.threadIds;
    expect(ids).toHaveLength(2);
    const qids = ids.map((t) => engine!.queueOf(t));
    expect(new Set(qids).size).toBe(2);
    const infos = await Promise.all(Array.from({ length: 8 }, () => engine!.run<{ threadId: number; qid: number; shared: boolean }>(fixture('info-task.mjs'))));
    for (const i of infos) {
      expect(i.shared).toBe(false);
      expect(engine.queueOf(i.threadId)).toBe(i.qid);
    }
  });

  it('an idle engine uses under 1% of a core: workers and the main thread wait, nobody polls', async () => {
    // A file namespace: every thread that did I/O (the main thread, both workers) holds an io_uring.
    engine = await Engine.open({ namespaces: [{ backend: 'file', path: path.join(dir(), 'idle.img'), size: 8 << 20 }], workers: 2 });
    await engine.read(1, 0, 1);
    await Promise.all([0, 1].map(() => engine!.run(fixture('verify-task.mjs'), { nsid: 1, first: 0, count: 8, passes: 1, depth: 2, seed: 1, lbaSize: 4096 })));
    await new Promise((r) => setTimeout(r, 200));
    const before = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const used = process.cpuUsage(before);
    const cpuMs = (used.user + used.system) / 1000;
    // The whole process (main thread and both workers) over a second of idleness.
    expect(cpuMs).toBeLessThan(0.01 * (performance.now() - t0));
  });

  for (const backend of ['memory', 'file'] as const) {
    it(`verified I/O from two workers on a ${backend} namespace, visible to the main thread`, async () => {
      const ns = backend === 'memory' ? { backend, size: 16 << 20 } : { backend, path: path.join(dir(), 'e.img'), size: 16 << 20 };
      engine = await Engine.open({ namespaces: [ns], workers: 2 });
      const results = await Promise.all(
        [0, 1].map((k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: k * 1000, count: 500, passes: 2, depth: 8, seed: 42 + k, lbaSize: 4096 })),
      );
      for (const r of results) {
        expect(r.bad).toEqual([]);
        expect(r.ios).toBe(2000);
        expect(r.outstanding).toBe(0);
      }
      const data = pattern(3 * 4096, 9);
      await engine.write(1, 4000, data);
      expect(sameBytes(await engine.read(1, 4000, 3), data)).toBe('equal');
      const tagged = await engine.read(1, 1499, 1);
      expect(new DataView(tagged.buffer).getUint32(0, true)).toBe(1499);
      // Every worker counted what it completed: the SMART log adds the rows up exactly.
      const smart = await engine.driver.smartLog();
      expect(smart.hostReadCommands).toBe(2 * 1000 + 2);
      expect(smart.hostWriteCommands).toBe(2 * 1000 + 1);
      expect(smart.dataUnitsRead).toBe(Math.ceil(((2 * 1000 + 4) * 4096) / 512 / 1000));
    });
  }

  it('regression stress: 8 threads share one queue of depth 4; every verified I/O completes and no slot leaks', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 64 << 20 }], workers: 8, queues: 1, queueDepth: 5 });
    expect(engine.sharing).toBe(true);
    const qids = new Set(engine.threadIds.map((t) => engine!.queueOf(t)));
    expect(qids.size).toBe(1);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: k * 2000, count: 1250, passes: 2, depth: 4, seed: k + 1, lbaSize: 4096 })),
    );
    let total = 0;
    for (const r of results) {
      expect(r.bad).toEqual([]);
      expect(r.slots).toBe(4);
      total += r.ios;
    }
    expect(total).toBe(8 * 5000);
    const after = await engine.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: 16000, count: 1, passes: 1, depth: 1, seed: 1, lbaSize: 4096 });
    expect(after.free).toBe(4);
    expect(after.outstanding).toBe(0);
  }, 60_000);

  // On io_uring a read of cached data completes inside its doorbell: the dying worker's reads are kept in flight
  // by O_DIRECT on written blocks, 6 MiB of them (the ring is torn down with them in flight when the thread ends).
  // The disk may finish some before the thread is gone (a loaded machine can preempt it between its doorbell and
  // its exit): those complete normally, the rest as aborted.
  it.each(DATA_PATHS)('a worker that dies loses its queue pair; its replacement gets a fresh one and the others never notice (%s)', async (dataPath) => {
    const file = path.join(dir(), 'd.img');
    const ns = dataPath === 'io_uring' ? { backend: 'file' as const, path: writtenImage(file, 16 << 20), direct: true } : { backend: 'file' as const, path: file, size: 16 << 20 };
    engine = await Engine.open({ namespaces: [ns], workers: 2, controller: { dataPath } });
    const long = engine.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: 0, count: 2000, passes: 2, depth: 8, seed: 5, lbaSize: 4096 });
    const threadsBefore = engine.threadIds;
    const qidOf = new Map(threadsBefore.map((t) => [t, engine!.queueOf(t)]));
    const dying = dataPath === 'io_uring' ? { count: 12, nlb: 128 } : { count: 4, nlb: 1 };
    await expect(engine.run(fixture('die-task.mjs'), { nsid: 1, ...dying })).rejects.toThrow();
    const r = await long;
    expect(r.bad).toEqual([]);
    expect(r.ios).toBe(8000);
    // The pool is back to two workers, each with a queue pair of its own.
    for (let i = 0; i < 100 && engine.threadIds.filter((t) => engine!.queueOf(t) !== undefined).length < 2; i++) await new Promise((res) => setTimeout(res, 20));
    const qids = engine.threadIds.map((t) => engine!.queueOf(t));
    expect(qids.every((q) => q !== undefined)).toBe(true);
    expect(new Set(qids).size).toBe(2);
    // The dead worker's grant was taken back (its pair deleted): it no longer holds a queue.
    const gone = threadsBefore.filter((t) => !engine!.threadIds.includes(t));
    expect(gone).toHaveLength(1);
    expect(engine.queueOf(gone[0]!)).toBeUndefined();
    // Its reads still in flight when it died completed as Command Aborted due to SQ Deletion (SCT 0, SC 08h): on
    // the portable path all four (libuv cannot finish them before the thread is gone), on io_uring at least one.
    const log = await engine.driver.errorLog();
    const aborted = log.filter((e) => e.sqid === qidOf.get(gone[0]!));
    expect(aborted.every((e) => e.status === 0x08)).toBe(true);
    if (dataPath === 'portable') expect(aborted).toHaveLength(4);
    else expect(aborted.length).toBeGreaterThanOrEqual(1);
    expect(aborted.length).toBeLessThanOrEqual(dying.count);
    const again = await Promise.all([0, 1].map((k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: 3000 + k * 100, count: 100, passes: 1, depth: 4, seed: 7, lbaSize: 4096 })));
    for (const a of again) expect(a.bad).toEqual([]);
  }, 30_000);

  it('a controller reset with I/O in flight fails every request in the workers; fresh queue pairs work after it', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'file', path: path.join(dir(), 'r.img'), size: 16 << 20 }], workers: 2 });
    const before = engine.threadIds.map((t) => engine!.queueOf(t));
    const probes = Promise.allSettled([0, 1].map(() => engine!.run<Record<string, number>>(fixture('reset-probe-task.mjs'), { nsid: 1, depth: 8 })));
    await new Promise((r) => setTimeout(r, 100));
    await engine.reset();
    const ended = await probes;
    // Each task saw its in-flight reads fail with the reset, and then ended on its own.
    for (const e of ended) expect(e.status === 'fulfilled' ? Object.keys(e.value) : String(e.reason)).toEqual(['NVMQ_CONTROLLER_RESET']);
    expect(engine.threadIds.map((t) => engine!.queueOf(t)).every((q) => q !== undefined)).toBe(true);
    expect(before.every((q) => q !== undefined)).toBe(true);
    const again = await Promise.all([0, 1].map((k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: k * 500, count: 200, passes: 1, depth: 8, seed: 11, lbaSize: 4096 })));
    for (const a of again) expect(a.bad).toEqual([]);
  }, 30_000);

  it('a worker that dies on a shared queue pair resets the engine: nothing hangs, fresh pairs work', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'file', path: path.join(dir(), 's.img'), size: 16 << 20 }], workers: 2, queues: 1, queueDepth: 5 });
    const survivor = Promise.allSettled([engine.run<Record<string, number>>(fixture('reset-probe-task.mjs'), { nsid: 1, depth: 4 })]);
    await expect(engine.run(fixture('die-task.mjs'), { nsid: 1 })).rejects.toThrow();
    const [s] = await survivor;
    // The survivor did not hang: its in-flight reads failed with the reset, or (on a heavily loaded
    // machine, past the reset's grace period) the task ended with its worker.
    if (s!.status === 'fulfilled') expect(Object.keys(s!.value)).toEqual(['NVMQ_CONTROLLER_RESET']);
    else expect(String(s!.reason)).toMatch(/Terminating worker thread/);
    for (let i = 0; i < 200 && engine.threadIds.filter((t) => engine!.queueOf(t) !== undefined).length < 2; i++) await new Promise((res) => setTimeout(res, 25));
    const again = await Promise.all([0, 1].map((k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: k * 500, count: 100, passes: 1, depth: 4, seed: 13, lbaSize: 4096 })));
    for (const a of again) expect(a.bad).toEqual([]);
  }, 30_000);

  it('an invalid doorbell written in a worker reaches the admin queue as an asynchronous event', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 8 << 20 }], workers: 1 });
    const aer = engine.driver.adminPassthru({ opcode: 0x0c });
    await engine.run(fixture('bad-doorbell-task.mjs'));
    const c = await aer;
    expect(c.status).toBe(0);
    // Error status (type 0), Invalid Doorbell Write Value (01h), Error Information log (01h).
    expect(c.dw0).toBe(0x00010100);
  });

  it('a reset and a close issued together run one after the other', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 8 << 20 }], workers: 2 });
    const r = engine.reset();
    const c = engine.close();
    await r;
    await c;
    engine = undefined;
  }, 30_000);

  it('close() with I/O in flight completes or aborts everything and nothing hangs', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'file', path: path.join(dir(), 'c.img'), size: 16 << 20 }], workers: 2 });
    const running = [0, 1].map((k) => engine!.run<VerifyResult>(fixture('verify-task.mjs'), { nsid: 1, first: k * 1000, count: 400, passes: 1, depth: 16, seed: 3, lbaSize: 4096 }));
    const closing = engine.close();
    const settled = await Promise.allSettled(running);
    await closing;
    engine = undefined;
    for (const s of settled) if (s.status === 'fulfilled') expect(s.value.bad).toEqual([]);
  }, 30_000);
});

describe('Engine options', () => {
  it('rejects a bad option with one line naming it', async () => {
    for (const [opts, needle] of [
      [{ workers: 0 }, 'workers'],
      [{ workers: 1, queueDepth: 1 }, 'queueDepth'],
      [{ workers: 1, queues: 0 }, 'queues'],
      [{ workers: 1, poolSize: 4096 }, 'poolSize'],
      [{ workers: 1, workerSemiSpaceMb: -1 }, 'workerSemiSpaceMb'],
      [{ workers: 1, workerSemiSpaceMb: 1.5 }, 'workerSemiSpaceMb'],
    ] as const) {
      const err = await Engine.open({ namespaces: [{ backend: 'memory', size: 1 << 20 }], ...opts }).catch((e: Error & { code: string }) => e);
      expect(err).toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
      expect((err as Error).message).toContain(needle);
      expect((err as Error).message.split('\n')).toHaveLength(1);
    }
  });
});
