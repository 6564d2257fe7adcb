/**
 * An engine on a remote NVMe/TCP controller when the association breaks: the
 * target goes away mid-run and comes back (in this process, and as an
 * `nvmq serve` process killed with SIGKILL and started again), the target
 * stays away past ctrlLossTmoMs, I/O past fastIoFailTmoMs, a target that
 * stops answering (Keep Alive). Commands in flight end once, with Host
 * Pathing Error; later I/O waits for the reconnect; every acknowledged
 * write is on the target afterwards; the engine says what happened (events,
 * metrics).
 */
import { describe, it, expect } from 'vitest';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Engine } from '../../dist/index.js';
import { deferPerTest, tempDirsPerTest, waitFor } from '../helpers/harness.js';

const defer = deferPerTest();
const tempDir = tempDirsPerTest();
const SUBNQN = 'nqn.2026-12.io.nvmq:reconnect-test';
const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const verifyTask = new URL('../fixtures/verify-task.mjs', import.meta.url).href;
const readUntilError = new URL('../fixtures/read-until-error-task.mjs', import.meta.url).href;
const attachedWorker = new URL('../fixtures/attached-worker.mjs', import.meta.url);
const BLOCK = 4096;

async function localTarget(port = 0): Promise<{ engine: Engine; port: number; close(): Promise<void>; reopen(): Promise<void> }> {
  const engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 32 << 20 }], workers: 1, metrics: false });
  defer(() => engine.close());
  let target = await engine.listen({ port, subnqn: SUBNQN, allowAnyHost: true });
  const bound = target.address.port;
  return {
    engine,
    port: bound,
    close: () => target.close(),
    reopen: async () => {
      target = await engine.listen({ port: bound, subnqn: SUBNQN, allowAnyHost: true });
    },
  };
}

type Opts = { reconnectDelayMs?: number; ctrlLossTmoMs?: number; fastIoFailTmoMs?: number; keepAliveMs?: number };
async function remoteEngine(port: number, o: Opts, workers = 1): Promise<{ engine: Engine; events: string[] }> {
  const engine = await Engine.open({ target: { transport: 'tcp', host: '127.0.0.1', port, subnqn: SUBNQN, ...o }, workers });
  defer(() => engine.close());
  const events: string[] = [];
  engine.on('disconnected', (e) => events.push(`disconnected ${e.code}`));
  engine.on('reconnected', (r) => events.push(`reconnected after ${r.attempts}`));
  engine.on('lost', (e) => events.push(`lost ${e.code}`));
  // A remote controller's loss is the link's to report, never a controller out of service.
  engine.on('failed', (e) => events.push(`failed ${e.code}`));
  return { engine, events };
}

/** Writers on the main thread, each over its own blocks, until stopped: what was acknowledged, and every error by code. */
function writers(e: Engine, n: number) {
  const acked = new Map<number, number>();
  const errors: Record<string, number> = {};
  let stop = false;
  const done = Promise.all(
    Array.from({ length: n }, async (_, w) => {
      for (let k = 0; !stop; k++) {
        const lba = w * 512 + (k % 512);
        const value = (k * 7 + w + 1) & 0xff;
        try {
          await e.write(1, lba, new Uint8Array(BLOCK).fill(value));
          acked.set(lba, value);
        } catch (err) {
          const code = (err as { code?: string }).code ?? String(err);
          errors[code] = (errors[code] ?? 0) + 1;
          // A failed write is not retried: the block holds either value, and the map no longer vouches for it.
          acked.delete(lba);
          await new Promise((r) => setImmediate(r));
        }
      }
    }),
  );
  return {
    acked,
    errors,
    stop: () => {
      stop = true;
      return done;
    },
  };
}

const metric = (text: string, name: string): number => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);

describe('reconnecting to an NVMe/TCP target', () => {
  it('the target goes and comes back: in-flight writes fail once with Host Pathing Error, later I/O waits, every acknowledged write is there', async () => {
    const t = await localTarget();
    const { engine, events } = await remoteEngine(t.port, { reconnectDelayMs: 100, ctrlLossTmoMs: 20_000 }, 2);
    const w = writers(engine, 8);
    await waitFor(() => w.acked.size > 200, 'writes before the break');
    await t.close();
    await waitFor(() => events.length > 0, 'the break to be seen');
    await new Promise((r) => setTimeout(r, 300));
    await t.reopen();
    await waitFor(() => events.includes('reconnected after 1') || events.some((e) => e.startsWith('reconnected')), 'the reconnect', 15_000);
    const before = w.acked.size;
    await waitFor(() => w.acked.size > before + 200 || w.acked.size === 8 * 512, 'writes after the reconnect', 10_000);
    await w.stop();
    expect(events[0]).toBe('disconnected NVMQ_TARGET_DISCONNECTED');
    expect(events[1]).toMatch(/^reconnected after \d+$/);
    expect(events).toHaveLength(2);
    // At most one error per writer: the write in flight at the break.
    expect(Object.keys(w.errors)).toEqual(['NVMQ_HOST_PATHING_ERROR']);
    expect(w.errors.NVMQ_HOST_PATHING_ERROR).toBeLessThanOrEqual(8);
    for (const [lba, value] of w.acked) expect((await t.engine.read(1, lba, 1))[0], `block ${lba}`).toBe(value);
    // Workers came back with new connections too.
    const r = await engine.run<{ bad: number[]; ios: number }>(verifyTask, { nsid: 1, first: 6000, count: 32, passes: 1, depth: 4, seed: 3, lbaSize: BLOCK });
    expect(r).toMatchObject({ bad: [], ios: 64 });
    const m = await engine.metrics();
    expect(metric(m, 'nvmq_tcp_host_connected')).toBe(1);
    expect(metric(m, 'nvmq_tcp_host_disconnects_total')).toBe(1);
    expect(metric(m, 'nvmq_tcp_host_reconnects_total')).toBe(1);
  }, 60_000);

  it('an nvmq serve target killed (SIGKILL) and started again on its file: I/O resumes, every acknowledged write is in the file', async () => {
    const dir = tempDir();
    const img = path.join(dir, 'ns.img');
    const port = await freePort();
    const serve = (): Promise<ChildProcess> => startServe(['serve', '--filename', img, '--size', '16m', '--listen', `127.0.0.1:${port}`, '--nqn', SUBNQN, '--allow-any-host', '--metrics-port', '0']);
    let child = await serve();
    defer(() => child.kill('SIGKILL'));
    const { engine, events } = await remoteEngine(port, { reconnectDelayMs: 200, ctrlLossTmoMs: 30_000 });
    const w = writers(engine, 4);
    await waitFor(() => w.acked.size > 100, 'writes before the kill', 10_000);
    child.kill('SIGKILL');
    await waitFor(() => events.length > 0, 'the break to be seen', 10_000);
    child = await serve();
    await waitFor(() => events.some((e) => e.startsWith('reconnected')), 'the reconnect', 20_000);
    const before = w.acked.size;
    await waitFor(() => w.acked.size > before + 100 || w.acked.size === 4 * 512, 'writes after the reconnect', 10_000);
    await w.stop();
    await engine.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const file = readFileSync(img);
    for (const [lba, value] of w.acked) expect(file[lba * BLOCK], `block ${lba}`).toBe(value);
    expect(Object.keys(w.errors).filter((c) => c !== 'NVMQ_HOST_PATHING_ERROR')).toEqual([]);
  }, 60_000);

  it('gives up after ctrlLossTmoMs: a lost event, and every call fails with NVMQ_TARGET_LOST in one line', async () => {
    const t = await localTarget();
    const { engine, events } = await remoteEngine(t.port, { reconnectDelayMs: 100, ctrlLossTmoMs: 500 });
    await engine.write(1, 0, new Uint8Array(BLOCK));
    await t.close();
    await waitFor(() => events.some((e) => e.startsWith('lost')), 'giving up', 10_000);
    expect(events).toEqual(['disconnected NVMQ_TARGET_DISCONNECTED', 'lost NVMQ_TARGET_LOST']);
    const err = await engine.read(1, 0, 1).catch((e: Error) => e);
    expect(err).toMatchObject({ code: 'NVMQ_TARGET_LOST' });
    expect((err as Error).message).toMatch(/^gave up reconnecting to the NVMe\/TCP target at 127\.0\.0\.1:\d+ after \d+ attempt\(s\) in [\d.]+ s \(ctrlLossTmoMs 500\): /);
    expect((err as Error).message.split('\n')).toHaveLength(1);
    await expect(engine.run(verifyTask, {})).rejects.toMatchObject({ code: 'NVMQ_TARGET_LOST' });
    const closing = Date.now();
    await engine.close();
    expect(Date.now() - closing).toBeLessThan(5000);
  }, 30_000);

  it('past fastIoFailTmoMs, I/O fails with a path error instead of waiting for the reconnect', async () => {
    const t = await localTarget();
    const { engine } = await remoteEngine(t.port, { reconnectDelayMs: 5000, ctrlLossTmoMs: 60_000, fastIoFailTmoMs: 200 });
    await engine.write(1, 0, new Uint8Array(BLOCK));
    await t.close();
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await expect(engine.read(1, 0, 1)).rejects.toMatchObject({ code: 'NVMQ_HOST_PATHING_ERROR', message: expect.stringContaining('fastIoFailTmoMs') });
    expect(Date.now() - started).toBeLessThan(2000);
  }, 30_000);

  it('a target that stops answering is found by Keep Alive: a worker\'s reads in flight end with a path error at once, and the engine reconnects once it answers again', async () => {
    const t = await localTarget();
    const proxy = await freezingProxy(t.port);
    defer(() => proxy.close());
    // A long reconnect delay: the worker's reads must not wait for the reconnect's reset to end.
    const { engine, events } = await remoteEngine(proxy.port, { keepAliveMs: 400, reconnectDelayMs: 3000, ctrlLossTmoMs: 20_000 });
    await engine.write(1, 1, new Uint8Array(BLOCK).fill(1));
    const reading = engine.run<{ code?: string; at?: number; reads: number }>(readUntilError, { ms: 15_000 });
    await new Promise((r) => setTimeout(r, 200));
    proxy.freeze();
    await waitFor(() => events.length > 0, 'Keep Alive to find the silence', 5000);
    const seen = Date.now();
    const r = await reading;
    expect(r.reads).toBeGreaterThan(0);
    expect(r.code).toBe('NVMQ_HOST_PATHING_ERROR');
    expect(r.at! - seen).toBeLessThan(1000);
    proxy.thaw();
    await waitFor(() => events.some((e) => e.startsWith('reconnected')), 'the reconnect', 15_000);
    expect(events).toEqual(['disconnected NVMQ_TARGET_DISCONNECTED', 'reconnected after 1']);
    await engine.write(1, 2, new Uint8Array(BLOCK).fill(2));
    expect((await t.engine.read(1, 2, 1))[0]).toBe(2);
  }, 40_000);

  it('a reset of a remote engine is no disconnection: no event, a new association, workers and attach handles made before it still work', async () => {
    const t = await localTarget();
    const { engine, events } = await remoteEngine(t.port, { reconnectDelayMs: 100 }, 2);
    const handle = engine.attachHandle();
    await engine.write(1, 5, new Uint8Array(BLOCK).fill(5));
    const before = (engine.remote as unknown as { cntlid: number }).cntlid;
    await engine.reset();
    await new Promise((r) => setTimeout(r, 500));
    expect(events).toEqual([]);
    expect((engine.remote as unknown as { cntlid: number }).cntlid).not.toBe(before);
    expect((await engine.read(1, 5, 1))[0]).toBe(5);
    const runs = await Promise.all([0, 1].map((k) => engine.run<{ bad: number[]; ios: number }>(verifyTask, { nsid: 1, first: 7000 + k * 32, count: 32, passes: 1, depth: 4, seed: 9, lbaSize: BLOCK })));
    expect(runs).toMatchObject([{ bad: [], ios: 64 }, { bad: [], ios: 64 }]);
    // A handle made before the reset connects to the association of its grant.
    const w = new Worker(attachedWorker, { workerData: { handle, first: 8000, count: 16 }, transferList: [handle.port] });
    defer(() => w.terminate());
    const report = await new Promise<{ bad: number; refused?: string }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(report).toMatchObject({ bad: 0 });
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual([]);
  }, 30_000);
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `nvmq serve ...` in a child process, once it says it is ready. */
async function startServe(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nvmq serve did not start: ${out}`)), 20_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      if (out.includes('ready;')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`nvmq serve exited with ${code}: ${out}`)));
  });
  return child;
}

/**
 * A TCP proxy to the target that can stop forwarding (both ways) without
 * closing anything: to the host the target is there but silent.
 */
async function freezingProxy(targetPort: number): Promise<{ port: number; freeze(): void; thaw(): void; close(): Promise<void> }> {
  let frozen = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (frozen) return void client.destroy();
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (c: Buffer) => {
        if (!frozen) to.write(c);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    // Frozen, nothing passes, closes neither: to each side the other is silent, not gone.
    const end = (): void => {
      if (frozen) return;
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      frozen = true;
    },
    // Connections that went silent stay broken (bytes were dropped); new ones work.
    thaw: () => {
      frozen = false;
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => r());
      }),
  };
}
