/**
 * The fuzz tests' world (see commands.test.ts): a controller with two
 * namespaces (in memory, or in files on either data path) and one I/O queue
 * pair, every arena page the host does not own made a guard page, sentinel
 * bytes in the arena's buffer outside the arena, and a model of the guard
 * pages and the namespaces that `checkWorld()` compares the real ones with.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bringUp, pattern, tempDir, type Harness } from '../../../helpers/harness.js';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import type { Backend } from '../../../../src/engine/device/backends/backend.js';
import type { DmaBuffer } from '../../../../src/engine/dma-arena.js';
import type { IoQueuePair } from '../../../../src/engine/host/io-queue-pair.js';
import type { DataPath } from '../../../../src/engine/uring/data-path.js';
import { Watchdog } from './watchdog.js';

export const PS = 4096;
export const PSn = 4096n;
export const ARENA_SIZE = 2 << 20;
/** Controller option mdts: 5, so transfers over 2^5 × 4 KiB are Invalid Field. */
const MDTS = 5;
export const MDTS_BYTES = (1 << MDTS) * PS;
export const NAMESPACES = [
  { nsid: 1, lbaSize: 512, size: 512 << 10 }, // 1024 blocks
  { nsid: 2, lbaSize: 4096, size: 1 << 20 }, // 256 blocks
] as const;
export const IO_ENTRIES = 32;
/** Controller options maxIoQueues and mqes: small, so that queue commands reach their limits. */
export const MAX_IO_QUEUES = 8;
export const MQES = 255;
/** Identify AERL (0's based): four AERs may be held. */
export const AERL = 3;
const TIMEOUT_MS = Number(process.env.NVMQ_FUZZ_TIMEOUT_MS ?? 5000);
export const SEED = 0x6e766d71;
/** Bytes of the arena's SharedArrayBuffer outside the arena, all this value: the controller never reaches them. */
const OUTSIDE = 0xa5;

/** Where the namespaces live: memory, or files reached through io_uring or the portable node:fs path. */
export type WorldKind = { backend: 'memory' } | { backend: 'file'; dataPath: DataPath };

export function worldName(k: WorldKind): string {
  return k.backend === 'memory' ? 'memory' : `file/${k.dataPath}`;
}

export const DNR = 1 << 14;
export const INTERNAL_ERROR_CODE = 0x006; // SCT 0, SC 06h

// ------------------------------------------------------------------ world

export interface State {
  /** Model of the whole arena; only guard pages are meaningful. */
  arena: Uint8Array;
  ns: Map<number, Uint8Array>;
}

interface World {
  kind: WorldKind;
  h: Harness;
  qp: IoQueuePair;
  base: bigint;
  end: bigint;
  /** Arena page indices the host does not own, ascending. */
  guardPages: number[];
  isGuard: Uint8Array;
  /** Contiguous [offset, length) runs of guard pages. */
  guardRuns: Array<[number, number]>;
  guardBufs: DmaBuffer[];
  /** The namespaces' bytes as they are now (read from the file for a file namespace). */
  nsBytes: Map<number, () => Uint8Array>;
  /** Writes a namespace's bytes (no command in flight). */
  nsWrite: Map<number, (b: Uint8Array) => void>;
  nsBlocks: Map<number, { lbaSize: number; blocks: number }>;
  state: State;
  arenaFills: Uint8Array[];
  nsFills: Map<number, Uint8Array[]>;
  /** A second state, reused as scratch (no allocation per command). */
  scratch: State;
  watchdog: Watchdog;
  /** Removes the namespaces' files. */
  cleanup: () => void;
}

export let w: World;

/** Every arena page still free becomes a guard page, owned by the test. */
function takeFreePages(h: Harness): { isGuard: Uint8Array; guardPages: number[]; guardRuns: Array<[number, number]>; guardBufs: DmaBuffer[] } {
  const isGuard = new Uint8Array(ARENA_SIZE / PS);
  const guardBufs: DmaBuffer[] = [];
  for (;;) {
    let b;
    try {
      b = h.arena.alloc(PS);
    } catch {
      break;
    }
    guardBufs.push(b);
    isGuard[b.offset / PS] = 1;
  }
  const guardPages = [...isGuard.keys()].filter((p) => isGuard[p] === 1);
  const guardRuns: Array<[number, number]> = [];
  for (const p of guardPages) {
    const last = guardRuns[guardRuns.length - 1];
    if (last && last[0] + last[1] === p * PS) last[1] += PS;
    else guardRuns.push([p * PS, PS]);
  }
  return { isGuard, guardPages, guardRuns, guardBufs };
}

/** Brings up the controller; every arena page the host does not own after that becomes a guard page. */
export async function setUpWorld(kind: WorldKind = { backend: 'memory' }): Promise<void> {
  let backends: Backend[];
  let cleanup = (): void => {};
  const files: string[] = [];
  if (kind.backend === 'memory') backends = NAMESPACES.map((n) => new MemoryBackend({ size: n.size }));
  else {
    const t = tempDir();
    cleanup = t.cleanup;
    backends = NAMESPACES.map((n) => {
      const file = path.join(t.dir, `ns${n.nsid}.img`);
      files.push(file);
      return new FileBackend({ path: file, size: n.size });
    });
  }
  const h = await bringUp({
    arenaSize: ARENA_SIZE,
    namespaces: NAMESPACES.map((n, i) => ({ backend: backends[i]!, lbaSize: n.lbaSize, nsid: n.nsid })),
    controller: { mdts: MDTS, maxIoQueues: MAX_IO_QUEUES, mqes: MQES, ...(kind.backend === 'file' ? { dataPath: kind.dataPath } : {}) },
  });
  const qp = await h.driver.createIoQueuePair({ entries: IO_ENTRIES });
  const guard = takeFreePages(h);
  const nsBytes = new Map<number, () => Uint8Array>();
  const nsWrite = new Map<number, (b: Uint8Array) => void>();
  NAMESPACES.forEach((n, i) => {
    const b = backends[i]!;
    if (b instanceof MemoryBackend) {
      const bytes = new Uint8Array(b.buffer);
      nsBytes.set(n.nsid, () => bytes);
      nsWrite.set(n.nsid, (d) => bytes.set(d));
    } else {
      const fd = (b as FileBackend).image.fd;
      const buf = new Uint8Array(n.size);
      nsBytes.set(n.nsid, () => {
        for (let at = 0; at < n.size; ) at += fs.readSync(fd, buf, at, n.size - at, at);
        return buf;
      });
      nsWrite.set(n.nsid, (d) => {
        for (let at = 0; at < n.size; ) at += fs.writeSync(fd, d, at, n.size - at, at);
      });
    }
  });
  const nsBlocks = new Map(NAMESPACES.map((n) => [n.nsid, { lbaSize: n.lbaSize, blocks: n.size / n.lbaSize }] as const));
  const outside = new Uint8Array(h.arena.buffer);
  outside.fill(OUTSIDE, 0, h.arena.skew);
  outside.fill(OUTSIDE, h.arena.skew + h.arena.size);
  const state = (): State => ({ arena: h.arena.bytes.slice(), ns: new Map(NAMESPACES.map((n) => [n.nsid, new Uint8Array(n.size)] as const)) });
  w = {
    kind,
    h,
    qp,
    base: BigInt(h.arena.base),
    end: BigInt(h.arena.base + h.arena.size),
    ...guard,
    nsBytes,
    nsWrite,
    nsBlocks,
    state: state(),
    scratch: state(),
    arenaFills: [1, 2, 3].map((s) => pattern(ARENA_SIZE, 100 + s)),
    nsFills: new Map(NAMESPACES.map((n) => [n.nsid, [1, 2, 3].map((s) => pattern(n.size, 200 * n.nsid + s))] as const)),
    watchdog: new Watchdog(Number(process.env.NVMQ_FUZZ_WATCHDOG_MS ?? 30_000)),
    cleanup,
  };
  reset(0);
}

export async function closeWorld(): Promise<void> {
  if (!w) return;
  await w.watchdog.stop();
  await w.h.close();
  w.cleanup();
}

/**
 * After a run that broke the host's view of the controller (register
 * chaos): a controller reset and a fresh bring-up by the driver, with every
 * guard page given back to it first (bring-up allocates), a new I/O queue
 * pair, and the guard pages taken again. The caller refills them (reset()).
 */
export async function recover(): Promise<void> {
  for (const b of w.guardBufs.splice(0)) w.h.arena.release(b);
  await withTimeout(w.h.driver.reset(), 'controller reset and bring-up after register writes');
  // INTMS written while the controller was disabled outlives the bring-up: the driver's bring-up unmasks it.
  w.qp = await withTimeout(w.h.driver.createIoQueuePair({ entries: IO_ENTRIES }), 'I/O queue pair after the reset');
  Object.assign(w, takeFreePages(w.h));
}

/** Fills every guard page and both namespaces with a known pattern, in the real world and in the model. */
export function reset(seed: number): void {
  const fill = w.arenaFills[seed % w.arenaFills.length]!;
  for (const [off, len] of w.guardRuns) {
    w.h.arena.bytes.set(fill.subarray(off, off + len), off);
    w.state.arena.set(fill.subarray(off, off + len), off);
  }
  for (const [nsid, write] of w.nsWrite) {
    const f = w.nsFills.get(nsid)![seed % 3]!;
    write(f);
    w.state.ns.get(nsid)!.set(f);
  }
}

function firstDiff(a: Uint8Array, b: Uint8Array, from: number, len: number): number {
  const x = Buffer.from(a.buffer, a.byteOffset + from, len);
  const y = Buffer.from(b.buffer, b.byteOffset + from, len);
  if (x.equals(y)) return -1;
  for (let i = 0; i < len; i++) if (x[i] !== y[i]) return from + i;
  return -1;
}

/** Not one byte of the arena's buffer outside the arena has changed. */
export function checkOutside(what: string): void {
  const all = new Uint8Array(w.h.arena.buffer);
  const { skew, size } = w.h.arena;
  for (const [from, to] of [[0, skew], [skew + size, all.length]] as const) {
    for (let i = from; i < to; i++) if (all[i] !== OUTSIDE) throw new Error(`${what}: byte ${i - skew} of the arena's buffer changed (outside the arena)`);
  }
}

/** Guard pages, the bytes outside the arena and the namespaces equal the model. */
export function checkWorld(what: string | (() => string)): void {
  const name = (): string => (typeof what === 'string' ? what : what());
  checkOutside(name());
  for (const [off, len] of w.guardRuns) {
    const d = firstDiff(w.h.arena.bytes, w.state.arena, off, len);
    if (d >= 0) {
      throw new Error(`${name()}: host memory changed outside the command's scope at arena offset 0x${d.toString(16)} (page ${d / PS | 0}): ` +
        `0x${w.h.arena.bytes[d]!.toString(16)}, model 0x${w.state.arena[d]!.toString(16)}`);
    }
  }
  for (const [nsid, read] of w.nsBytes) {
    const bytes = read();
    const model = w.state.ns.get(nsid)!;
    const d = firstDiff(bytes, model, 0, bytes.length);
    if (d >= 0) {
      const lba = w.nsBlocks.get(nsid)!.lbaSize;
      throw new Error(`${name()}: namespace ${nsid} differs from the model at byte ${d} (LBA ${Math.floor(d / lba)}): ${bytes[d]}, model ${model[d]}`);
    }
  }
}

/** `s` copied into the world's scratch state, which it returns. */
export function scratchOf(s: State): State {
  w.scratch.arena.set(s.arena);
  for (const [k, v] of s.ns) w.scratch.ns.get(k)!.set(v);
  return w.scratch;
}

export async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
