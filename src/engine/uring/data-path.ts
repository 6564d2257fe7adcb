/**
 * Which way file namespaces reach the kernel in this process: io_uring when
 * the addon has it and the kernel allows it, else the portable node:fs path,
 * and the one notice that says so.
 */
import { loadNative, nativeStatus, type NativeBinding } from './native.js';

/** Which way file namespaces reach the kernel. */
export type DataPath = 'io_uring' | 'portable';

export interface DataPathStatus {
  path: DataPath;
  /** Why io_uring is not used; absent when it is. */
  reason?: string;
}

let uringProbe: string | null | undefined;

/** Sets up (and tears down) a small ring: null when the kernel allows io_uring, else why not. */
function probeUring(n: NativeBinding): string | null {
  if (!n.ioUring) return 'the native addon was built without liburing (install liburing-dev, then npm ci)';
  try {
    const arena = new Uint8Array(new SharedArrayBuffer(4096));
    const ring = new n.Ring(arena, 8, new Float64Array(64), new Float64Array(16), new Int32Array(16));
    ring.close();
    return null;
  } catch (e) {
    return `the kernel refused io_uring: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * The data path file namespaces take in this thread: io_uring when the addon
 * has it and the kernel allows it, else the portable node:fs path (and why).
 */
export function dataPathStatus(): DataPathStatus {
  const n = loadNative();
  if (!n) return { path: 'portable', reason: nativeStatus().reason ?? 'native addon unavailable' };
  uringProbe ??= probeUring(n);
  return uringProbe === null ? { path: 'io_uring' } : { path: 'portable', reason: uringProbe };
}

let warned = false;

let portableNotice = (message: string): void => {
  process.emitWarning(message, { code: 'NVMQ_PORTABLE_DATA_PATH' });
};

/**
 * Says that file I/O takes the portable node:fs path, and why: a process
 * warning (code NVMQ_PORTABLE_DATA_PATH), unless taken over in this thread.
 */
export function notePortable(message: string): void {
  portableNotice(message);
}

/**
 * Hands this thread's portable-path notice to `fn` instead of a process
 * warning: the `nvmq` command prints it as a plain line of its own.
 */
export function takePortableNotice(fn: (message: string) => void): void {
  portableNotice = fn;
}

/**
 * Resolves a requested data path. 'auto' takes io_uring when available and
 * otherwise falls back, saying so once per process (notePortable) unless
 * the fallback was asked for (NVMQ_DISABLE_NATIVE=1); 'io_uring' throws when
 * it is unavailable.
 */
export function resolveDataPath(wanted: DataPath | 'auto'): DataPath {
  if (wanted === 'portable') return 'portable';
  const st = dataPathStatus();
  if (st.path === 'io_uring') return 'io_uring';
  if (wanted === 'io_uring') {
    const err = new Error(`io_uring data path unavailable: ${st.reason ?? 'unknown'}`) as Error & { code: string };
    err.code = 'NVMQ_IO_URING_UNAVAILABLE';
    throw err;
  }
  if (!warned && process.env.NVMQ_DISABLE_NATIVE !== '1') {
    warned = true;
    notePortable(`io_uring is unavailable (${st.reason ?? 'unknown'}); file namespaces use the portable node:fs path`);
  }
  return 'portable';
}
