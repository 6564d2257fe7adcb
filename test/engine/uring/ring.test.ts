/**
 * The io_uring ring (src/engine/uring/ring.ts) and the addon's ring under it:
 * teardown with operations in flight, completion through the eventfd, polled
 * and in-ring waiting through a queue pair, and the addon's bounds checks.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { BackendError } from '../../../src/engine/device/backends/backend.js';
import { IoRing } from '../../../src/engine/uring/ring.js';
import { DmaArena } from '../../../src/engine/dma-arena.js';
import { loadNative } from '../../../src/engine/uring/native.js';
import { NvmqError } from '../../../src/engine/errors.js';
import { bringUp, deferPerTest, stalledDevice, tempDir, DATA_PATHS, type Harness } from '../../helpers/harness.js';

const defer = deferPerTest();

function dir(): string {
  const t = tempDir();
  defer(t.cleanup);
  return t.dir;
}

/** A controller on the io_uring path over `backend`, shut down after the test. */
async function up(backend: FileBackend): Promise<Harness> {
  const h = await bringUp({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath: 'io_uring' } });
  defer(() => h.close().catch(() => {}));
  return h;
}

describe.runIf(DATA_PATHS.includes('io_uring'))('io_uring teardown and bounds', () => {
  function ring(arena: DmaArena): IoRing {
    return new IoRing(loadNative()!, arena, 16);
  }

  it('a ring torn down with reads in flight completes every one of them as aborted, and none later', async () => {
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const device = stalledDevice('io_uring', dir(), 1 << 20);
    defer(() => device.close());
    const fd = (device.options as { handle: { fd: number } }).handle.fd;
    const r = ring(arena);
    const results: Array<BackendError | null> = [];
    for (let i = 0; i < 10; i++) r.read(fd, 0, [arena.bytes.subarray(i * 4096, (i + 1) * 4096)], (err) => results.push(err));
    r.submit();
    expect(r.inflight).toBe(10);
    expect(results).toEqual([]);
    r.close();
    expect(results).toHaveLength(10);
    for (const e of results) expect(e).toMatchObject({ kind: 'aborted', errno: 'ECANCELED' });
    // Operations after the teardown are refused the same way, never submitted.
    let late: BackendError | null | undefined;
    r.read(fd, 0, [arena.bytes.subarray(0, 4096)], (err) => (late = err));
    expect(late).toMatchObject({ kind: 'aborted' });
    await new Promise((res) => setTimeout(res, 20));
    expect(results).toHaveLength(10);
  });

  it('operations on a descriptor named by submitEach() go to the kernel one by one as a batch is staged; others wait for submit()', () => {
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const device = stalledDevice('io_uring', dir(), 1 << 20);
    defer(() => device.close());
    const fd = (device.options as { handle: { fd: number } }).handle.fd;
    const other = fs.openSync(path.join(dir(), 'other'), 'w+');
    defer(() => fs.closeSync(other));
    const r = ring(arena);
    defer(() => r.close());
    r.submitEach([fd]);
    const results: Array<BackendError | null> = [];
    // Each one goes as the next is staged; the last waits for submit(), as a lone one does.
    r.read(fd, 0, [arena.bytes.subarray(0, 4096)], (err) => results.push(err));
    expect(r.inflight).toBe(0);
    r.read(fd, 4096, [arena.bytes.subarray(4096, 8192)], (err) => results.push(err));
    expect(r.inflight).toBe(1);
    r.read(fd, 8192, [arena.bytes.subarray(8192, 12288)], (err) => results.push(err));
    expect(r.inflight).toBe(2);
    // A descriptor not named: staged behind the rest until submit(), one io_uring_enter for both.
    r.fdatasync(other, (err) => results.push(err));
    expect(r.inflight).toBe(2);
    r.submit();
    expect(r.inflight + results.length).toBe(4);
  });

  it('submitEach(): reads of several scattered pages each land in their own pages', async () => {
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const file = path.join(dir(), 'data');
    const content = Buffer.alloc(8 * 8192);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE(i, i);
    fs.writeFileSync(file, content);
    const fd = fs.openSync(file, 'r');
    defer(() => fs.closeSync(fd));
    const r = ring(arena);
    defer(() => r.close());
    r.submitEach([fd]);
    // Each read: two pages that are not adjacent in the arena (a vectored operation with its own segments).
    const page = (n: number): Uint8Array => arena.bytes.subarray(n * 4096, (n + 1) * 4096);
    const done: Array<Promise<BackendError | null>> = [];
    for (let op = 0; op < 4; op++) done.push(new Promise((res) => r.read(fd, op * 8192, [page(op * 4), page(op * 4 + 2)], res)));
    r.submit();
    while (r.inflight > 0) r.wait(100);
    expect(await Promise.all(done)).toEqual([null, null, null, null]);
    for (let op = 0; op < 4; op++) {
      expect(Buffer.from(page(op * 4)).equals(content.subarray(op * 8192, op * 8192 + 4096)), `op ${op} first page`).toBe(true);
      expect(Buffer.from(page(op * 4 + 2)).equals(content.subarray(op * 8192 + 4096, op * 8192 + 8192)), `op ${op} second page`).toBe(true);
    }
  });

  it('a stalled read completes through the eventfd on this thread once the device answers', async () => {
    const arena = new DmaArena({ sizeBytes: 1 << 20 });
    const device = stalledDevice('io_uring', dir(), 1 << 20);
    defer(() => device.close());
    const fd = (device.options as { handle: { fd: number } }).handle.fd;
    let events = 0;
    const r = new IoRing(loadNative()!, arena, 8, () => events++);
    defer(() => r.close());
    const done = new Promise<BackendError | null>((res) => r.read(fd, 0, [arena.bytes.subarray(0, 4096)], res));
    r.submit();
    expect(r.poll()).toBe(0);
    await device.feed(4096);
    expect(await done).toBeNull();
    expect(events).toBeGreaterThan(0);
    expect(r.inflight).toBe(0);
    expect(arena.bytes.subarray(0, 4096).every((b) => b === 0)).toBe(true);
  });

  it('q.poll() completes what the ring has finished without waiting for the eventfd (polled mode)', async () => {
    const device = stalledDevice('io_uring', dir(), 1 << 20);
    defer(() => device.close());
    const h = await up(new FileBackend(device.options));
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    let settled = false;
    const read = q.read(1, 0, 1, new Uint8Array(4096)).then(() => (settled = true));
    expect(q.poll()).toBe(0);
    // The device answers; this thread then blocks (no event loop turn, so no eventfd callback) long enough for
    // the kernel to finish the read, and polls.
    fs.writeSync((device.options as { handle: { fd: number } }).handle.fd, new Uint8Array(4096).fill(7));
    const polledBefore = q.stats.polled;
    let got = 0;
    for (let i = 0; i < 50 && got === 0; i++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
      got = q.poll();
    }
    expect(got).toBe(1);
    expect(q.stats.polled).toBe(polledBefore + 1);
    await read;
    expect(settled).toBe(true);
  });

  // spinUs 0 sleeps in io_uring_enter; 1 s of hybrid polling keeps the core busy until the answer comes.
  it.each([0, 1_000_000])('q.wait(timeout, spinUs = %d) blocks the thread in the ring until the device answers, then reaps: the callback runs inside it', async (spinUs) => {
    const device = stalledDevice('io_uring', dir(), 1 << 20);
    defer(() => device.close());
    const h = await up(new FileBackend(device.options));
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    const fifo = (device.options as { handle: { path: string } }).handle.path;
    const seen: Array<Error | null> = [];
    q.readCallback(1, 0, 1, new Uint8Array(4096), (err) => seen.push(err));
    // Nothing arrives: the wait times out (a spin budget longer than the timeout ends with it).
    let t = performance.now();
    expect(q.wait(30, spinUs)).toBe(0);
    const waited = performance.now() - t;
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(900);
    expect(seen).toEqual([]);
    // Another process answers in 200 ms; this thread stays in wait() meanwhile (no event loop turn),
    // asleep (next to no CPU time) or polling (CPU time near the wall time).
    const writer = spawn('sh', ['-c', `sleep 0.2; head -c 4096 /dev/zero > '${fifo}'`], { stdio: 'ignore' });
    const exited = new Promise((res) => writer.once('exit', res));
    const cpu = process.cpuUsage();
    t = performance.now();
    expect(q.wait(10_000, spinUs)).toBe(1);
    const wall = performance.now() - t;
    const used = process.cpuUsage(cpu);
    expect(wall).toBeGreaterThanOrEqual(150);
    const cpuMs = (used.user + used.system) / 1000;
    if (spinUs > 0) {
      // The spin caught the answer: it ended well before its 1 s budget (a spin that missed it would poll
      // the whole second and then find it at once). It yields between rounds of polls, so on a busy
      // machine its share of the core falls far below the whole (8% was seen with six busy processes on
      // two CPUs); a thread asleep in the ring uses well under 1%.
      expect(wall).toBeLessThan(900);
      expect(cpuMs).toBeGreaterThan(wall * 0.04);
    } else {
      expect(cpuMs).toBeLessThan(wall * 0.1);
    }
    expect(seen).toEqual([null]);
    expect(q.outstanding).toBe(0);
    await exited;
  });

  it('q.wait() refuses a bad timeout or spin budget, naming the value, and leaves the command in flight', async () => {
    const h = await up(new FileBackend({ path: path.join(dir(), 'w.img'), size: 1 << 20 }));
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    const invalid = (message: string): unknown => expect.objectContaining({ name: 'NvmqError', code: 'NVMQ_INVALID_ARGUMENT', message });
    for (const ms of [-1, Number.NaN, Number.NEGATIVE_INFINITY]) expect(() => q.wait(ms)).toThrow(invalid(`wait: timeoutMs must be a number of milliseconds >= 0, got ${ms}`));
    for (const us of [-1, 1.5, 1_000_001, Number.NaN]) expect(() => q.wait(10, us)).toThrow(invalid(`wait: spinUs must be an integer from 0 to 1000000, got ${us}`));
    const done = q.read(1, 0, 1, new Uint8Array(4096));
    expect(() => q.wait(10, -5)).toThrow(NvmqError);
    await expect(done).resolves.toMatchObject({ status: 0 });
    // The addon checks too.
    const n = loadNative()!;
    const raw = new n.Ring(new Uint8Array(new SharedArrayBuffer(4096)), 2, new Float64Array(16), new Float64Array(4), new Int32Array(8));
    try {
      expect(() => raw.wait(1000, 2_000_000)).toThrow('nvmq_native: spinUs must be an integer from 0 to 1000000');
      expect(() => raw.wait(1000, 0.5)).toThrow(RangeError);
      expect(raw.wait(1000, 100)).toBe(0);
    } finally {
      raw.close();
    }
  });

  it('the addon checks every address against the arena: outside it an operation completes with EFAULT, unsubmitted', () => {
    const n = loadNative()!;
    const arena = new Uint8Array(new SharedArrayBuffer(8192));
    const ops = new Float64Array(8 * 8);
    const segs = new Float64Array(2 * 8);
    const cqes = new Int32Array(2 * 16);
    const raw = new n.Ring(arena, 8, ops, segs, cqes);
    try {
      const fd = fs.openSync(path.join(dir(), 'b.img'), 'w+');
      defer(() => fs.closeSync(fd));
      // read into [4096, 8192 + 1): one byte too far; readv with a segment past the end; an unknown opcode.
      ops.set([1, fd, 11, 0, 4096, 4097, 0, 0], 0);
      segs.set([0, 4096, 8000, 200], 0);
      ops.set([3, fd, 12, 0, 0, 2, 0, 0], 8);
      ops.set([99, fd, 13, 0, 0, 1, 0, 0], 16);
      ops.set([1, fd, 14, 0, 0, 4096, 0, 0], 24);
      const k = raw.submit(4);
      const got = new Map<number, number>();
      for (let i = 0; i < k; i++) got.set(cqes[i * 2]!, cqes[i * 2 + 1]!);
      for (let more = raw.reap(); more > 0; more = raw.reap()) for (let i = 0; i < more; i++) got.set(cqes[i * 2]!, cqes[i * 2 + 1]!);
      expect(got.get(11)).toBe(-14);
      expect(got.get(12)).toBe(-14);
      expect(got.get(13)).toBe(-22);
      // The valid one reached the kernel: an empty file reads 0 bytes.
      expect(got.get(14)).toBe(0);
      expect(raw.inflight()).toBe(0);
    } finally {
      raw.close();
    }
  });
});
