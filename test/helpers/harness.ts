/**
 * Test harness: a real controller over real backends, reached through the
 * in-process transport, with the host driver brought up on it. Tests keep
 * handles on every layer so they can poke registers, send raw commands and
 * inspect memory.
 */
import { afterEach } from 'vitest';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { DmaArena } from '../../src/engine/dma-arena.js';
import { NvmeController, type ControllerOptions } from '../../src/engine/device/controller.js';
import { MemoryBackend } from '../../src/engine/device/backends/memory.js';
import type { Backend } from '../../src/engine/device/backends/backend.js';
import type { LbaSize } from '../../src/engine/device/namespace.js';
import { LocalTransport } from '../../src/engine/transport/local.js';
import { NvmeDriver, type DriverOptions } from '../../src/engine/host/driver.js';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeImage, openImage } from '../../src/engine/device/backends/image.js';
import type { FileBackendOptions } from '../../src/engine/device/backends/file.js';
import type { BackendHandle } from '../../src/engine/device/backends/backend.js';
import { dataPathStatus, type DataPath } from '../../src/engine/uring/data-path.js';

export interface HarnessOptions {
  /** Namespaces; default one 16 MiB memory namespace with 4 KiB blocks. */
  namespaces?: Array<{ backend: Backend; lbaSize?: LbaSize; nsid?: number }>;
  arenaSize?: number;
  controller?: Omit<ControllerOptions, 'arena' | 'namespaces'>;
  driver?: DriverOptions;
}

export interface Harness {
  arena: DmaArena;
  controller: NvmeController;
  transport: LocalTransport;
  driver: NvmeDriver;
  close(): Promise<void>;
}

export function memoryNamespace(size = 16 << 20, lbaSize: LbaSize = 4096, nsid?: number): { backend: Backend; lbaSize: LbaSize; nsid?: number } {
  return { backend: new MemoryBackend({ size }), lbaSize, ...(nsid !== undefined ? { nsid } : {}) };
}

/** Controller and transport only, not brought up: for register-level tests. */
export function makeController(opts: HarnessOptions = {}): { arena: DmaArena; controller: NvmeController; transport: LocalTransport } {
  const arena = new DmaArena({ sizeBytes: opts.arenaSize ?? 16 << 20 });
  const controller = new NvmeController({ ...opts.controller, arena, namespaces: opts.namespaces ?? [memoryNamespace()] });
  return { arena, controller, transport: new LocalTransport(controller) };
}

export async function bringUp(opts: HarnessOptions = {}): Promise<Harness> {
  const { arena, controller, transport } = makeController(opts);
  const driver = await NvmeDriver.attach(transport, opts.driver);
  return { arena, controller, transport, driver, close: () => driver.close() };
}

/**
 * Cleanups that run after each test of the calling file, last registered
 * first, and fresh temporary directories removed by them.
 */
export function scratch(): { cleanups: Array<() => unknown>; dir(): string } {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    cleanups,
    dir: () => {
      const t = tempDir();
      cleanups.push(t.cleanup);
      return t.dir;
    },
  };
}

/** Clean-ups for a test file: `defer(fn)` runs `fn` after the test that registered it, the last first. */
export function deferPerTest(): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = [];
  afterEach(async () => {
    for (const fn of fns.splice(0).reverse()) await fn();
  });
  return (fn) => {
    fns.push(fn);
  };
}

/** Temporary directories for a test file: `dir()` makes one, removed after the test that made it. */
export function tempDirsPerTest(): () => string {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });
  return () => {
    const t = tempDir();
    cleanups.push(t.cleanup);
    return t.dir;
  };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-test-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic bytes for data checks. */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Resolves after pending microtasks and one macrotask turn (interrupt delivery, fs callbacks). */
export function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves once `cond()` holds, checking every couple of milliseconds; rejects, naming `what`, after `ms`. */
export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

/** Fast byte comparison for large buffers; on a mismatch the message names the first differing offset. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`;
  if (Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.length), Buffer.from(expected.buffer, expected.byteOffset, expected.length)) === 0) return 'equal';
  let i = 0;
  while (actual[i] === expected[i]) i++;
  return `differ first at byte ${i}: ${actual[i]} != ${expected[i]}`;
}

/** True when every byte of `b` is `value`. */
export function allBytes(b: Uint8Array, value: number): boolean {
  return b.every((x) => x === value);
}

/**
 * The data paths file-namespace tests run on: both wherever io_uring works
 * (CI installs liburing, so it must work there: a CI run without it fails
 * here rather than quietly testing one path).
 */
/** The run is on the portable path on purpose: no addon, an addon without liburing, or the addon disabled. */
export const PORTABLE_ON_PURPOSE = ['NVMQ_SKIP_NATIVE', 'NVMQ_NO_URING', 'NVMQ_DISABLE_NATIVE'].some((v) => process.env[v] === '1');

export const DATA_PATHS: DataPath[] = (() => {
  const st = dataPathStatus();
  if (st.path === 'io_uring') return ['io_uring', 'portable'];
  if (process.env.CI && !PORTABLE_ON_PURPOSE) throw new Error(`io_uring is unavailable in CI: ${st.reason ?? 'unknown'}`);
  return ['portable'];
})();

/**
 * A file namespace whose commands are still in flight when their doorbell
 * returns, for tests of what happens to commands in flight. On the portable
 * path any file will do (libuv completes later). On io_uring page-cache hits
 * complete inside the doorbell, so the "device" is a FIFO: its reads wait
 * until the test feeds it bytes (`feed`), or until their ring cancels them.
 */
export interface StalledDevice {
  options: FileBackendOptions | { handle: Extract<BackendHandle, { kind: 'file' }> };
  /** Lets `bytes` more bytes of reads complete (io_uring); nothing to do on the portable path. */
  feed(bytes: number): Promise<void>;
  close(): void;
}

export function stalledDevice(dataPath: DataPath, dir: string, size: number): StalledDevice {
  const file = path.join(dir, dataPath === 'portable' ? 'stalled.img' : 'stalled.fifo');
  if (dataPath === 'portable') return { options: { path: file, size }, feed: () => Promise.resolve(), close: () => {} };
  execFileSync('mkfifo', [file]);
  // O_RDWR: opening a FIFO this way never blocks, and the FIFO never reports end of file.
  const fd = fs.openSync(file, fs.constants.O_RDWR);
  let open = true;
  return {
    options: { handle: { kind: 'file', fd, path: file, size, readOnly: false, direct: false } },
    // Through libuv's pool: a write the FIFO cannot take yet must not block this thread, whose ring reads it.
    feed: (bytes) => new Promise((resolve, reject) => fs.write(fd, new Uint8Array(bytes), (err) => (err ? reject(err) : resolve()))),
    close: () => {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

/**
 * Creates an nvmq image (with its sidecar) whose blocks are all written and
 * synced, so that O_DIRECT reads of it go to the disk (a hole or a page-cache
 * hit would complete at once).
 */
export function writtenImage(file: string, size: number): string {
  const img = openImage({ path: file, size });
  const chunk = pattern(1 << 20, 77);
  for (let pos = 0; pos < size; pos += chunk.length) fs.writeSync(img.fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
  fs.fsyncSync(img.fd);
  closeImage(img);
  return file;
}

/**
 * A file backend (made by `make`, e.g. a subclass) over a stalledDevice in a
 * fresh temporary directory; closing it, the device and the directory is
 * registered on `cleanups`.
 */
export function stalledBackend<B extends { close(): Promise<void> }>(
  dataPath: DataPath,
  make: (options: StalledDevice['options']) => B,
  cleanups: Array<() => unknown>,
  size = 16 << 20,
): { backend: B; device: StalledDevice } {
  const tmp = tempDir();
  const device = stalledDevice(dataPath, tmp.dir, size);
  const backend = make(device.options);
  cleanups.push(async () => {
    await backend.close();
    device.close();
    tmp.cleanup();
  });
  return { backend, device };
}

/** A 1 MiB tmpfs mounted on `dir`, unmounted by `cleanups`; `grow` remounts it with more room ("16m"). */
export function smallTmpfs(dir: string, cleanups: Array<() => unknown>): { dir: string; grow(size: string): void } {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nvmq-test', dir]);
  cleanups.push(() => execFileSync('umount', [dir]));
  return { dir, grow: (size) => execFileSync('mount', ['-o', `remount,size=${size}`, dir]) };
}

/**
 * An 8 MiB loop device over a sparse file on a 1 MiB tmpfs mounted on `dir`
 * (detached and unmounted by `cleanups`): buffered writes to it are
 * acknowledged from the page cache, and their write-back fails with EIO
 * past 1 MiB, until `grow` gives the tmpfs room. Needs root.
 */
export function thinLoopDevice(dir: string, cleanups: Array<() => unknown>): { dev: string; grow(size: string): void } {
  const mnt = smallTmpfs(dir, cleanups);
  const backing = path.join(dir, 'thin.img');
  fs.writeFileSync(backing, '');
  fs.truncateSync(backing, 8 << 20);
  const dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
  cleanups.push(() => execFileSync('losetup', ['--detach', dev]));
  return { dev, grow: mnt.grow };
}

/** The Debian package each outside tool the suite runs against comes from. */
const TOOL_PACKAGES = { prometheus: 'prometheus', promtool: 'prometheus', fio: 'fio', strace: 'strace' } as const;

/** Whether an outside tool is on PATH; in CI (CI set, as .ci/run does) its absence is a failure, not a skip. */
export function haveTool(command: keyof typeof TOOL_PACKAGES): boolean {
  const found = spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found && process.env.CI) throw new Error(`${command} is missing: .ci/run installs the Debian package ${TOOL_PACKAGES[command]}`);
  return found;
}

/**
 * Everything below `dir`, for "the directory is exactly as before" checks:
 * relative path → `dir`, `link <target>` or `file <size> <sha1 of the bytes>`.
 */
export function treeOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name);
      const full = path.join(dir, r);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) {
        out[r] = 'dir';
        walk(r);
      } else if (st.isSymbolicLink()) out[r] = `link ${fs.readlinkSync(full)}`;
      else out[r] = `file ${st.size} ${createHash('sha1').update(fs.readFileSync(full)).digest('hex')}`;
    }
  };
  walk('');
  return out;
}

/** Wraps `driver.abort` (an NvmeDriver's, an engine's) and collects what each Abort it sends resolves to. */
export function recordAborts(driver: { abort(sqid: number, cid: number): Promise<boolean> }): Array<Promise<boolean>> {
  const aborts: Array<Promise<boolean>> = [];
  const abort = driver.abort.bind(driver);
  driver.abort = (sqid, cid) => {
    const found = abort(sqid, cid);
    aborts.push(found);
    return found;
  };
  return aborts;
}
