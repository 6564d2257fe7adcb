/**
 * A namespace in a regular file or block device, through node:fs (libuv's
 * thread pool): reads and writes go straight between the file and the DMA
 * arena's shared memory. Flush is fdatasync. Write Zeroes and Deallocate use
 * fallocate(2) through the native addon when it is built and the file system
 * supports the mode, and fall back to writing zeroes otherwise.
 */
import * as fs from 'node:fs';
import type { Backend, BackendHandle, IoDone } from './backend.js';
import { BackendError, fromSystemError } from './backend.js';
import { openImage, type ImageOptions, type OpenedImage } from './image.js';
import { loadNative } from '../../native.js';

const ZERO_CHUNK = 1 << 20;
let zeroChunk: Uint8Array | undefined;

export interface FileBackendOptions extends ImageOptions {
  /** Open with O_DIRECT. */
  direct?: boolean | undefined;
}

export class FileBackend implements Backend {
  readonly kind = 'file' as const;
  readonly size: number;
  readonly path: string;
  readonly readOnly: boolean;
  readonly image: OpenedImage;
  private fd: number;
  /** False for a view on another thread's descriptor: close() leaves it open. */
  private readonly ownsFd: boolean;
  /** Set once the file system has refused a fallocate mode, so the zero-write path is used from then on. */
  private punchUnsupported = false;
  private zeroRangeUnsupported = false;

  constructor(opts: FileBackendOptions | { handle: Extract<BackendHandle, { kind: 'file' }> }) {
    if ('handle' in opts) {
      const h = opts.handle;
      this.image = { fd: h.fd, path: h.path, size: h.size, created: false, blockDevice: false, readOnly: h.readOnly };
      this.ownsFd = false;
    } else {
      const extra = opts.direct ? (fs.constants.O_DIRECT ?? 0) : 0;
      this.image = openImage({ ...opts, extraFlags: extra });
      this.ownsFd = true;
    }
    this.fd = this.image.fd;
    this.size = this.image.size;
    this.path = this.image.path;
    this.readOnly = this.image.readOnly;
  }

  get description(): string {
    return `file ${this.path}`;
  }

  /** An error for calls after close(): backends report through `done`, never by throwing. */
  private closed(kind: 'read' | 'write'): BackendError | undefined {
    return this.fd < 0 ? new BackendError(kind, `${this.path} is closed`, 'EBADF') : undefined;
  }

  read(pos: number, segments: readonly Uint8Array[], done: IoDone): void {
    const closed = this.closed('read');
    if (closed) return done(closed);
    readAll(this.fd, [...segments], pos, done);
  }

  write(pos: number, segments: readonly Uint8Array[], fua: boolean, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    writeAll(this.fd, [...segments], pos, (err) => {
      if (err || !fua) return done(err);
      this.flush(done);
    });
  }

  flush(done: IoDone): void {
    const closed = this.closed('write');
    if (closed) return done(closed);
    fs.fdatasync(this.fd, (err) => done(err ? fromSystemError('write', err) : null));
  }

  writeZeroes(pos: number, length: number, deallocate: boolean, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    if (deallocate && this.tryPunch(pos, length)) return done(null);
    if (!this.zeroRangeUnsupported) {
      const n = loadNative();
      if (n) {
        const rc = n.fallocate(this.fd, n.FALLOC_FL_ZERO_RANGE | n.FALLOC_FL_KEEP_SIZE, pos, length);
        if (rc === 0) return done(null);
        if (!isUnsupported(rc)) return done(new BackendError(rc === -28 ? 'no-space' : 'write', `fallocate(ZERO_RANGE) failed: errno ${-rc}`));
        this.zeroRangeUnsupported = true;
      }
    }
    this.writeZeroBytes(pos, length, done);
  }

  deallocate(pos: number, length: number, done: IoDone): void {
    if (this.readOnly) return done(new BackendError('write', `${this.path} is open read-only`, 'EBADF'));
    const closed = this.closed('write');
    if (closed) return done(closed);
    if (this.tryPunch(pos, length)) return done(null);
    this.writeZeroBytes(pos, length, done);
  }

  private tryPunch(pos: number, length: number): boolean {
    if (this.punchUnsupported) return false;
    const n = loadNative();
    if (!n) return false;
    const rc = n.fallocate(this.fd, n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE, pos, length);
    if (rc === 0) return true;
    // Any failure falls back to writing zeroes, which reports its own error if it has one.
    if (isUnsupported(rc)) this.punchUnsupported = true;
    return false;
  }

  private writeZeroBytes(pos: number, length: number, done: IoDone): void {
    zeroChunk ??= new Uint8Array(ZERO_CHUNK);
    const chunk = zeroChunk;
    const step = (p: number, left: number): void => {
      if (left === 0) return done(null);
      const n = Math.min(left, ZERO_CHUNK);
      writeAll(this.fd, [chunk.subarray(0, n)], p, (err) => (err ? done(err) : step(p + n, left - n)));
    };
    step(pos, length);
  }

  handle(): BackendHandle {
    return { kind: 'file', fd: this.fd, path: this.path, size: this.size, readOnly: this.readOnly };
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    if (!this.ownsFd) return;
    await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
  }
}

function isUnsupported(rc: number): boolean {
  // EOPNOTSUPP (95), ENOSYS (38), EINVAL (22: mode not valid for this file type).
  return rc === -95 || rc === -38 || rc === -22;
}

/** Drops the first `n` bytes from a scatter list. */
function advance(segs: Uint8Array[], n: number): Uint8Array[] {
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

function total(segs: readonly Uint8Array[]): number {
  let t = 0;
  for (const s of segs) t += s.length;
  return t;
}

function readAll(fd: number, segs: Uint8Array[], pos: number, done: IoDone): void {
  const want = total(segs);
  if (want === 0) return done(null);
  fs.readv(fd, segs, pos, (err, n) => {
    if (err) return done(fromSystemError('read', err));
    if (n === want) return done(null);
    if (n === 0) {
      // Past the end of a file that shrank under us: the hole reads as zeroes.
      for (const s of segs) s.fill(0);
      return done(null);
    }
    readAll(fd, advance(segs, n), pos + n, done);
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
