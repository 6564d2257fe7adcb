/**
 * The engine's command timeouts, on the main thread and in a pool worker,
 * against a namespace whose writes really stall (a file on a frozen ext4
 * file system: see test/helpers/frozen.ts).
 */
import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Engine, type NvmqError } from '../../dist/index.js';
import { recordAborts, scratch, waitFor, DATA_PATHS } from '../helpers/harness.js';
import { freezableFs, type FrozenFs } from '../helpers/frozen.js';

const { cleanups, dir } = scratch();
const fixture = (name: string): string => new URL(`../fixtures/${name}`, import.meta.url).href;

async function open(dataPath: (typeof DATA_PATHS)[number], ioTimeoutMs: number): Promise<{ engine: Engine; fs: FrozenFs }> {
  const fs = freezableFs(dir(), cleanups);
  const engine = await Engine.open({
    namespaces: [{ backend: 'file', path: path.join(fs.dir, 'ns.img'), size: 4 << 20 }],
    workers: 1,
    ioTimeoutMs,
    controller: { dataPath },
    metrics: false,
  });
  cleanups.push(() => engine.close());
  return { engine, fs };
}

/**
 * Records the resets a timeout asks for (each still runs). The reset drains what the device holds: the file
 * system comes back once it has begun.
 */
function recordTimeoutResets(engine: Engine, fs: FrozenFs): Array<Promise<void>> {
  const resets: Array<Promise<void>> = [];
  const reset = engine.driver.resetForTimeout;
  engine.driver.resetForTimeout = () => {
    fs.thawAfter(1000);
    resets.push(reset());
    return resets[0]!;
  };
  return resets;
}

const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: NvmqError) => `${e.code}: ${e.message}`,
  );

describe('engine command timeouts', () => {
  it.each(DATA_PATHS)('main thread: a stalled write is aborted and ends with NVMQ_TIMEOUT; the engine serves on (%s)', async (dataPath) => {
    const { engine, fs } = await open(dataPath, 800);
    await engine.write(1, 0, new Uint8Array(4096).fill(1));
    const aborts = recordAborts(engine.driver);
    fs.freeze();
    const write = outcome(engine.write(1, 0, new Uint8Array(4096).fill(2)));
    await waitFor(() => aborts.length === 1, 'the Abort', 10_000);
    expect(await aborts[0]).toBe(true);
    fs.thaw();
    expect(await write).toMatch(/^NVMQ_TIMEOUT: qid \d+ cid \d+: opcode 01h did not complete within its 800 ms timeout/);
    await engine.write(1, 1, new Uint8Array(4096).fill(3));
    expect((await engine.read(1, 1, 1))[0]).toBe(3);
    expect(await engine.run(fixture('timeout-write-task.mjs'), { nsid: 1, slba: 2 })).toBe('ok');
  });

  it.each(DATA_PATHS)('pool worker: a stalled write the Abort cannot reach resets the engine; it ends once with NVMQ_TIMEOUT (%s)', async (dataPath) => {
    const { engine, fs } = await open(dataPath, 500);
    expect(await engine.run(fixture('timeout-write-task.mjs'), { nsid: 1, slba: 0 })).toBe('ok');
    const resets = recordTimeoutResets(engine, fs);
    fs.freeze();
    const result = await engine.run(fixture('timeout-write-task.mjs'), { nsid: 1, slba: 3 });
    expect(result).toMatch(/^NVMQ_TIMEOUT: qid \d+ cid \d+: opcode 01h did not complete within its 500 ms timeout/);
    expect(resets.length).toBe(1);
    // The task ended as soon as its pair failed; the reset goes on (old workers out, new ones in).
    await resets[0];
    // Fresh workers and queues: the engine serves again, in a worker and on the main thread.
    expect(await engine.run(fixture('timeout-write-task.mjs'), { nsid: 1, slba: 4 })).toBe('ok');
    await engine.write(1, 5, new Uint8Array(4096).fill(5));
    expect((await engine.read(1, 4, 1))[0]).toBe(7);
  });

  it.each(DATA_PATHS)('attached thread: its stalled write resets the engine and ends once with NVMQ_TIMEOUT; it attaches again (%s)', async (dataPath) => {
    const { engine, fs } = await open(dataPath, 500);
    const resets = recordTimeoutResets(engine, fs);
    const handle = engine.attachHandle();
    const w = new Worker(new URL(fixture('attached-timeout-worker.mjs')), { workerData: { handle }, transferList: [handle.port] });
    cleanups.push(() => w.terminate());
    const messages: Array<Record<string, unknown>> = [];
    const message = (): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        w.once('message', (m: Record<string, unknown>) => (messages.push(m), resolve(m)));
        w.once('error', reject);
      });
    expect(await message()).toMatchObject({ ready: true });
    fs.freeze();
    w.postMessage('go');
    const { stalled } = await message();
    expect(stalled).toMatch(/^NVMQ_TIMEOUT: qid \d+ cid \d+: opcode 01h did not complete within its 500 ms timeout/);
    // No Abort reaches a command another thread executes: the engine reset, once.
    expect(resets.length).toBe(1);
    await resets[0];
    w.postMessage('again');
    expect(await message()).toEqual({ write: 'ok', read: 'ok', byte: 3 });
    // And the engine serves on the main thread.
    expect((await engine.read(1, 0, 1))[0]).toBe(1);
  });

  it('refuses a bad timeout with a one-line NVMQ_INVALID_ARGUMENT', async () => {
    for (const [name, v] of [['ioTimeoutMs', -5], ['adminTimeoutMs', 'soon']] as const) {
      await expect(Engine.open({ namespaces: [{ backend: 'memory', size: 1 << 20 }], workers: 1, [name]: v as unknown as number })).rejects.toMatchObject({
        code: 'NVMQ_INVALID_ARGUMENT',
        message: expect.stringMatching(new RegExp(`^${name} must be a number of milliseconds > 0, or 0 or Infinity for none, got [^\\n]+$`)) as unknown,
      });
    }
  });
});
