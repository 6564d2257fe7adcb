// The durability contract (README, "Durability and I/O errors") on real media that fail: a loop device over a sparse
// file on a 1 MiB tmpfs takes writes into its page cache, then fails their write-back with EIO, which the
// kernel reports to one sync only (the fsync-error trap). Both data paths; root, as CI has.
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import type { DataPath } from '../../../src/engine/uring/data-path.js';
import type { AsyncEvent } from '../../../src/engine/host/driver.js';
import { FeatureId } from '../../../src/engine/spec/features.js';
import { AsyncEventType, AsyncSmartInfo, CriticalWarning, LogPageId } from '../../../src/engine/spec/log-pages.js';
import { IdNs } from '../../../src/engine/spec/identify.js';
import { bringUp, pattern, sameBytes, smallTmpfs, tempDir, thinLoopDevice, waitFor, DATA_PATHS, type Harness } from '../../helpers/harness.js';
import type { IoQueuePair } from '../../../src/engine/host/io-queue-pair.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const MiB = 1 << 20;
/** Critical Warning bits a namespace that may have lost data sets. */
const LOST = CriticalWarning.RELIABILITY_DEGRADED | CriticalWarning.READ_ONLY;
const LOST_EVENT: AsyncEvent = { type: AsyncEventType.SMART_HEALTH, info: AsyncSmartInfo.RELIABILITY, logPage: LogPageId.SMART_HEALTH };

function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

const smallFs = (): { dir: string } => smallTmpfs(dir(), cleanups);
const thinDevice = (): { dev: string; grow(size: string): void } => thinLoopDevice(dir(), cleanups);

async function up(backend: FileBackend, dataPath: DataPath, events?: AsyncEvent[]): Promise<{ h: Harness; q: IoQueuePair }> {
  cleanups.push(() => backend.close());
  const h = await bringUp({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath }, driver: events ? { onAsyncEvent: (e) => events.push(e) } : {} });
  cleanups.push(() => h.close().catch(() => {}));
  expect(h.controller.dataPath).toBe(dataPath);
  return { h, q: await h.driver.createIoQueuePair({ entries: 16 }) };
}

/** Writes `n` 256 KiB chunks from LBA 0; the outcome of each (`ok` or the error's code). */
async function writeChunks(q: IoQueuePair, n: number, fua = false): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < n; i++) await q.write(1, i * 64, 64, pattern(256 * 1024, i), { fua }).then(() => codes.push('ok'), (e: { code: string }) => codes.push(e.code));
  return codes;
}

const code = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: { code: string }) => e.code);

/** Identify Namespace NSATTR bit 0: write protected. */
async function nsWriteProtected(h: Harness): Promise<number> {
  const buf = new Uint8Array(4096);
  await h.driver.adminPassthru({ opcode: 0x06, nsid: 1, cdw10: 0 }, { buffer: buf, direction: 'from-device' });
  return buf[IdNs.NSATTR.offset]! & 1;
}

describe('the fsync-error trap: a failed flush stays failed', () => {
  it.each(DATA_PATHS)('a flush whose write-back fails fails every later flush, refuses writes, warns in SMART and raises an event (%s)', async (dataPath) => {
    const thin = thinDevice();
    const events: AsyncEvent[] = [];
    const { h, q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath, events);
    // SMART / Health events for Critical Warning bits 2 and 3 enabled, as a host that wants them does.
    await h.driver.setFeature(FeatureId.ASYNC_EVENT_CONFIG, LOST);
    // 4 MiB into the page cache: every write is acknowledged.
    expect(await writeChunks(q, 16)).toEqual(Array(16).fill('ok'));
    expect((await h.driver.smartLog()).criticalWarning).toBe(0);
    // The kernel reports the failed write-back (EIO) to this fdatasync, and to no later one.
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.flush(0xffffffff))).toBe('NVMQ_WRITE_FAULT');
    // Read only from now on: every command that changes blocks is refused; reads still work.
    expect(await code(q.write(1, 0, 1, pattern(4096, 1)))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect(await code(q.write(1, 0, 1, pattern(4096, 1), { fua: true }))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect(await code(q.writeZeroes(1, 0, 8))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect(await code(q.deallocate(1, [{ slba: 0, nlb: 8 }]))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    const back = new Uint8Array(4096);
    await q.read(1, 0, 1, back);
    const smart = await h.driver.smartLog();
    expect(smart.criticalWarning & LOST).toBe(LOST);
    // Each flush that failed completed with a media status.
    expect(smart.mediaErrors).toBe(3);
    expect(await nsWriteProtected(h)).toBe(1);
    await waitFor(() => events.length > 0, 'the SMART / Health event');
    expect(events).toEqual([LOST_EVENT]);
    // In the error log: the three failed flushes (Write Fault), then the four refusals (Write Protected).
    const log = await h.driver.errorLog();
    expect(log.slice(0, 7).map((e) => [e.status, e.nsid])).toEqual([...Array(4).fill([0x4020, 1]), [0x280, 0xffffffff], [0x280, 1], [0x280, 1]]);
  });

  it.each(DATA_PATHS)('a controller reset keeps the namespace failed; only a new open starts clean (%s)', async (dataPath) => {
    const thin = thinDevice();
    const backend = new FileBackend({ path: thin.dev, force: true });
    const first = await up(backend, dataPath);
    expect(await writeChunks(first.q, 16)).toEqual(Array(16).fill('ok'));
    expect(await code(first.q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    await first.h.driver.reset();
    const q = await first.h.driver.createIoQueuePair({ entries: 16 });
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.write(1, 0, 1, pattern(4096, 1)))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect((await first.h.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
    await first.h.close().catch(() => {});
    await backend.close();
    // Room again, and a new open: a new controller, with no acknowledged data of its own to have lost.
    thin.grow('16m');
    const second = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    expect((await second.h.driver.smartLog()).criticalWarning).toBe(0);
    expect(await writeChunks(second.q, 16)).toEqual(Array(16).fill('ok'));
    await second.q.flush(1);
    const back = new Uint8Array(256 * 1024);
    await second.q.read(1, 15 * 64, 64, back);
    expect(sameBytes(back, pattern(256 * 1024, 15))).toBe('equal');
  });

  it.each(DATA_PATHS)('a FUA write that reports the failed write-back of cached writes fails the namespace (%s)', async (dataPath) => {
    const thin = thinDevice();
    const { h, q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    expect(await writeChunks(q, 15)).toEqual(Array(15).fill('ok'));
    // The cached writes are written back (and fail) outside any sync of the namespace's own, as the kernel's
    // flusher or a `sync` would: the kernel reports the failure to the next sync of the namespace's
    // descriptor, here the FUA write's (RWF_DSYNC; or its fdatasync on the portable path).
    const other = fs.openSync(thin.dev, 'r');
    expect(() => fs.fdatasyncSync(other)).toThrow(/EIO/);
    fs.closeSync(other);
    expect(await code(q.write(1, 15 * 64, 64, pattern(256 * 1024, 15), { fua: true }))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.write(1, 0, 1, pattern(4096, 1)))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect((await h.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
  });

  it.each(DATA_PATHS)('Write Zeroes with FUA whose flush fails fails the namespace (%s)', async (dataPath) => {
    const thin = thinDevice();
    const { q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    expect(await writeChunks(q, 16)).toEqual(Array(16).fill('ok'));
    expect(await code(q.writeZeroes(1, 0, 8, { fua: true }))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.writeZeroes(1, 0, 8))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
  });

  it.each(DATA_PATHS)('with Asynchronous Event Configuration clear, no event is sent, and SMART still warns (%s)', async (dataPath) => {
    const thin = thinDevice();
    const events: AsyncEvent[] = [];
    const { h, q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath, events);
    expect(await writeChunks(q, 16)).toEqual(Array(16).fill('ok'));
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect((await h.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual([]);
  });
});

describe('durable before completion', () => {
  it.each(DATA_PATHS)('FUA and write-cache-off writes reach the medium before they complete: the device failing them fails the write itself (%s)', async (dataPath) => {
    const thin = thinDevice();
    const { h, q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    // 1 MiB of medium: the fifth durable 256 KiB write cannot reach it, and says so.
    const fua = await writeChunks(q, 8, true);
    expect(fua.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(fua.slice(5)).toEqual(['NVMQ_NAMESPACE_WRITE_PROTECTED', 'NVMQ_NAMESPACE_WRITE_PROTECTED', 'NVMQ_NAMESPACE_WRITE_PROTECTED']);
    expect(fua).toContain('NVMQ_WRITE_FAULT');
    expect((await h.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
  });

  it.each(DATA_PATHS)('with the write cache disabled a plain write is durable on completion too (%s)', async (dataPath) => {
    const thin = thinDevice();
    const { h, q } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    await h.driver.setVolatileWriteCache(false);
    const codes = await writeChunks(q, 8);
    expect(codes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(codes).toContain('NVMQ_WRITE_FAULT');
    // The cache back on: writes are acknowledged from it again (and refused here, the namespace having failed).
    await h.driver.setVolatileWriteCache(true);
    expect(await code(q.write(1, 0, 1, pattern(4096, 1)))).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
  });

  it.each(DATA_PATHS)('with the write cache disabled a deallocate is followed by a flush (%s)', async (dataPath) => {
    const thin = thinDevice();
    const { q, h } = await up(new FileBackend({ path: thin.dev, force: true }), dataPath);
    expect(await writeChunks(q, 16)).toEqual(Array(16).fill('ok'));
    await h.driver.setVolatileWriteCache(false);
    // The flush after the deallocate meets the cached writes' failed write-back.
    expect(await code(q.deallocate(1, [{ slba: 0, nlb: 8 }, { slba: 64, nlb: 8 }]))).toBe('NVMQ_WRITE_FAULT');
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
  });

  it.each(DATA_PATHS)('out of space on a full file system: Capacity Exceeded, and the namespace goes on when no write was ever cached (%s)', async (dataPath) => {
    const mnt = smallFs();
    const { h, q } = await up(new FileBackend({ path: path.join(mnt.dir, 'full.img'), size: 4 * MiB }), dataPath);
    await h.driver.setVolatileWriteCache(false);
    const codes = await writeChunks(q, 8);
    expect(codes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(codes).toContain('NVMQ_CAPACITY_EXCEEDED');
    expect(codes).not.toContain('NVMQ_NAMESPACE_WRITE_PROTECTED');
    // Every acknowledged write was durable: nothing was lost, flushes succeed, written blocks can be rewritten.
    await q.flush(1);
    await q.write(1, 0, 64, pattern(256 * 1024, 9));
    expect((await h.driver.smartLog()).criticalWarning).toBe(0);
  });

  it.each(DATA_PATHS)('out of space in a durable write after cached writes fails the namespace: the kernel reports a failed write-back the same way (%s)', async (dataPath) => {
    const mnt = smallFs();
    const { h, q } = await up(new FileBackend({ path: path.join(mnt.dir, 'full.img'), size: 4 * MiB }), dataPath);
    expect(await writeChunks(q, 1)).toEqual(['ok']);
    const codes = await writeChunks(q, 8, true);
    expect(codes).toContain('NVMQ_CAPACITY_EXCEEDED');
    expect(codes.at(-1)).toBe('NVMQ_NAMESPACE_WRITE_PROTECTED');
    expect(await code(q.flush(1))).toBe('NVMQ_WRITE_FAULT');
    expect((await h.driver.smartLog()).criticalWarning & LOST).toBe(LOST);
  });
});
