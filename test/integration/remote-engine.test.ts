/**
 * An Engine on a remote controller: `Engine.open({ target })` against nvmq's
 * own NVMe/TCP target (another Engine in this process, over loopback). The
 * main thread, each pool worker and each attached application thread gets
 * an I/O queue that is a TCP connection of its own, opened in that thread;
 * the bytes land in the target's namespace; a thread that ends takes its
 * connection with it; `nvmq bench --verify crc32c` runs against it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Engine } from '../../dist/index.js';
import { deferPerTest, waitFor } from '../helpers/harness.js';

const defer = deferPerTest();
const SUBNQN = 'nqn.2026-12.io.nvmq:remote-test';
const verifyTask = new URL('../fixtures/verify-task.mjs', import.meta.url).href;
const attachedWorker = new URL('../fixtures/attached-worker.mjs', import.meta.url);
const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

let local: Engine;
let port: number;
let connections: () => number;
beforeAll(async () => {
  local = await Engine.open({ namespaces: [{ backend: 'memory', size: 64 << 20 }], workers: 1, metrics: false });
  const target = await local.listen({ port: 0, subnqn: SUBNQN, allowAnyHost: true, maxIoQueues: 16 });
  port = target.address.port;
  connections = () => target.connectionCount;
});
afterAll(async () => {
  await local?.close();
});

/** verify-task.mjs: two passes of writes then reads over `count` blocks, 4 at a time. */
const verifyArgs = (first: number, count: number) => ({ nsid: 1, first, count, passes: 2, depth: 4, seed: 7, lbaSize: 4096 });

const target = { transport: 'tcp' as const, host: '127.0.0.1', port: 0, subnqn: SUBNQN };
async function openRemote(workers: number): Promise<Engine> {
  const e = await Engine.open({ target: { ...target, port }, workers, metrics: false });
  defer(() => e.close());
  return e;
}

describe('Engine.open({ target }): an engine on a remote controller', () => {
  it('gives the main thread and each worker a connection of its own; the bytes reach the target', async () => {
    const before = connections();
    const e = await openRemote(2);
    // The admin queue and one I/O queue per worker.
    expect(connections() - before).toBe(3);
    expect(e.controller).toBeUndefined();
    expect(e.namespace(1).lbaSize).toBe(4096);
    const block = new Uint8Array(4096).fill(0x3c);
    await e.write(1, 77, block);
    expect(connections() - before).toBe(4); // the main thread's queue, made on first use
    expect(Buffer.from(await local.read(1, 77, 1)).equals(Buffer.from(block))).toBe(true);
    // Verified I/O from both workers, on their own queues.
    const results = await Promise.all([0, 1, 2, 3].map((k) => e.run<{ qid: number; bad: number[]; ios: number }>(verifyTask, verifyArgs(1000 + k * 64, 64))));
    expect(results.map((r) => r.bad)).toEqual([[], [], [], []]);
    expect(results.map((r) => r.ios)).toEqual([256, 256, 256, 256]);
    expect(new Set(results.map((r) => r.qid)).size).toBe(2);
    await e.close();
    await waitFor(() => connections() === before, "the remote engine's connections to close");
  });

  it('an attached application thread connects its own queue, and its connection goes when the thread does', async () => {
    const e = await openRemote(1);
    const before = connections();
    const handle = e.attachHandle();
    const w = new Worker(attachedWorker, { workerData: { handle, first: 3000, count: 32 }, transferList: [handle.port] });
    const report = await new Promise<{ qid: number; bad: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(report.bad).toBe(0);
    await new Promise((r) => w.once('exit', r));
    await waitFor(() => connections() === before, 'the attached thread\'s connection to close');
    // Its queue is free again for the next thread.
    await waitFor(() => e.driver.ioQueuePairs.length === 1, 'the attached queue to be deleted');
  });

  it('refuses what a remote engine cannot do, in one line', async () => {
    await expect(Engine.open({ target: { ...target, port }, namespaces: [{ backend: 'memory', size: 1 << 20 }] } as never)).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('namespaces / target') });
    await expect(Engine.open({ target: { ...target, port }, controller: { mdts: 5 } })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('controller') });
    // Fewer queues than workers would mean sharing one connection between threads.
    await expect(Engine.open({ target: { ...target, port }, workers: 2, queues: 1 })).rejects.toMatchObject({ code: 'NVMQ_NO_QUEUE' });
    const e = await openRemote(1);
    await expect(e.listen({ port: 0, allowAnyHost: true })).rejects.toMatchObject({ code: 'NVMQ_UNSUPPORTED' });
  });

  it('nvmq bench --verify crc32c runs against the target by its nvme-tcp:// address', async () => {
    // Not execFileSync: the target answers from this process's event loop.
    const { stdout: out } = await promisify(execFile)('node', [cli, 'bench', '--filename', `nvme-tcp://127.0.0.1:${port}/${SUBNQN}`, '--rw', 'randrw', '--bs', '4k', '--iodepth', '8', '--numjobs', '2', '--size', '8m', '--runtime', '1s', '--time_based', '--verify', 'crc32c'], { encoding: 'utf8', timeout: 60_000 });
    expect(out).toMatch(/data path: NVMe\/TCP to 127\.0\.0\.1:\d+ \(nqn\.2026-12\.io\.nvmq:remote-test\)/);
    expect(out).toMatch(/verify: \d+ blocks checked .*no mismatch/);
    expect(out).toMatch(/#0 qid \d+: read/);
    expect(out).toMatch(/#1 qid \d+: read/);
  });
});

describe('a thread that dies with its connection', () => {
  it('a pool worker replaced after dying gets a new connection; the old one closed', async () => {
    const e = await openRemote(1);
    const dieTask = new URL('../fixtures/die-task.mjs', import.meta.url).href;
    const before = connections();
    await expect(e.run(dieTask, { nsid: 1 })).rejects.toBeDefined();
    // The replacement worker attaches with a queue of its own, on a new connection.
    const r = await e.run<{ qid: number; bad: number[]; ios: number }>(verifyTask, verifyArgs(5000, 16));
    expect(r.bad).toEqual([]);
    expect(r.ios).toBe(64);
    await waitFor(() => connections() === before, 'one connection per live worker and the admin queue');
  });
});

