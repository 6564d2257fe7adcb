/**
 * An engine whose controller enters fatal status (CSTS.CFS) with I/O
 * outstanding: the command past its deadline resets the engine (fresh
 * workers and pairs) and I/O goes on. A fault the reset does not clear is
 * the engine's 'failed' event, once, and every call then fails with
 * NVMQ_CONTROLLER_FATAL.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type NvmqError } from '../../dist/index.js';
import { Cc, Regs } from '../../dist/engine/spec/registers.js';
import { bitsOf } from '../../dist/engine/spec/layout.js';
import { deferPerTest, waitFor } from '../helpers/harness.js';

const defer = deferPerTest();
const verifyTask = new URL('../fixtures/verify-task.mjs', import.meta.url).href;

async function open(): Promise<{ engine: Engine; failed: NvmqError[] }> {
  const engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 16 << 20 }], workers: 1, ioTimeoutMs: 300, metrics: false });
  defer(() => engine.close());
  const failed: NvmqError[] = [];
  engine.on('failed', (e) => failed.push(e));
  return { engine, failed };
}

const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: NvmqError) => e.code,
  );

describe('a controller in fatal status under an engine', () => {
  it('is reset by the first command past its deadline; workers and the main thread do I/O again', async () => {
    const { engine, failed } = await open();
    const block = new Uint8Array(4096).fill(7);
    await engine.write(1, 0, block);
    engine.controller!.fail('injected');
    expect(['NVMQ_TIMEOUT', 'NVMQ_CONTROLLER_RESET']).toContain(await code(engine.write(1, 1, block)));
    // The engine's reset brings fresh workers and pairs; I/O from both kinds of thread works.
    await waitFor(() => engine.controller!.state === 'ready', 'the reset', 5000);
    expect(Buffer.from(await engine.read(1, 0, 1)).equals(Buffer.from(block))).toBe(true);
    const r = await engine.run<{ bad: number[] }>(verifyTask, { nsid: 1, first: 100, count: 32, passes: 1, depth: 4, seed: 3, lbaSize: 4096 });
    expect(r.bad).toEqual([]);
    expect(failed).toEqual([]);
  });

  it('that the reset does not clear is reported once as failed, and every call says so', async () => {
    const { engine, failed } = await open();
    await engine.write(1, 0, new Uint8Array(4096));
    // The fault persists: each enable makes the controller fatal again.
    const t = engine.driver.transport;
    const write32 = t.write32.bind(t);
    t.write32 = (offset, value) => {
      write32(offset, value);
      if (offset === Regs.CC.offset && bitsOf(value, Cc.EN) === 1) engine.controller!.fail('injected again at enable');
    };
    engine.controller!.fail('injected');
    expect(['NVMQ_TIMEOUT', 'NVMQ_CONTROLLER_RESET']).toContain(await code(engine.write(1, 1, new Uint8Array(4096))));
    await waitFor(() => failed.length === 1, "the 'failed' event", 5000);
    expect(failed[0]!.code).toBe('NVMQ_CONTROLLER_FATAL');
    expect(failed[0]!.message).toMatch(/a controller reset did not clear it/);
    await expect(engine.read(1, 0, 1)).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_FATAL' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(failed).toHaveLength(1);
  });
});
