// The fsync-error trap at the engine level: a namespace that may have lost acknowledged data stays failed for
// every thread that executes its commands (the main thread and the pool's workers each run the controller),
// across engine.reset(), until the engine is opened again. A loop device over a sparse file on a 1 MiB tmpfs
// takes buffered writes, then fails their write-back with EIO; root, as CI has.
import { describe, it, expect, afterEach } from 'vitest';
// Engine runs its workers from the build (worker threads cannot run TypeScript): tests take it from there too.
import { Engine } from '../../dist/index.js';
import { tempDirsPerTest, thinLoopDevice, DATA_PATHS } from '../helpers/harness.js';
import type { DataPath } from '../../src/engine/uring/data-path.js';

const fixture = (name: string): string => new URL(`../fixtures/${name}`, import.meta.url).href;
type Outcome = { threadId: number; writes: string[]; flushes: string[]; probe: string | undefined };

/** SMART Critical Warning bits 2 (reliability degraded) and 3 (read only); Asynchronous Event Configuration enables their events with the same bits. */
const LOST = 0x0c;
const ASYNC_EVENT_CONFIG = 0x0b;
const AER = 0x0c;
/** An Asynchronous Event Request's completion DW0 for a SMART / Health event (type 1), information 00h (reliability), log page 02h. */
const LOST_EVENT_DW0 = 0x1 | (0x00 << 8) | (0x02 << 16);

const cleanups: Array<() => unknown> = [];
// Registered first, so it runs after the engine is closed (vitest runs after-hooks last in, first out).
const dir = tempDirsPerTest();
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const thinDevice = (): { dev: string; grow(size: string): void } => thinLoopDevice(dir(), cleanups);

async function open(dev: string, dataPath: DataPath): Promise<Engine> {
  const engine = await Engine.open({ namespaces: [{ backend: 'file', path: dev, force: true }], workers: 1, controller: { dataPath } });
  cleanups.push(() => engine.close());
  expect(engine.controller.dataPath).toBe(dataPath);
  return engine;
}

const code = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: { code: string }) => e.code);

/** Enables the SMART / Health events for bits 2 and 3 and posts an Asynchronous Event Request; `dw0` resolves with its completion's DW0. */
async function armLostEvent(engine: Engine): Promise<{ dw0: Promise<number> }> {
  await engine.driver.setFeature(ASYNC_EVENT_CONFIG, LOST);
  const dw0 = engine.driver.adminPassthru({ opcode: AER }).then((c) => {
    expect(c.status).toBe(0);
    return c.dw0;
  });
  return { dw0 };
}

describe('a namespace that may have lost data fails in every thread', () => {
  it.each(DATA_PATHS)('found by a pool worker: the main thread flushes and writes fail too, SMART warns, the event comes (%s)', async (dataPath) => {
    const thin = thinDevice();
    const engine = await open(thin.dev, dataPath);
    const event = await armLostEvent(engine);
    // The main thread's writes are acknowledged from the page cache; the worker's flush meets their failed write-back.
    for (let i = 0; i < 16; i++) await engine.write(1, i * 64, new Uint8Array(256 * 1024).fill(i + 1));
    const worker = await engine.run<Outcome>(fixture('durability-task.mjs'), { nsid: 1, flushes: 2 });
    expect(worker).toMatchObject({ flushes: ['NVMQ_WRITE_FAULT', 'NVMQ_WRITE_FAULT'], probe: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
    expect(await code(engine.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(engine.flush())).toBe('NVMQ_WRITE_FAULT');
    expect(await code(engine.write(1, 0, new Uint8Array(4096)))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect(await code(engine.writeZeroes(1, 0, 8))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    // Posted by the worker's thread, raised by the admin queue's.
    expect(await event.dw0).toBe(LOST_EVENT_DW0);
    const smart = await engine.driver.smartLog();
    expect(smart.criticalWarning & LOST).toBe(LOST);
    expect(smart.mediaErrors).toBe(4);
    expect(await engine.metrics()).toMatch(/^nvmq_smart_critical_warning 12$/m);
  });

  it.each(DATA_PATHS)('found by the main thread: a pool worker flushes and writes fail too (%s)', async (dataPath) => {
    const thin = thinDevice();
    const engine = await open(thin.dev, dataPath);
    const event = await armLostEvent(engine);
    // This time the worker's writes are the cached ones.
    const writer = await engine.run<Outcome>(fixture('durability-task.mjs'), { nsid: 1, writes: 16, probe: false });
    expect(writer.writes).toEqual(Array(16).fill('ok'));
    expect(await code(engine.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await event.dw0).toBe(LOST_EVENT_DW0);
    const worker = await engine.run<Outcome>(fixture('durability-task.mjs'), { nsid: 1, flushes: 2 });
    expect(worker).toMatchObject({ flushes: ['NVMQ_WRITE_FAULT', 'NVMQ_WRITE_FAULT'], probe: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
    expect((await engine.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
  });

  it.each(DATA_PATHS)('engine.reset() keeps it failed in every thread; reopening the engine starts clean (%s)', async (dataPath) => {
    const thin = thinDevice();
    const engine = await open(thin.dev, dataPath);
    for (let i = 0; i < 16; i++) await engine.write(1, i * 64, new Uint8Array(256 * 1024).fill(i + 1));
    expect(await code(engine.flush())).toBe('NVMQ_WRITE_FAULT');
    await engine.reset();
    // Fresh queues, fresh workers, the same medium: what was acknowledged and lost is still lost.
    expect(await code(engine.flush())).toBe('NVMQ_WRITE_FAULT');
    const worker = await engine.run<Outcome>(fixture('durability-task.mjs'), { nsid: 1, flushes: 1 });
    expect(worker).toMatchObject({ flushes: ['NVMQ_WRITE_FAULT'], probe: 'NVMQ_NAMESPACE_WRITE_PROTECTED' });
    expect((await engine.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
    await engine.close();
    // Room on the medium, and a new open: nothing of its own acknowledged yet, so nothing of its own lost.
    thin.grow('16m');
    const again = await open(thin.dev, dataPath);
    expect((await again.driver.smartLog()).criticalWarning).toBe(0);
    const written = await again.run<Outcome>(fixture('durability-task.mjs'), { nsid: 1, writes: 16, flushes: 1 });
    expect(written).toMatchObject({ writes: Array(16).fill('ok'), flushes: ['ok'], probe: 'ok' });
    await again.flush();
    const back = await again.read(1, 15 * 64, 64);
    expect(back.every((b) => b === 16)).toBe(true);
  });
});
