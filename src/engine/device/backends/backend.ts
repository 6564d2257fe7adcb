/**
 * What a namespace stores its blocks in. The controller speaks to a backend in
 * byte offsets and scatter lists of views on the DMA arena (zero copy); a
 * backend completes each operation exactly once through `done`, synchronously
 * (memory) or later (file). Errors carry what failed so the controller can pick
 * the NVMe status (read → Unrecovered Read Error, write → Write Fault).
 *
 * Each operation may be given the io_uring of the submission queue being
 * executed; a backend that can use it submits there, the others ignore it.
 *
 * Opening a backend can fail with an ImageError (a bad argument, a busy or
 * missing image): an NvmqError whose stable `code` names the condition.
 */
import type { IoRing } from '../../uring/ring.js';
// Image errors belong to the engine's one error module; the backends raise them from here.
export { ImageError } from '../../errors.js';

/** `aborted`: the operation was cancelled (its ring torn down) before it finished. */
export type BackendErrorKind = 'read' | 'write' | 'no-space' | 'aborted' | 'internal';

export class BackendError extends Error {
  readonly kind: BackendErrorKind;
  readonly errno: string | undefined;
  constructor(kind: BackendErrorKind, message: string, errno?: string) {
    super(message);
    this.name = 'BackendError';
    this.kind = kind;
    this.errno = errno;
  }
}

export type IoDone = (err: BackendError | null) => void;

export interface Backend {
  readonly kind: 'memory' | 'file';
  /** Capacity in bytes. */
  readonly size: number;
  /** For logs and `nvmq` output: "memory 64 MiB", "file ./nvmq-data/default.img". */
  readonly description: string;
  readonly readOnly: boolean;
  /** Reads `pos ..` into the segments, in order. */
  read(pos: number, segments: readonly Uint8Array[], done: IoDone, ring?: IoRing): void;
  /** Writes the segments at `pos`; with `fua` the data is durable before `done`. */
  write(pos: number, segments: readonly Uint8Array[], fua: boolean, done: IoDone, ring?: IoRing): void;
  /** Makes every completed write durable. */
  flush(done: IoDone, ring?: IoRing): void;
  /** Zeroes [pos, pos + length); with `deallocate` the blocks may be unmapped. Reads of them return zeroes either way. */
  writeZeroes(pos: number, length: number, deallocate: boolean, done: IoDone, ring?: IoRing): void;
  /** Deallocates [pos, pos + length); reads of deallocated blocks return zeroes (DLFEAT 001b). */
  deallocate(pos: number, length: number, done: IoDone, ring?: IoRing): void;
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

/** Error from a Node.js system call as a backend error of the given kind. */
export function fromSystemError(kind: 'read' | 'write', err: NodeJS.ErrnoException): BackendError {
  const k: BackendErrorKind = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'no-space' : kind;
  return new BackendError(k, `${kind} failed: ${err.message}`, err.code);
}
