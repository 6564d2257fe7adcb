/**
 * The fuzz tests' world (see commands.test.ts): a controller with two memory
 * namespaces and one I/O queue pair, every arena page the host does not own
 * made a guard page, and a model of the guard pages and the namespaces that
 * `checkWorld()` compares the real ones with.
 */
import { bringUp, pattern, type Harness } from '../../../helpers/harness.js';
import { MemoryBackend } from '../../../../src/engine/device/backends/memory.js';
import type { IoQueuePair } from '../../../../src/engine/host/io-queue-pair.js';

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
const TIMEOUT_MS = 2000;
export const SEED = 0x6e766d71;

export const DNR = 1 << 14;
export const INTERNAL_ERROR_CODE = 0x006; // SCT 0, SC 06h

// ------------------------------------------------------------------ world

export interface State {
  /** Model of the whole arena; only guard pages are meaningful. */
  arena: Uint8Array;
  ns: Map<number, Uint8Array>;
}

interface World {
  h: Harness;
  qp: IoQueuePair;
  base: bigint;
  end: bigint;
  /** Arena page indices the host does not own, ascending. */
  guardPages: number[];
  isGuard: Uint8Array;
  /** Contiguous [offset, length) runs of guard pages. */
  guardRuns: Array<[number, number]>;
  nsBytes: Map<number, Uint8Array>;
  nsBlocks: Map<number, { lbaSize: number; blocks: number }>;
  state: State;
  arenaFills: Uint8Array[];
  nsFills: Map<number, Uint8Array[]>;
}

export let w: World;

/** Brings up the controller; every arena page the host does not own after that becomes a guard page. */
export async function setUpWorld(): Promise<void> {
  const backends = NAMESPACES.map((n) => new MemoryBackend({ size: n.size }));
  const h = await bringUp({
    arenaSize: ARENA_SIZE,
    namespaces: NAMESPACES.map((n, i) => ({ backend: backends[i]!, lbaSize: n.lbaSize, nsid: n.nsid })),
    controller: { mdts: MDTS },
  });
  const qp = await h.driver.createIoQueuePair({ entries: IO_ENTRIES });
  // Every page still free after bring-up becomes a guard page, owned by the test.
  const isGuard = new Uint8Array(ARENA_SIZE / PS);
  for (;;) {
    let b;
    try {
      b = h.arena.alloc(PS);
    } catch {
      break;
    }
    isGuard[b.offset / PS] = 1;
  }
  const guardPages = [...isGuard.keys()].filter((p) => isGuard[p] === 1);
  const guardRuns: Array<[number, number]> = [];
  for (const p of guardPages) {
    const last = guardRuns[guardRuns.length - 1];
    if (last && last[0] + last[1] === p * PS) last[1] += PS;
    else guardRuns.push([p * PS, PS]);
  }
  const nsBytes = new Map(NAMESPACES.map((n, i) => [n.nsid, new Uint8Array(backends[i]!.buffer)] as const));
  const nsBlocks = new Map(NAMESPACES.map((n) => [n.nsid, { lbaSize: n.lbaSize, blocks: n.size / n.lbaSize }] as const));
  w = {
    h,
    qp,
    base: BigInt(h.arena.base),
    end: BigInt(h.arena.base + h.arena.size),
    guardPages,
    isGuard,
    guardRuns,
    nsBytes,
    nsBlocks,
    state: { arena: h.arena.bytes.slice(), ns: new Map([...nsBytes].map(([k, v]) => [k, v.slice()])) },
    arenaFills: [1, 2, 3].map((s) => pattern(ARENA_SIZE, 100 + s)),
    nsFills: new Map(NAMESPACES.map((n) => [n.nsid, [1, 2, 3].map((s) => pattern(n.size, 200 * n.nsid + s))] as const)),
  };
}

export async function closeWorld(): Promise<void> {
  await w?.h.close();
}

/** Fills every guard page and both namespaces with a known pattern, in the real world and in the model. */
export function reset(seed: number): void {
  const fill = w.arenaFills[seed % w.arenaFills.length]!;
  for (const [off, len] of w.guardRuns) {
    w.h.arena.bytes.set(fill.subarray(off, off + len), off);
    w.state.arena.set(fill.subarray(off, off + len), off);
  }
  for (const [nsid, bytes] of w.nsBytes) {
    const f = w.nsFills.get(nsid)![seed % 3]!;
    bytes.set(f);
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

/** Guard pages and namespaces equal the model. */
export function checkWorld(what: string): void {
  for (const [off, len] of w.guardRuns) {
    const d = firstDiff(w.h.arena.bytes, w.state.arena, off, len);
    if (d >= 0) {
      throw new Error(`${what}: host memory changed outside the command's scope at arena offset 0x${d.toString(16)} (page ${d / PS | 0}): ` +
        `0x${w.h.arena.bytes[d]!.toString(16)}, model 0x${w.state.arena[d]!.toString(16)}`);
    }
  }
  for (const [nsid, bytes] of w.nsBytes) {
    const model = w.state.ns.get(nsid)!;
    const d = firstDiff(bytes, model, 0, bytes.length);
    if (d >= 0) {
      const lba = w.nsBlocks.get(nsid)!.lbaSize;
      throw new Error(`${what}: namespace ${nsid} differs from the model at byte ${d} (LBA ${Math.floor(d / lba)}): ${bytes[d]}, model ${model[d]}`);
    }
  }
}

export function cloneState(s: State): State {
  return { arena: s.arena.slice(), ns: new Map([...s.ns].map(([k, v]) => [k, v.slice()])) };
}

export async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no completion within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
