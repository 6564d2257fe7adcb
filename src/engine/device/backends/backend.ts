/**
 * What a namespace stores its blocks in. The controller speaks to a backend in
 * byte offsets and scatter lists of views on the DMA arena (zero copy); a
 * backend completes each operation exactly once through `done`, synchronously
 * (memory) or later (file). Errors carry what failed so the controller can pick
 * the NVMe status (read → Unrecovered Read Error, write → Write Fault).
 *
 * A backend that can submit to io_uring (a file) says so with `uring`: the
 * executing thread's ring set registers its descriptor and asks it for its
 * operations bound to one ring. The backend never looks for a ring itself.
 *
 * Opening a backend can fail with an ImageError (a bad argument, a busy or
 * missing image): an NvmqError whose stable `code` names the condition.
 */
import type { IoRing } from '../../uring/ring.js';
// Backend and image errors belong to the engine's one error module; the backends raise them from here.
export { ImageError, BackendError, fromSystemError, type BackendErrorKind, type IoDone } from '../../errors.js';
import type { IoDone } from '../../errors.js';

/** The data operations of a backend. */
export interface BlockIo {
  /** Reads `pos ..` into the segments, in order. */
  read(pos: number, segments: readonly Uint8Array[], done: IoDone): void;
  /** Writes the segments at `pos`; with `fua` the data is durable before `done`. */
  write(pos: number, segments: readonly Uint8Array[], fua: boolean, done: IoDone): void;
  /** Makes every completed write durable. */
  flush(done: IoDone): void;
  /** Zeroes [pos, pos + length); with `deallocate` the blocks may be unmapped. Reads of them return zeroes either way. */
  writeZeroes(pos: number, length: number, deallocate: boolean, done: IoDone): void;
  /** Deallocates [pos, pos + length); reads of deallocated blocks return zeroes (DLFEAT 001b). */
  deallocate(pos: number, length: number, done: IoDone): void;
}

/** The io_uring side of a backend that has one. */
export interface UringFile {
  /** The descriptor operations use (registered with each ring as a fixed file). */
  readonly fd: number;
  /** Opened with O_DIRECT: rings register the arena as a fixed buffer. */
  readonly direct: boolean;
  /** The backend's operations submitted to `ring`. */
  via(ring: IoRing): BlockIo;
}

export interface Backend extends BlockIo {
  readonly kind: 'memory' | 'file';
  /** Capacity in bytes. */
  readonly size: number;
  /** For logs and `nvmq` output: "memory 64 MiB", "file ./nvmq-data/default.img". */
  readonly description: string;
  readonly readOnly: boolean;
  /** Present when the backend can submit to io_uring. */
  readonly uring?: UringFile;
  /** Memory alignment transfers need (O_DIRECT); 1 when any will do. */
  readonly alignment: number;
  /** Closes the backend; for a file, releases its lock. Idempotent. */
  close(): Promise<void>;
  /**
   * Undoes the open, for when what was opened is not going to be used (the
   * open of the engine or controller failed after this backend was made):
   * closes it and, if this open created the image, removes the image, its
   * sidecar and the directories the open created (those still empty).
   * Otherwise (memory, an existing image, a view from a handle) the same as
   * close(). Safe after close(). What it cannot remove is reported as a
   * process warning (NVMQ_DISCARD_INCOMPLETE), never thrown over the failure
   * being handled.
   *
   * Called on a backend that is still open, or one closed after
   * prepareDiscard(), it removes the image under the claim this open holds:
   * nobody else can have opened the image in between. After a plain close()
   * the claim is gone and is taken again first; an image someone holds by
   * then stays, but one opened, used and closed again in between is removed.
   */
  discard(): Promise<void>;
  /**
   * Marks the backend for discard() (where a backend has a claim to keep):
   * close() then keeps the claim on an image this open created until
   * discard() removes it. For a caller whose failure path closes the backend
   * (by closing its controller) before discarding it.
   */
  prepareDiscard?(): void;
  /** What another thread needs to reach the same blocks (shared memory or the same file descriptor). */
  handle(): BackendHandle;
}

export type BackendHandle =
  | { kind: 'memory'; buffer: SharedArrayBuffer }
  | { kind: 'file'; fd: number; path: string; size: number; readOnly: boolean; direct: boolean };
