// The two data paths of file namespaces, io_uring and portable (node:fs): the same commands leave the same
// bytes and kernel errors become the same NVMe statuses. Real files, a real loop device, real file systems
// (root, as CI has). The io_uring ring itself (teardown with I/O in flight, bounds) is tested in
// test/engine/uring/ring.test.ts.
import { describe, it, expect, afterEach } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { loadNative } from '../../../src/engine/uring/native.js';
import type { DataPath } from '../../../src/engine/uring/data-path.js';
import { HealthCounter } from '../../../src/engine/device/health.js';
import { bringUp, pattern, sameBytes, tempDir, writtenImage, DATA_PATHS, PORTABLE_ON_PURPOSE, type Harness } from '../../helpers/harness.js';
import type { IoQueuePair } from '../../../src/engine/host/io-queue-pair.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  delete process.env.NVMQ_DISABLE_NATIVE;
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

async function up(backend: FileBackend, dataPath: DataPath, lbaSize: 512 | 4096 = 4096): Promise<Harness> {
  const h = await bringUp({ namespaces: [{ backend, lbaSize }], controller: { dataPath } });
  cleanups.push(() => h.close().catch(() => {}));
  expect(h.controller.dataPath).toBe(dataPath);
  return h;
}

/** A small deterministic generator (xorshift32). */
function rng(seed: number): (n: number) => number {
  let x = seed | 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/**
 * A seeded mix of every data command, some through hand-built PRP lists whose
 * pages are scattered in the arena (the ring's readv / writev path), with
 * every read checked against a model of the namespace. Returns the model.
 */
async function workload(h: Harness, q: IoQueuePair, lbaSize: number, blocks: number, seed: number, initial?: Uint8Array): Promise<Uint8Array> {
  const model = initial ? initial.slice() : new Uint8Array(blocks * lbaSize);
  const r = rng(seed);
  const arena = h.arena;
  const pages = Array.from({ length: 8 }, () => arena.alloc(4096));
  const list = arena.alloc(4096);
  cleanups.push(() => {
    for (const p of [...pages, list]) arena.release(p);
  });
  for (let step = 0; step < 300; step++) {
    const op = r(10);
    const nlb = 1 + r(Math.min(16, (4 * 4096) / lbaSize));
    const slba = r(blocks - nlb);
    const at = slba * lbaSize;
    const len = nlb * lbaSize;
    if (op < 3) {
      const data = pattern(len, seed * 1000 + step);
      await q.write(1, slba, nlb, data, { fua: op === 0 });
      model.set(data, at);
    } else if (op < 6) {
      const back = new Uint8Array(len);
      await q.read(1, slba, nlb, back);
      expect(sameBytes(back, model.subarray(at, at + len)), `read at LBA ${slba}`).toBe('equal');
    } else if (op === 6) {
      // Scattered pages: PRP1 = a page, PRP2 = a list of the others in shuffled order.
      const n = Math.ceil(len / 4096);
      const order = pages.slice(0, n).sort(() => r(3) - 1);
      for (let i = 1; i < n; i++) arena.view.setBigUint64(list.offset + (i - 1) * 8, BigInt(order[i]!.iova), true);
      const prp2 = n === 1 ? 0 : n === 2 ? order[1]!.iova : list.iova;
      const write = r(2) === 0;
      if (write) {
        const data = pattern(len, seed * 7 + step);
        for (let i = 0; i < n; i++) order[i]!.bytes.set(data.subarray(i * 4096, Math.min(len, (i + 1) * 4096)));
        const c = await q.passthru({ opcode: 0x01, nsid: 1, cdw10: slba, cdw12: nlb - 1, prp1: order[0]!.iova, prp2 });
        expect(c.status).toBe(0);
        model.set(data, at);
      } else {
        const c = await q.passthru({ opcode: 0x02, nsid: 1, cdw10: slba, cdw12: nlb - 1, prp1: order[0]!.iova, prp2 });
        expect(c.status).toBe(0);
        for (let i = 0; i < n; i++) {
          const piece = Math.min(4096, len - i * 4096);
          expect(sameBytes(order[i]!.bytes.subarray(0, piece), model.subarray(at + i * 4096, at + i * 4096 + piece)), `scattered read at LBA ${slba}`).toBe('equal');
        }
      }
    } else if (op === 7) {
      await q.writeZeroes(1, slba, nlb, { deallocate: r(2) === 0 });
      model.fill(0, at, at + len);
    } else if (op === 8) {
      await q.deallocate(1, [{ slba, nlb }]);
      model.fill(0, at, at + len);
    } else {
      await q.flush(1);
    }
  }
  return model;
}


/** Without the addon nothing can align buffers for O_DIRECT: a direct namespace is refused, clearly (only where that build was asked for). */
function directNeedsAddon(file: string): boolean {
  if (loadNative()) return false;
  expect(PORTABLE_ON_PURPOSE).toBe(true);
  expect(() => new FileBackend({ path: file, size: 1 << 20, direct: true })).toThrow(expect.objectContaining({ code: 'NVMQ_DIRECT_UNSUPPORTED', message: expect.stringContaining("needs nvmq's native addon") }));
  return true;
}

describe('the data paths', () => {
  it.each([512, 4096] as const)('the same workload on both paths leaves the same bytes (%d-byte LBAs)', async (lbaSize) => {
    const images: Buffer[] = [];
    for (const dataPath of DATA_PATHS) {
      const file = path.join(dir(), `${dataPath}.img`);
      const backend = new FileBackend({ path: file, size: 2 << 20 });
      const h = await up(backend, dataPath, lbaSize);
      const q = await h.driver.createIoQueuePair({ entries: 16 });
      const model = await workload(h, q, lbaSize, (2 << 20) / lbaSize, 42);
      // Page-cache reads gain nothing from a registered arena: a buffered namespace's ring does without.
      if (dataPath === 'io_uring') expect(h.controller.rings?.ring(q.qid)?.fixedBuffers).toBe(false);
      await h.close();
      const bytes = fs.readFileSync(file);
      expect(sameBytes(bytes, model)).toBe('equal');
      images.push(bytes);
    }
    if (images.length === 2) expect(sameBytes(images[0]!, images[1]!)).toBe('equal');
  });

  it.each(DATA_PATHS)('O_DIRECT: a direct namespace reads and writes through page-aligned arena memory (%s)', async (dataPath) => {
    const file = writtenImage(path.join(dir(), 'direct.img'), 4 << 20);
    if (directNeedsAddon(file)) return;
    const backend = new FileBackend({ path: file, direct: true });
    expect(backend.alignment).toBe(512);
    const h = await up(backend, dataPath);
    expect(h.arena.skew).toBe((4096 - loadNative()!.pageOffsetOf(new Uint8Array(h.arena.buffer, 0, 1))) % 4096);
    const q = await h.driver.createIoQueuePair({ entries: 16 });
    const model = await workload(h, q, 4096, 1024, 7, fs.readFileSync(file));
    // On io_uring the ring serving a direct namespace has the arena registered: single-buffer transfers
    // go as READ_FIXED / WRITE_FIXED (the workload above ran through them).
    if (dataPath === 'io_uring') expect(h.controller.rings?.ring(q.qid)?.fixedBuffers).toBe(true);
    await h.close();
    expect(sameBytes(fs.readFileSync(file), model)).toBe('equal');
  });

  it('q.wait() never blocks where nothing can be waited for in the ring (the portable path): the event loop delivers', async () => {
    const h = await up(new FileBackend({ path: path.join(dir(), 'w.img'), size: 1 << 20 }), 'portable');
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    let done = false;
    q.readCallback(1, 0, 1, new Uint8Array(4096), () => (done = true));
    const t = performance.now();
    expect(q.wait(2000)).toBe(0);
    // Nor spins: there is no ring to poll.
    expect(q.wait(2000, 900_000)).toBe(0);
    expect(performance.now() - t).toBeLessThan(800);
    while (!done) await new Promise((r) => setImmediate(r));
    expect(q.outstanding).toBe(0);
  });

  it.each(DATA_PATHS)('O_DIRECT: a PRP1 offset off a sector boundary is PRP Offset Invalid, and nothing moves (%s)', async (dataPath) => {
    const file = writtenImage(path.join(dir(), 'direct.img'), 1 << 20);
    if (directNeedsAddon(file)) return;
    const h = await up(new FileBackend({ path: file, direct: true }), dataPath);
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    const buf = h.arena.alloc(8192);
    cleanups.push(() => h.arena.release(buf));
    buf.bytes.fill(0xcc);
    const c = await q.passthru({ opcode: 0x02, nsid: 1, cdw10: 0, cdw12: 0, prp1: buf.iova + 256, prp2: buf.iova + 4096 });
    expect({ sct: (c.status >> 8) & 7, sc: c.status & 0xff, dnr: (c.status >> 14) & 1 }).toEqual({ sct: 0, sc: 0x13, dnr: 1 });
    expect(buf.bytes.every((b) => b === 0xcc)).toBe(true);
    // Sector aligned (not page aligned) is fine.
    const ok = await q.passthru({ opcode: 0x02, nsid: 1, cdw10: 0, cdw12: 0, prp1: buf.iova + 512, prp2: buf.iova + 4096 });
    expect(ok.status).toBe(0);
    expect(sameBytes(buf.bytes.subarray(512, 4096), pattern(1 << 20, 77).subarray(0, 3584))).toBe('equal');
  });

  it('O_DIRECT on a file system that refuses it is one clear error, and the image is not left behind', () => {
    const mnt = dir();
    execFileSync('mount', ['-t', 'ramfs', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    const file = path.join(mnt, 'x.img');
    const why = loadNative() ? 'refuses O_DIRECT' : "needs nvmq's native addon";
    expect(() => new FileBackend({ path: file, size: 1 << 20, direct: true })).toThrow(expect.objectContaining({ code: 'NVMQ_DIRECT_UNSUPPORTED', message: expect.stringContaining(why) }));
    expect(fs.readdirSync(mnt)).toEqual([]);
    // Without direct the same file system is fine.
    const b = new FileBackend({ path: file, size: 1 << 20 });
    cleanups.push(() => b.close());
  });

  it.each(DATA_PATHS)('a read that crosses the end of a file that shrank returns its data, then zeroes (%s)', async (dataPath) => {
    // The namespace claims 1 MiB over a descriptor whose file holds 6 KiB: the kernel's short read is continued, then EOF.
    const file = path.join(dir(), 'short.img');
    fs.writeFileSync(file, pattern(6144, 3));
    const fd = fs.openSync(file, 'r+');
    cleanups.push(() => fs.closeSync(fd));
    const h = await up(new FileBackend({ handle: { kind: 'file', fd, path: file, size: 1 << 20, readOnly: false, direct: false } }), dataPath, 512);
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    const back = new Uint8Array(16 * 512).fill(0xee);
    await q.read(1, 8, 16, back);
    expect(sameBytes(back.subarray(0, 2048), pattern(6144, 3).subarray(4096))).toBe('equal');
    expect(back.subarray(2048).every((b) => b === 0)).toBe(true);
  });
});

describe('kernel errors as NVMe statuses', () => {
  it.each(DATA_PATHS)('a write through a read-only descriptor is a Write Fault, logged and counted as a media error (%s)', async (dataPath) => {
    const file = path.join(dir(), 'ro.img');
    fs.writeFileSync(file, Buffer.alloc(1 << 20, 5));
    const fd = fs.openSync(file, 'r');
    cleanups.push(() => fs.closeSync(fd));
    // The namespace believes it may write; the kernel says EBADF.
    const h = await up(new FileBackend({ handle: { kind: 'file', fd, path: file, size: 1 << 20, readOnly: false, direct: false } }), dataPath);
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    const before = h.controller.health.get(HealthCounter.MEDIA_ERRORS);
    await expect(q.write(1, 3, 1, pattern(4096, 1))).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    await expect(q.write(1, 4, 1, pattern(4096, 2), { fua: true })).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS) - before).toBe(2);
    const log = await h.driver.errorLog();
    expect(log.slice(0, 2).map((e) => ({ sqid: e.sqid, status: e.status, lba: e.lba }))).toEqual([
      { sqid: q.qid, status: (2 << 8) | 0x80, lba: 4 },
      { sqid: q.qid, status: (2 << 8) | 0x80, lba: 3 },
    ]);
    // Reads still work, and the file is untouched.
    const back = new Uint8Array(4096);
    await q.read(1, 3, 1, back);
    expect(back.every((b) => b === 5)).toBe(true);
  });

  /** A loop device over `backing`, detached by the cleanups. */
  function loopDevice(backing: string): string {
    const dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    cleanups.push(() => execFileSync('losetup', ['--detach', dev]));
    return dev;
  }

  /** An 8 MiB device of 0xab bytes, open through `view` (the backend itself, or a view of it from its handle), that loses its second half under the namespace. */
  async function shrunkDevice(dataPath: DataPath, view: (backend: FileBackend) => FileBackend): Promise<{ h: Harness; q: IoQueuePair }> {
    const img = path.join(dir(), 'backing.img');
    fs.writeFileSync(img, Buffer.alloc(8 << 20, 0xab));
    const dev = loopDevice(img);
    const backend = new FileBackend({ path: dev, force: true });
    cleanups.push(() => backend.close());
    const h = await up(view(backend), dataPath, 512);
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    fs.truncateSync(img, 4 << 20);
    execFileSync('losetup', ['--set-capacity', dev]);
    return { h, q };
  }

  it.each(DATA_PATHS)('past the end of a block device that shrank: reads are Unrecovered Read Errors, writes Write Faults (%s)', async (dataPath) => {
    const { h, q } = await shrunkDevice(dataPath, (b) => b);
    const back = new Uint8Array(4096);
    await q.read(1, 0, 8, back);
    expect(back.every((b) => b === 0xab)).toBe(true);
    await expect(q.read(1, (6 << 20) / 512, 8, back)).rejects.toMatchObject({ code: 'NVMQ_UNRECOVERED_READ_ERROR' });
    await expect(q.write(1, (6 << 20) / 512, 8, pattern(4096, 1))).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    // Straddling the end: the part inside lands, the rest is the fault.
    await expect(q.write(1, (4 << 20) / 512 - 4, 8, pattern(4096, 2))).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS)).toBe(3);
  });

  it.each(DATA_PATHS)('past the end of a block device that shrank, Write Zeroes and Deallocate are Write Faults too (%s)', async (dataPath) => {
    const { h, q } = await shrunkDevice(dataPath, (b) => b);
    await expect(q.writeZeroes(1, (6 << 20) / 512, 8)).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    await expect(q.writeZeroes(1, (6 << 20) / 512, 8, { deallocate: true })).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    await expect(q.deallocate(1, [{ slba: (6 << 20) / 512, nlb: 8 }])).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS)).toBe(3);
  });

  it.each(DATA_PATHS)("a view of a block device made from its handle (a worker's) knows where the medium ends (%s)", async (dataPath) => {
    const { h, q } = await shrunkDevice(dataPath, (b) => new FileBackend({ handle: b.handle() as Extract<ReturnType<FileBackend['handle']>, { kind: 'file' }> }));
    const back = new Uint8Array(4096).fill(0xee);
    await expect(q.read(1, (6 << 20) / 512, 8, back)).rejects.toMatchObject({ code: 'NVMQ_UNRECOVERED_READ_ERROR' });
    await expect(q.write(1, (6 << 20) / 512, 8, pattern(4096, 1))).rejects.toMatchObject({ code: 'NVMQ_WRITE_FAULT' });
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS)).toBe(2);
  });

  it.each(DATA_PATHS)('a thin-provisioned block device out of space: Capacity Exceeded inside the device, not a media error (%s)', async (dataPath) => {
    if (!loadNative()) {
      // The device's ENOSPC reaches the writer only with O_DIRECT (buffered, writeback reports EIO), which needs the addon.
      expect(PORTABLE_ON_PURPOSE).toBe(true);
      return;
    }
    // A loop device over an 8 MiB sparse file on a 1 MiB file system: the device is bigger than what backs it.
    const mnt = dir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    const backing = path.join(mnt, 'thin.img');
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, 8 << 20);
    const backend = new FileBackend({ path: loopDevice(backing), force: true, direct: true });
    cleanups.push(() => backend.close());
    const h = await up(backend, dataPath, 512);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const codes: string[] = [];
    for (let i = 0; i < 8; i++) await q.write(1, i * 512, 512, pattern(256 * 1024, i)).then(() => codes.push('ok'), (e: { code: string }) => codes.push(e.code));
    expect(codes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(codes.slice(5)).toEqual(['NVMQ_CAPACITY_EXCEEDED', 'NVMQ_CAPACITY_EXCEEDED', 'NVMQ_CAPACITY_EXCEEDED']);
    const back = new Uint8Array(256 * 1024);
    await q.read(1, 0, 512, back);
    expect(sameBytes(back, pattern(256 * 1024, 0))).toBe('equal');
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS)).toBe(0);
  });

  it.each(DATA_PATHS)('ENOSPC on a full file system is Capacity Exceeded, and what landed reads back (%s)', async (dataPath) => {
    const mnt = dir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    const backend = new FileBackend({ path: path.join(mnt, 'full.img'), size: 4 << 20 });
    cleanups.push(() => backend.close());
    const h = await up(backend, dataPath);
    const q = await h.driver.createIoQueuePair({ entries: 8 });
    const codes: string[] = [];
    for (let i = 0; i < 8; i++) await q.write(1, i * 64, 64, pattern(256 * 1024, i)).then(() => codes.push('ok'), (e: { code: string }) => codes.push(e.code));
    expect(codes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(codes).toContain('NVMQ_CAPACITY_EXCEEDED');
    const back = new Uint8Array(256 * 1024);
    await q.read(1, 0, 64, back);
    expect(sameBytes(back, pattern(256 * 1024, 0))).toBe('equal');
    // Capacity Exceeded is not a media error.
    expect(h.controller.health.get(HealthCounter.MEDIA_ERRORS)).toBe(0);
  });
});
