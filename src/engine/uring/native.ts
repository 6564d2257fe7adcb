/**
 * Loader for nvmq's optional native addon (build/Release/nvmq_native.node,
 * built from native/ by the package's install script).
 *
 * The addon is optional: when it is missing, fails to load, or is disabled
 * with NVMQ_DISABLE_NATIVE=1, loadNative() returns null and callers use the
 * portable (pure JS) path. nativeStatus() says which path is active and why.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** One io_uring (native/ring.h); driven by IoRing (src/engine/uring/ring.ts). */
export interface NativeRing {
  /** Submits the first `n` staged operations; returns completions now in the completion array, or -errno. */
  submit(n: number): number;
  /** Completions now in the completion array (no system call). */
  reap(): number;
  /** Calls `fn` on this thread's event loop when the ring's eventfd fires. */
  watch(fn: () => void): void;
  /** Cancels everything in flight and waits; returns what is still in flight after `timeoutMs`. */
  cancel(timeoutMs: number): number;
  close(): void;
  inflight(): number;
  /** Registers descriptors: operations may then name them by index (fixed files). 0 or -errno. */
  registerFiles(fds: Int32Array): number;
  /**
   * Polls for up to `spinUs` (default 0), then blocks in io_uring_enter until a completion or `timeoutUs`:
   * completions now in cqes (0 on timeout), or -errno.
   */
  wait(timeoutUs: number, spinUs?: number): number;
  /** The arena as fixed buffer 0 (READ_FIXED / WRITE_FIXED): 0 or -errno. */
  registerBuffers(): number;
  /** preadv2(RWF_NOWAIT) into the arena: bytes, -EAGAIN when not cached, or -errno. */
  readNowait(fd: number, offset: number, length: number, pos: number): number;
}

/** BAR0 or config space of a VFIO device (native/vfio.h VfioRegion). */
export interface NativeVfioRegion {
  size: number;
  /** Of the region in the device's file descriptor. */
  offset: number;
  /** VFIO_REGION_INFO_FLAG_* */
  flags: number;
}

/** A PCI device bound to vfio-pci, its container and IOMMU group open (native/vfio.h). */
export interface NativeVfio {
  regions(): { bar0: NativeVfioRegion; config: NativeVfioRegion };
  /** BAR0 mapped into the process, as an ArrayBuffer (the same one each call); detached by close(). */
  bar0(): ArrayBuffer;
  /** VFIO_IOMMU_MAP_DMA of the array's memory at `iova` (page aligned); throws an Error with `errno`. */
  mapDma(bytes: ArrayBufferView, iova: number): void;
  /** 0 or -errno. */
  unmapDma(iova: number): number;
  /** A config space value of `size` bytes, or -errno. */
  configRead(offset: number, size: 1 | 2 | 4): number;
  /** Bytes written, or -errno. */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): number;
  /** The device's file descriptor: process-wide, so another thread maps BAR0 from it (NativeVfioBar). */
  deviceFd(): number;
  /** MSI-X vectors the device has (VFIO_DEVICE_GET_IRQ_INFO; 0: none); throws an Error with `errno`. */
  msixCount(): number;
  /**
   * Attaches an eventfd to each of vectors [0, n) (VFIO_DEVICE_SET_IRQS), which enables MSI-X; returns
   * them by vector (process-wide: another thread watches its own with NativeVfioInterrupt). Throws an
   * Error with `errno`, nothing attached. close() detaches and closes them.
   */
  enableMsix(n: number): Int32Array;
  /** Unmaps BAR0 and every DMA mapping, closes the device, group and container. Idempotent. */
  close(): void;
}

/** A thread's own mapping of a VFIO device's BAR0, made from the device fd (native/vfio.h MapRegion). */
export interface NativeVfioBar {
  /** The mapping as an ArrayBuffer (the same one each call); detached by close(). */
  buffer(): ArrayBuffer;
  /** Detaches the ArrayBuffer and unmaps. Idempotent. */
  close(): void;
}

/** One MSI-X vector as the thread that handles it sees it: its own duplicate of the vector's eventfd. */
export interface NativeVfioInterrupt {
  /** fn() runs on this thread's event loop each time the vector fires; the watch holds the loop only while ref(true). */
  watch(fn: () => void): void;
  ref(held: boolean): void;
  /** Blocks this thread until the vector fires (1, its eventfd cleared) or `timeoutUs` passes (0); -errno. */
  wait(timeoutUs: number): number;
  /** Stops watching and closes the duplicate. Idempotent. */
  close(): void;
}

/** What the native addon exports. */
export interface NativeBinding {
  /**
   * fallocate(2). Returns 0 on success or a negative errno (e.g. -9 EBADF,
   * -95 EOPNOTSUPP); kernel errors never throw. Throws TypeError for
   * non-number arguments and RangeError for non-integers / out-of-range values
   * (fd and mode must fit in int32; offset and length must be safe integers).
   */
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /** fcntl(fd, F_DUPFD_CLOEXEC): a new descriptor of the same open file, or a negative errno. */
  dupFd(fd: number): number;
  /** FALLOC_FL_KEEP_SIZE from the platform's <linux/falloc.h>. */
  readonly FALLOC_FL_KEEP_SIZE: number;
  /** FALLOC_FL_PUNCH_HOLE from the platform's <linux/falloc.h>. */
  readonly FALLOC_FL_PUNCH_HOLE: number;
  /** FALLOC_FL_ZERO_RANGE from the platform's <linux/falloc.h>. */
  readonly FALLOC_FL_ZERO_RANGE: number;
  /** True when the addon was built with liburing. */
  readonly ioUring: boolean;
  /** Throws an Error with `errno` when the kernel refuses io_uring. */
  readonly Ring: new (arena: Uint8Array, entries: number, ops: Float64Array, segs: Float64Array, cqes: Int32Array) => NativeRing;
  /** Address of the array's first byte modulo 4096. */
  pageOffsetOf(bytes: ArrayBufferView): number;
  /**
   * memcpy of `length` bytes from `src` at `srcOffset` to `dst` at `dstOffset` (offsets within the views),
   * shared memory or not; a range outside either view throws a RangeError, copying nothing. Absent in an
   * addon older than it.
   */
  readonly copyBytes?: (dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number) => void;
  /** True when the addon was built with <linux/vfio.h>; absent in an addon older than VFIO. */
  readonly vfio?: boolean;
  /** Opens a device: new Vfio('/dev/vfio/1', '0000:00:01.0'); throws an Error with `errno` and a one-line reason. */
  readonly Vfio?: new (groupPath: string, pci: string) => NativeVfio;
  /** Maps BAR0 again from a device fd this process holds: new VfioBar(fd, offset, size); throws an Error with `errno`. */
  readonly VfioBar?: new (deviceFd: number, offset: number, size: number) => NativeVfioBar;
  /** Watches an MSI-X vector's eventfd from this thread: new VfioInterrupt(fd) (a duplicate of it); throws an Error with `errno`. */
  readonly VfioInterrupt?: new (eventfd: number) => NativeVfioInterrupt;
  /** Tests: checkpoint `step` (1-based) of the next VFIO open, BAR0 map, DMA map or MSI-X enable fails with EIO; 0: none. */
  readonly vfioInjectFailure?: (step: number) => void;
}

export interface NativeStatus {
  loaded: boolean;
  /** Why the native path is not active; absent when loaded. */
  reason?: string;
}

// src/engine/uring/native.ts and dist/engine/uring/native.js are both three levels below
// the package root, so this resolves to <root>/build/Release/ in both cases.
const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/nvmq_native.node', import.meta.url));

interface LoadResult {
  binding: NativeBinding | null;
  reason?: string;
}

let cached: LoadResult | undefined;

function isNativeBinding(x: unknown): x is NativeBinding {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  return (
    typeof o.fallocate === 'function' &&
    typeof o.dupFd === 'function' &&
    typeof o.FALLOC_FL_KEEP_SIZE === 'number' &&
    typeof o.FALLOC_FL_PUNCH_HOLE === 'number' &&
    typeof o.FALLOC_FL_ZERO_RANGE === 'number' &&
    typeof o.ioUring === 'boolean' &&
    typeof o.Ring === 'function' &&
    typeof o.pageOffsetOf === 'function'
  );
}

function tryLoad(): LoadResult {
  if (!existsSync(ADDON_PATH)) {
    return { binding: null, reason: `native addon not built (${ADDON_PATH} is missing)` };
  }
  try {
    const mod: unknown = createRequire(import.meta.url)(ADDON_PATH);
    if (!isNativeBinding(mod)) {
      return { binding: null, reason: `native addon at ${ADDON_PATH} has unexpected exports` };
    }
    return { binding: mod };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return { binding: null, reason: `native addon failed to load: ${msg}` };
  }
}

function isDisabled(): boolean {
  return process.env.NVMQ_DISABLE_NATIVE === '1';
}

function resolve(): LoadResult {
  // The env switch is read on every call (cheap) so it can be flipped at run
  // time; the load attempt itself happens once and is cached.
  if (isDisabled()) return { binding: null, reason: 'disabled by NVMQ_DISABLE_NATIVE=1' };
  cached ??= tryLoad();
  return cached;
}

/** The native addon, or null when it is unavailable or disabled. */
export function loadNative(): NativeBinding | null {
  return resolve().binding;
}

/** The addon's VFIO classes. */
export type NativeVfioClasses = Required<Pick<NativeBinding, 'Vfio' | 'VfioBar' | 'VfioInterrupt'>>;

/** The addon's VFIO classes, or why there are none (no addon, an addon built before VFIO or its interrupts, not Linux). */
export function loadVfio(): NativeVfioClasses | { reason: string } {
  const r = resolve();
  if (r.binding === null) return { reason: r.reason ?? 'native addon unavailable' };
  const { Vfio, VfioBar, VfioInterrupt, vfio } = r.binding;
  if (typeof Vfio !== 'function' || typeof VfioBar !== 'function' || typeof VfioInterrupt !== 'function' || typeof vfio !== 'boolean') {
    return { reason: `native addon at ${ADDON_PATH} has no VFIO exports (built before VFIO support: run npm run install)` };
  }
  if (!vfio) return { reason: 'the native addon was built without VFIO (<linux/vfio.h> missing)' };
  return { Vfio, VfioBar, VfioInterrupt };
}

/** Whether the native path is active, and if not, why. */
export function nativeStatus(): NativeStatus {
  const r = resolve();
  return r.binding !== null ? { loaded: true } : { loaded: false, reason: r.reason ?? 'unknown' };
}
