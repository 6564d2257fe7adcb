/**
 * One io_uring of the native data path, as the controller uses it for one
 * I/O submission queue in one thread.
 *
 * Operations are staged into a Float64Array the addon reads (no object
 * crosses into C++), addressed by offsets into the DMA arena's
 * SharedArrayBuffer: the kernel moves data straight between the file and the
 * memory the host's PRPs point at. `submit()` hands everything staged to the
 * kernel with one io_uring_enter (once per doorbell; an O_DIRECT file's operations each as staged, see submitEach()) and completes what the
 * kernel finished inline (page-cache hits); `poll()` reaps the completion
 * ring without a system call. The rest arrive through the ring's eventfd,
 * which the addon watches from this thread's event loop: an I/O never waits
 * for another thread to wake.
 *
 * Short transfers are continued, a read at the end of a file that shrank
 * reads as zeroes, and every kernel error reaches `done` as a BackendError
 * whose kind picks the NVMe status.
 */
import { debuglog } from 'node:util';
import type { DmaArena } from '../dma-arena.js';
import type { NativeBinding, NativeRing } from './native.js';
import { BackendError, type BackendErrorKind, type IoDone } from '../errors.js';

const trace = debuglog('nvmq');

// What the addon and this file must agree on, written again in native/ring.h (and ring.cc):
// test/engine/uring/layout.test.ts reads the header and checks every name and value below against it.

/** Doubles per staged operation (ring.h kOpWords); F_* are their indices (ring.h RingField kOp*). */
export const OP_WORDS = 8;
/** Opcode: one of OP_*. */
export const F_CODE = 0;
/** File descriptor, or with F_FIXED the index of a registered one. */
export const F_FD = 1;
/** 32-bit tag returned with the completion. */
export const F_USER = 2;
/** File offset in bytes. */
export const F_POS = 3;
/** Read / write: arena offset; readv / writev: index of the first segment. */
export const F_ADDR = 4;
/** Read / write / fallocate: bytes; readv / writev: segment count. */
export const F_LEN = 5;
/** Read / write: RWF_* flags; fsync: IORING_FSYNC_*; fallocate: mode. */
export const F_FLAGS = 6;
/** 1: F_FD is an index into the registered files. */
export const F_FIXED = 7;

// Opcodes of staged operations (ring.h RingOpcode kRing*).
export const OP_READ = 1;
export const OP_WRITE = 2;
export const OP_READV = 3;
export const OP_WRITEV = 4;
export const OP_FSYNC = 5;
export const OP_FALLOCATE = 6;

/** Doubles per readv / writev segment: (arena offset, length) (ring.h kSegWords). */
export const SEG_WORDS = 2;
/** IOV_MAX: segments per readv / writev, past which the addon refuses an operation (ring.h kMaxSegments). */
export const MAX_IOV = 1024;
/** The most submission slots a ring may have (ring.h kMaxEntries). */
export const MAX_RING_ENTRIES = 4096;
/** The longest spin wait() accepts before it sleeps (ring.h kMaxSpinUs): the transport's limit. */
export { MAX_SPIN_US } from '../transport/transport.js';

/** RWF_DSYNC from <linux/fs.h>: the write is durable when it completes (FUA). */
const RWF_DSYNC = 0x2;
/** IORING_FSYNC_DATASYNC: fdatasync. */
const FSYNC_DATASYNC = 0x1;
const ECANCELED = 125;
const ENOSPC = 28;
const EDQUOT = 122;

/** How long a teardown waits for the kernel to give operations back. */
const CANCEL_TIMEOUT_MS = 30_000;
/** The longest single wait() in the kernel (an hour, in microseconds). */
const MAX_WAIT_US = 3_600_000_000;

const ERRNO_NAMES: Record<number, string> = { 5: 'EIO', 9: 'EBADF', 14: 'EFAULT', 22: 'EINVAL', 27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 95: 'EOPNOTSUPP', 122: 'EDQUOT', 125: 'ECANCELED' };

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** 'device-read': a read of a block device, where end of file is an error rather than a hole. */
type Kind = 'read' | 'device-read' | 'write' | 'sync' | 'fallocate';
type TransferKind = 'read' | 'device-read' | 'write';

/** An operation between staging and completion: one per tag, reused when the tag is (no allocation per I/O). */
interface Pending {
  kind: Kind;
  fd: number;
  pos: number;
  /** read / write: the scatter list still to transfer. */
  segs: readonly Uint8Array[];
  want: number;
  flags: number;
  /** Undefined while the tag is free. */
  done: IoDone | undefined;
}

const NO_SEGMENTS: readonly Uint8Array[] = [];

export class IoRing {
  private readonly ring: NativeRing;
  private readonly ops: Float64Array;
  private readonly segs: Float64Array;
  private readonly cqes: Int32Array;
  private readonly capacity: number;
  private staged = 0;
  private segsUsed = 0;
  private readonly slots: Pending[] = [];
  private readonly freeTags: number[] = [];
  private closed = false;
  /** The staged count just after a read of a cached file was staged (the lone-read fast path's test). */
  private cachedRead = 0;
  /** Buffer offset of arena byte 0: segment views carry buffer offsets, the addon wants arena ones. */
  private readonly skew: number;
  /** Copies of completion batches being dispatched, one per nesting level. */
  private readonly batches: Int32Array[] = [];
  private nesting = 0;
  /** Registered-file index by descriptor (fixed files), where registered. */
  private readonly fixed: number[] = [];
  /** Descriptors whose operations go to the kernel as they are staged (submitEach). */
  private readonly each: boolean[] = [];

  constructor(
    native: NativeBinding,
    arena: DmaArena,
    entries: number,
    /** Runs after completions arrived through the eventfd were dispatched. */
    onEvent?: () => void,
  ) {
    const size = Math.min(MAX_RING_ENTRIES, Math.max(8, 2 ** Math.ceil(Math.log2(entries))));
    this.capacity = size;
    this.skew = arena.skew;
    this.ops = new Float64Array(size * OP_WORDS);
    this.segs = new Float64Array(Math.max(size * 16, MAX_IOV) * SEG_WORDS);
    this.cqes = new Int32Array(size * 4 * 2);
    this.ring = new native.Ring(arena.bytes, size, this.ops, this.segs, this.cqes);
    this.ring.watch(() => {
      this.poll();
      onEvent?.();
    });
  }

  /**
   * Registers the descriptors this ring will use (the namespaces' files):
   * operations on them then name an index, and the kernel takes no file
   * reference per operation, an atomic counter the threads sharing a file
   * would otherwise all write. Returns false when the kernel refuses (the
   * descriptors are then used as they are).
   */
  registerFiles(fds: readonly number[]): boolean {
    if (fds.length === 0) return true;
    const rc = this.ring.registerFiles(Int32Array.from(fds));
    if (rc < 0) {
      trace('io_uring file registration failed: %s', errnoName(-rc));
      return false;
    }
    fds.forEach((fd, i) => (this.fixed[fd] = i));
    return true;
  }

  /**
   * Operations on these descriptors (O_DIRECT files: each one a device
   * request) go to the kernel one by one, each as the next is staged and
   * the last with submit() (so a lone one takes the path it always did),
   * rather than together when the doorbell's commands have all been fetched: the device starts on the first command of a
   * batch while the controller still executes the rest, as fio's default
   * `iodepth_batch_submit=1` does. A batch of 32 handed over at once is
   * served as one, and the device idles while the host turns the batch
   * around (see docs/ARCHITECTURE.md).
   */
  submitEach(fds: readonly number[]): void {
    for (const fd of fds) this.each[fd] = true;
  }

  /**
   * Registers the arena with the ring (fixed buffer 0): single-buffer reads
   * and writes then use READ_FIXED / WRITE_FIXED, and the kernel pins the
   * arena once rather than each transfer's pages per operation. Returns
   * false when the kernel refuses (RLIMIT_MEMLOCK, say): transfers then go
   * as they are.
   */
  registerBuffers(): boolean {
    const rc = this.ring.registerBuffers();
    if (rc < 0) trace('io_uring buffer registration failed: %s', errnoName(-rc));
    this.buffersRegistered = rc === 0;
    return this.buffersRegistered;
  }

  /** Whether the arena is registered with the ring (registerBuffers). */
  get fixedBuffers(): boolean {
    return this.buffersRegistered;
  }

  private buffersRegistered = false;

  /** Operations handed to the kernel and not yet reaped. */
  get inflight(): number {
    return this.ring.inflight();
  }

  /**
   * `pastEnd`: what a read at end of file means (zeroes for a file that
   * shrank, an error for a device). `cached`: the file goes through the page
   * cache (not O_DIRECT), so a lone read may be served without the ring.
   */
  read(fd: number, pos: number, segments: readonly Uint8Array[], done: IoDone, pastEnd: 'zeroes' | 'error' = 'zeroes', cached = false): void {
    this.stageTransfer(pastEnd === 'zeroes' ? 'read' : 'device-read', fd, pos, segments, 0, done);
    if (cached) this.cachedRead = this.staged;
  }

  /** With `dsync` the data is durable when `done` runs (RWF_DSYNC: NVMe FUA). */
  write(fd: number, pos: number, segments: readonly Uint8Array[], dsync: boolean, done: IoDone): void {
    this.stageTransfer('write', fd, pos, segments, dsync ? RWF_DSYNC : 0, done);
  }

  fdatasync(fd: number, done: IoDone): void {
    const tag = this.tag('sync', fd, 0, NO_SEGMENTS, 0, 0, done);
    this.stage(OP_FSYNC, fd, tag, 0, 0, 0, FSYNC_DATASYNC);
  }

  /** `done` gets a BackendError with `errno` set when the file system refuses the mode. */
  fallocate(fd: number, mode: number, pos: number, length: number, done: IoDone): void {
    const tag = this.tag('fallocate', fd, pos, NO_SEGMENTS, length, mode, done);
    this.stage(OP_FALLOCATE, fd, tag, pos, 0, length, mode);
  }

  private tag(kind: Kind, fd: number, pos: number, segs: readonly Uint8Array[], want: number, flags: number, done: IoDone): number {
    const tag = this.freeTags.length > 0 ? this.freeTags.pop()! : this.slots.length;
    const p = this.slots[tag];
    if (p === undefined) {
      this.slots[tag] = { kind, fd, pos, segs, want, flags, done };
    } else {
      p.kind = kind;
      p.fd = fd;
      p.pos = pos;
      p.segs = segs;
      p.want = want;
      p.flags = flags;
      p.done = done;
    }
    return tag;
  }

  private stageTransfer(kind: TransferKind, fd: number, pos: number, segs: readonly Uint8Array[], flags: number, done: IoDone): void {
    let want = 0;
    for (let i = 0; i < segs.length; i++) want += segs[i]!.length;
    if (want === 0) return done(null);
    const tag = this.tag(kind, fd, pos, segs, want, flags, done);
    this.stageSegments(kind, fd, tag, pos, segs, flags);
  }

  private stageSegments(kind: TransferKind, fd: number, tag: number, pos: number, segs: readonly Uint8Array[], flags: number): void {
    // Pages that follow each other in the arena go as one buffer. Past IOV_MAX buffers the kernel
    // transfers a prefix, and the short-transfer path sends the rest.
    let runs = 1;
    let take = segs.length;
    for (let i = 1; i < segs.length; i++) {
      const prev = segs[i - 1]!;
      if (segs[i]!.byteOffset !== prev.byteOffset + prev.length) {
        if (runs === MAX_IOV) {
          take = i;
          break;
        }
        runs++;
      }
    }
    if (runs === 1) {
      const first = segs[0]!;
      const last = segs[take - 1]!;
      const len = last.byteOffset + last.length - first.byteOffset;
      this.stage(kind === 'write' ? OP_WRITE : OP_READ, fd, tag, pos, first.byteOffset - this.skew, len, flags);
      return;
    }
    // Whatever goes to the kernel ahead of this operation goes before its segments are written: a submit
    // frees the whole segment table, which must not happen once `at` points into it.
    this.submitAhead(fd);
    if (this.segsUsed + runs * SEG_WORDS > this.segs.length) this.submit();
    const at = this.segsUsed / SEG_WORDS;
    let w = this.segsUsed;
    for (let i = 0; i < take; i++) {
      const s = segs[i]!;
      const addr = s.byteOffset - this.skew;
      if (i > 0 && addr === this.segs[w - 2]! + this.segs[w - 1]!) {
        this.segs[w - 1] = this.segs[w - 1]! + s.length;
      } else {
        this.segs[w++] = addr;
        this.segs[w++] = s.length;
      }
    }
    this.segsUsed = w;
    this.stage(kind === 'write' ? OP_WRITEV : OP_READV, fd, tag, pos, at, runs, flags);
  }

  /**
   * Hands what is staged to the kernel before an operation on `fd` is
   * staged, when the ring is full or `fd` is an O_DIRECT file (submitEach):
   * an O_DIRECT operation sends the ones ahead of it on their way; the last
   * of a doorbell goes with submit() as a lone one always did. Inside a
   * completion batch, follow-ups (the rest of a short transfer) go once it
   * is dispatched.
   */
  private submitAhead(fd: number): void {
    if (this.staged === this.capacity || (this.staged > 0 && this.each[fd] === true && this.nesting === 0)) this.submit();
  }

  private stage(code: number, fd: number, tag: number, pos: number, addr: number, len: number, flags: number): void {
    if (this.closed) {
      const p = this.slots[tag]!;
      this.finish(tag, p, errorOf(p.kind, ECANCELED));
      return;
    }
    this.submitAhead(fd);
    const o = this.staged++ * OP_WORDS;
    const ops = this.ops;
    const index = this.fixed[fd];
    ops[o + F_CODE] = code;
    ops[o + F_FD] = index ?? fd;
    ops[o + F_FIXED] = index === undefined ? 0 : 1;
    ops[o + F_USER] = tag;
    ops[o + F_POS] = pos;
    ops[o + F_ADDR] = addr;
    ops[o + F_LEN] = len;
    ops[o + F_FLAGS] = flags;
  }

  /**
   * Hands everything staged to the kernel (one io_uring_enter) and completes
   * what it finished at once. Cheap when nothing is staged.
   */
  submit(): void {
    // A completion of the fast path may stage follow-ups: the loop below submits them.
    if (this.staged === 1 && this.cachedRead === 1 && this.ops[F_CODE] === OP_READ) this.readCached();
    this.cachedRead = 0;
    while (this.staged > 0) {
      const n = this.staged;
      this.staged = 0;
      this.segsUsed = 0;
      const k = this.ring.submit(n);
      // A failed io_uring_enter leaves the operations queued in the ring; they go with the next call.
      if (k < 0) trace('io_uring_enter failed: %s; retrying with the next batch', errnoName(-k));
      else if (k > 0) this.dispatch(k);
    }
  }

  /**
   * The fast path for a doorbell that fetched one read of a cached file: a
   * non-blocking preadv2 (RWF_NOWAIT) on this thread. A page-cache hit
   * completes with one plain system call and no ring round trip (about 20%
   * more reads per second at depth 1); a miss (EAGAIN) or short read goes to
   * the ring as staged. Batches always go to the ring, where one
   * io_uring_enter serves them all (about 15% faster at depth 32).
   */
  private readCached(): void {
    const o = this.ops;
    const want = o[F_LEN]!;
    const tag = o[F_USER]!;
    const p = this.slots[tag]!;
    // The descriptor itself (the staged one may be a registered-file index).
    const rc = this.ring.readNowait(p.fd, o[F_ADDR]!, want, o[F_POS]!);
    if (rc !== want) return;
    this.staged = 0;
    this.cachedRead = 0;
    this.finish(tag, p, null);
  }

  /**
   * Blocks the thread in io_uring_enter until an operation completes or
   * `timeoutMs` passes, then completes what finished. Returns how many (0 at
   * once with nothing in flight). With `spinUs` > 0 the thread first polls
   * the ring for up to that long (hybrid polling, see QueuePair.wait).
   */
  wait(timeoutMs: number, spinUs = 0): number {
    if (this.closed || this.ring.inflight() === 0) return this.poll();
    const k = this.ring.wait(Math.min(Math.max(0, Math.round(timeoutMs * 1000)), MAX_WAIT_US), spinUs);
    if (k < 0) trace('io_uring wait failed: %s', errnoName(-k));
    // dispatch() reaps until the ring is empty; what the completions staged (the rest of a short transfer) goes now.
    const n = k > 0 ? this.dispatch(k) : 0;
    if (this.staged > 0) this.submit();
    return n;
  }

  /** Completes whatever the kernel has finished, without a system call. Returns how many. */
  poll(): number {
    let total = 0;
    for (;;) {
      const k = this.ring.reap();
      if (k <= 0) break;
      total += this.dispatch(k);
    }
    // Completions may have staged follow-ups (the rest of a short transfer).
    if (this.staged > 0) this.submit();
    return total;
  }

  /** Completes the first `k` entries of the completion array, then reaps until the ring is empty. */
  private dispatch(k: number): number {
    // A completion can submit (and so reap) again before this batch is done, and the addon writes every
    // batch into the same array: this one's results are copied first, into a buffer kept per nesting
    // level (a fresh copy per batch would be an ArrayBuffer allocation per doorbell).
    const level = this.nesting++;
    const batch = (this.batches[level] ??= new Int32Array(this.cqes.length));
    let total = 0;
    try {
      while (k > 0) {
        const n = k * 2;
        const cqes = this.cqes;
        for (let i = 0; i < n; i++) batch[i] = cqes[i]!;
        for (let i = 0; i < n; i += 2) this.complete(batch[i]!, batch[i + 1]!);
        total += k;
        k = this.ring.reap();
      }
    } finally {
      this.nesting--;
    }
    return total;
  }

  private complete(tag: number, res: number): void {
    const p = this.slots[tag];
    if (p?.done === undefined) {
      trace('io_uring completion for unknown tag %d (result %d)', tag, res);
      return;
    }
    if (res >= 0 && p.kind !== 'sync' && p.kind !== 'fallocate' && res < p.want) {
      if (res === 0) {
        if (p.kind === 'read') {
          // Past the end of a file that shrank under us: the hole reads as zeroes.
          for (const s of p.segs) s.fill(0);
          return this.finish(tag, p, null);
        }
        if (p.kind === 'device-read') return this.finish(tag, p, new BackendError('read', `read past the end of the device at ${p.pos}`, 'EIO'));
        return this.finish(tag, p, new BackendError('write', `write made no progress at ${p.pos}`, 'EIO'));
      }
      // A short transfer: the rest goes as a new operation under the same tag.
      p.segs = advance(p.segs, res);
      p.pos += res;
      p.want -= res;
      this.stageSegments(p.kind, p.fd, tag, p.pos, p.segs, p.flags);
      return;
    }
    this.finish(tag, p, res < 0 ? errorOf(p.kind, -res) : null);
  }

  private finish(tag: number, p: Pending, err: BackendError | null): void {
    const done = p.done!;
    p.done = undefined;
    p.segs = NO_SEGMENTS;
    this.freeTags.push(tag);
    done(err);
  }

  /**
   * Tears the ring down. Operations still in flight are cancelled and waited
   * for: each completes through its `done` (as aborted unless the kernel had
   * finished it), so no command is left hanging and no late transfer touches
   * host memory afterwards.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.ring.inflight() > 0) {
        const left = this.ring.cancel(CANCEL_TIMEOUT_MS);
        if (left > 0) trace('io_uring teardown: %d operations still in the kernel after %d ms', left, CANCEL_TIMEOUT_MS);
      }
      this.poll();
    } finally {
      this.ring.close();
      // Anything never handed over (or lost with a timed-out cancel) is aborted.
      for (let tag = 0; tag < this.slots.length; tag++) {
        const p = this.slots[tag]!;
        if (p.done !== undefined) this.finish(tag, p, errorOf(p.kind, ECANCELED));
      }
      this.staged = 0;
    }
  }
}

/** The backend error for a failed operation: the kind picks the NVMe status. */
function errorOf(kind: Kind, errno: number): BackendError {
  const name = errnoName(errno);
  let k: BackendErrorKind;
  if (errno === ECANCELED) k = 'aborted';
  else if (errno === ENOSPC || errno === EDQUOT) k = 'no-space';
  else k = kind === 'read' || kind === 'device-read' ? 'read' : 'write';
  const what = kind === 'sync' ? 'fdatasync' : kind === 'device-read' ? 'read' : kind;
  return new BackendError(k, `${what} failed: ${name}`, name);
}

/** Drops the first `n` bytes from a scatter list. */
export function advance(segs: readonly Uint8Array[], n: number): Uint8Array[] {
  let left = n;
  let i = 0;
  while (i < segs.length && left >= segs[i]!.length) {
    left -= segs[i]!.length;
    i++;
  }
  const rest = segs.slice(i);
  if (left > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(left);
  return rest;
}
