/**
 * A namespace in a regular file or block device. Two data paths reach it:
 *
 * - the io_uring path: the executing thread's ring set binds the operations to
 *   the ring of the submission queue being executed (`uring.via`), and reads, writes, fdatasync and fallocate go
 *   to the kernel from this thread, straight between the file and the DMA
 *   arena's shared memory;
 * - the portable path: node:fs (libuv's thread pool), also zero copy.
 *
 * Flush is fdatasync, FUA a synchronous-data write (RWF_DSYNC) on the ring or
 * a write then fdatasync on node:fs. Write Zeroes and Deallocate punch holes /
 * zero ranges with fallocate(2) where the file system supports the mode, and
 * fall back to writing zeroes otherwise.
 */
import * as fs from 'node:fs';
import type { Backend, BackendHandle, IoDone, UringFile } from './backend.js';
import { BackendError, ImageError, fromSystemError } from './backend.js';
import { blockDeviceSize, discardImage, openImage, releaseImage, type ImageOptions, type OpenedImage } from './image.js';
import { loadNative } from '../../uring/native.js';
import { advance, type IoRing } from '../../uring/ring.js';

const ZERO_CHUNK = 1 << 20;
let zeroChunk: Uint8Array | undefined;

/** 1 MiB of zeroes on a page boundary (O_DIRECT needs aligned memory). */
function zeroes(): Uint8Array {
  if (zeroChunk) return zeroChunk;
  const buf = new SharedArrayBuffer(ZERO_CHUNK + 4096);
  const n = loadNative();
  const skew = n ? (4096 - n.pageOffsetOf(new Uint8Array(buf))) % 4096 : 0;
  zeroChunk = new Uint8Array(buf, skew, ZERO_CHUNK);
  return zeroChunk;
}

export interface FileBackendOptions extends ImageOptions {
  /** Open with O_DIRECT: transfers bypass the page cache (memory must be aligned; the engine's is). */
  direct?: boolean | undefined;
}

export class FileBackend implements Backend {
  readonly kind = 'file' as const;
  readonly size: number;
  readonly path: string;
  readonly readOnly: boolean;
  /** Opened with O_DIRECT. */
  readonly direct: boolean;
  readonly image: OpenedImage;
  private fd: number;
  /** False for a view on another thread's descriptor: close() leaves it open. */
  private readonly ownsFd: boolean;
  /** Set once the file system has refused a fallocate mode, so the zero-write path is used from then on. */
  private punchUnsupported = false;
  private zeroRangeUnsupported = false;
  /** Set by prepareDiscard(): close() keeps the claim of an image this open created, for discard() to remove it under. */
  private discardPending = false;

  constructor(opts: FileBackendOptions | { handle: Extract<BackendHandle, { kind: 'file' }> }) {
    if ('handle' in opts) {
      const h = opts.handle;
      // The descriptor says what it is: a view in a worker treats a block device's end as the medium's end too.
      const blockDevice = fs.fstatSync(h.fd).isBlockDevice();
      this.image = { fd: h.fd, path: h.path, size: h.size, created: false, blockDevice, readOnly: h.readOnly };
      this.ownsFd = false;
      this.direct = h.direct;
    } else {
      this.direct = opts.direct ?? false;
      if (this.direct && !loadNative()) {
        // Without the addon nothing can place buffers on the boundaries O_DIRECT needs.
        throw new ImageError('NVMQ_DIRECT_UNSUPPORTED', `direct: true needs nvmq's native addon, which is unavailable (${opts.path})`);
      }
      const extra = this.direct ? (fs.constants.O_DIRECT ?? 0) : 0;
      this.image = openImage({ ...opts, extraFlags: extra });
      this.ownsFd = true;
    }
    this.fd = this.image.fd;
    this.size = this.image.size;
    this.path = this.image.path;
    this.readOnly = this.image.readOnly;
  }

  get description(): string {
    return `file ${this.path}${this.direct ? ' (O_DIRECT)' : ''}`;
  }

  /** The open descriptor (-1 once closed), for registering with a ring. */
  get descriptor(): number {
    return this.fd;
  }

  /** O_DIRECT transfers need sector-aligned memory (512 bytes; the engine's buffers are page aligned). */
  get alignment(): number {
    return this.direct ? 512 : 1;
  }

  /** An error for calls after close(): backends report through `done`, never by throwing. */
  private closed(kind: 'read' | 'write'): BackendError | undefined {
    return this.fd < 0 ? new BackendError(kind, `${this.path} is closed`, 'EBADF') : undefined;
  }

  /**
   * On a block device the end of the device is the end of the medium: a read
   * there is a read error (not a hole in a file that shrank), and a write
   * there a write fault (see spaceErrors).
   */
  private get device(): boolean {
    return this.image.blockDevice;
  }

  /**
   * A block device says ENOSPC for two different things. At or past its end
   * (it shrank under the namespace; blkdev_write_iter refuses pos >= size
   * with ENOSPC) the medium an LBA names is gone: Write Fault. Inside it,
   * the device itself has run out of space: it is thin provisioned (a
   * dm-thin volume, a loop device over a sparse file, an NVMe namespace with
   * NCAP < NSZE, whose own Capacity Exceeded the kernel hands up as ENOSPC).
   * That stays 'no-space': Capacity Exceeded, "the Namespace Utilization
   * exceeds the Namespace Capacity" (NVMe 1.4, section 4.6.1.2.1, SC 81h),
   * as on a full file system, and as Linux's nvmet answers BLK_STS_NOSPC.
   */
  private spaceErrors(pos: number, length: number, done: IoDone): IoDone {
    if (!this.device) return done;
    const fd = this.fd;
    return (err) => {
      if (err?.kind !== 'no-space') return done(err);
      let end: number;
      try {
        end = blockDeviceSize(fs.fstatSync(fd).rdev);
      } catch {
        return done(err);
      }
      done(pos + length > end ? new BackendError('write', `${err.message} (past the end of the device, ${end} bytes)`, err.errno) : err);
    };
  }

  read(pos: number, segments: readonly Uint8Array[], done: IoDone): void {
    this.readOn(undefined, pos, segments, done);
  }

  write(pos: number, segments: readonly Uint8Array[], fua: boolean, done: IoDone): void {
    this.writeOn(undefined, pos, segments, fua, done);
  }

  flush(done: IoDone): void {
    this.flushOn(undefined, done);
  }

  writeZeroes(pos: number, length: number, deallocate: boolean, done: IoDone): void {
    this.writeZeroesOn(undefined, pos, length, deallocate, done);
  }

  deallocate(pos: number, length: number, done: IoDone): void {
    this.deallocateOn(undefined, pos, length, done);
  }

  /** The same operations on one queue's io_uring, for the executing thread's ring set. */
  get uring(): UringFile {
    // The descriptor is read when a ring registers it: -1 once closed.
    const backend = this;
    return (this.uringSide ??= {
      get fd() {
        return backend.fd;
      },
      direct: this.direct,
      via: (ring) => ({
        read: (pos, segments, done) => this.readOn(ring, pos, segments, done),
        write: (pos, segments, fua, done) => this.writeOn(ring, pos, segments, fua, done),
        flush: (done) => this.flushOn(ring, done),
        writeZeroes: (pos, length, deallocate, done) => this.writeZeroesOn(ring, pos, length, deallocate, done),
        deallocate: (pos, length, done) => this.deallocateOn(ring, pos, length, done),
      }),
    });
  }

  private uringSide: UringFile | undefined;

  private readOn(ring: IoRing | undefined, pos: number, segments: readonly Uint8Array[], done: IoDone): void {
    const closed = this.closed('read');
    if (closed) return done(closed);
    const pastEnd = this.device ? 'error' : 'zeroes';
    if (ring) return ring.read(this.fd, pos, segments, done, pastEnd, !this.direct);
    readAll(this.fd, [...segments], pos, pastEnd, done);
  }

  private writeOn(ring: IoRing | undefined, pos: number, segments: readonly Uint8Array[], fua: boolean, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    done = this.spaceErrors(pos, total(segments), done);
    if (ring) return ring.write(this.fd, pos, segments, fua, done);
    writeAll(this.fd, [...segments], pos, (err) => {
      if (err || !fua) return done(err);
      this.flushOn(undefined, done);
    });
  }

  private flushOn(ring: IoRing | undefined, done: IoDone): void {
    const closed = this.closed('write');
    if (closed) return done(closed);
    if (ring) return ring.fdatasync(this.fd, done);
    fs.fdatasync(this.fd, (err) => done(err ? fromSystemError('write', err) : null));
  }

  private writeZeroesOn(ring: IoRing | undefined, pos: number, length: number, deallocate: boolean, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    done = this.spaceErrors(pos, length, done);
    const zeroRange = (): void => {
      if (this.zeroRangeUnsupported) return this.writeZeroBytes(pos, length, done);
      this.allocate('zero', pos, length, ring, (err) => {
        if (!err) return done(null);
        if (isUnsupported(err)) return this.writeZeroBytes(pos, length, done);
        done(err);
      });
    };
    if (!deallocate || this.punchUnsupported) return zeroRange();
    // Any failure to punch falls back to zeroing, which reports its own error if it has one.
    this.allocate('punch', pos, length, ring, (err) => (err ? zeroRange() : done(null)));
  }

  private deallocateOn(ring: IoRing | undefined, pos: number, length: number, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    done = this.spaceErrors(pos, length, done);
    if (this.punchUnsupported) return this.writeZeroBytes(pos, length, done);
    this.allocate('punch', pos, length, ring, (err) => (err ? this.writeZeroBytes(pos, length, done) : done(null)));
  }

  /**
   * fallocate(2) with PUNCH_HOLE or ZERO_RANGE (both KEEP_SIZE), on the ring
   * or through the addon's synchronous call. A mode the file system refuses
   * is remembered, so later calls go straight to writing zeroes.
   */
  private allocate(how: 'punch' | 'zero', pos: number, length: number, ring: IoRing | undefined, cb: (err: BackendError | null) => void): void {
    const n = loadNative();
    if (!n) return cb(new BackendError('write', 'fallocate needs the native addon', 'ENOSYS'));
    const mode = (how === 'punch' ? n.FALLOC_FL_PUNCH_HOLE : n.FALLOC_FL_ZERO_RANGE) | n.FALLOC_FL_KEEP_SIZE;
    const after = (err: BackendError | null): void => {
      if (err && isUnsupported(err)) {
        if (how === 'punch') this.punchUnsupported = true;
        else this.zeroRangeUnsupported = true;
      }
      cb(err);
    };
    if (ring) return ring.fallocate(this.fd, mode, pos, length, after);
    const rc = n.fallocate(this.fd, mode, pos, length);
    if (rc === 0) return after(null);
    const errno = rc === -95 ? 'EOPNOTSUPP' : rc === -38 ? 'ENOSYS' : rc === -22 ? 'EINVAL' : rc === -28 ? 'ENOSPC' : `errno ${-rc}`;
    after(new BackendError(rc === -28 ? 'no-space' : 'write', `fallocate failed: ${errno}`, errno));
  }

  private writeZeroBytes(pos: number, length: number, done: IoDone): void {
    const chunk = zeroes();
    const step = (p: number, left: number): void => {
      if (left === 0) return done(null);
      const n = Math.min(left, ZERO_CHUNK);
      writeAll(this.fd, [chunk.subarray(0, n)], p, (err) => (err ? done(err) : step(p + n, left - n)));
    };
    step(pos, length);
  }

  handle(): BackendHandle {
    return { kind: 'file', fd: this.fd, path: this.path, size: this.size, readOnly: this.readOnly, direct: this.direct };
  }

  /**
   * Closes the descriptor (a view's stays open: its owner closes it) and
   * releases the image's lock, except after prepareDiscard() on an image this
   * open created: then the lock stays until discard().
   */
  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    if (!this.ownsFd) return;
    try {
      await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      if (!this.keepsClaim) releaseImage(this.image);
    }
  }

  /**
   * Marks the backend for discard(): from now on close() (from whoever closes
   * it, such as the controller) closes the descriptor but keeps the claim on
   * an image this open created, so that no one can open that image before
   * discard() removes it and releases the claim. Call it before anything may
   * close the backend; a marked backend must be discarded, or its lock stays
   * until the process ends (and is then stale: the next opener takes it over).
   */
  prepareDiscard(): void {
    this.discardPending = true;
  }

  private get keepsClaim(): boolean {
    return this.discardPending && this.image.created;
  }

  /** close(), then, if this open created the image, removes it, the sidecar it created and the directories it made. */
  async discard(): Promise<void> {
    this.discardPending = true;
    if (!this.ownsFd || !this.image.created) return this.close();
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    }
    try {
      discardImage(this.image);
    } catch (e) {
      // The caller is already handling a failure: this one is reported, not thrown over it.
      process.emitWarning(`could not remove ${this.path}, which a failed open created: ${(e as Error).message}`, { code: 'NVMQ_DISCARD_INCOMPLETE' });
    }
  }
}

/** The file system does not support this fallocate mode: EOPNOTSUPP, ENOSYS, or EINVAL (not valid for this file type). */
function isUnsupported(err: BackendError): boolean {
  return err.errno === 'EOPNOTSUPP' || err.errno === 'ENOSYS' || err.errno === 'EINVAL';
}

function total(segs: readonly Uint8Array[]): number {
  let t = 0;
  for (const s of segs) t += s.length;
  return t;
}

function readAll(fd: number, segs: Uint8Array[], pos: number, pastEnd: 'zeroes' | 'error', done: IoDone): void {
  const want = total(segs);
  if (want === 0) return done(null);
  fs.readv(fd, segs, pos, (err, n) => {
    if (err) return done(fromSystemError('read', err));
    if (n === want) return done(null);
    if (n === 0) {
      if (pastEnd === 'error') return done(new BackendError('read', `read past the end of the device at ${pos}`, 'EIO'));
      // Past the end of a file that shrank under us: the hole reads as zeroes.
      for (const s of segs) s.fill(0);
      return done(null);
    }
    readAll(fd, advance(segs, n), pos + n, pastEnd, done);
  });
}

function writeAll(fd: number, segs: Uint8Array[], pos: number, done: IoDone): void {
  const want = total(segs);
  if (want === 0) return done(null);
  fs.writev(fd, segs, pos, (err, n) => {
    if (err) return done(fromSystemError('write', err));
    if (n === want) return done(null);
    if (n === 0) return done(new BackendError('write', `write made no progress at ${pos}`));
    writeAll(fd, advance(segs, n), pos + n, done);
  });
}
