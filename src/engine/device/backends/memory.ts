/**
 * A namespace in RAM: one SharedArrayBuffer, so worker threads can share it.
 * Every operation completes before it returns.
 *
 * Data is copied with the native addon's memmove when it is loaded: V8 moves
 * bytes into and out of shared memory with relaxed atomic word moves, about
 * 1.5x the time of a memmove for a 4 KiB block here, and that copy is the
 * namespace's whole cost per I/O. Without the addon (or with
 * NVMQ_DISABLE_NATIVE=1), TypedArray.set(); the engine's data path option
 * (io_uring or portable) does not change it.
 */
import type { Backend, BackendHandle, IoDone } from './backend.js';
import { BackendError } from './backend.js';
import { loadNative } from '../../uring/native.js';

export class MemoryBackend implements Backend {
  readonly kind = 'memory' as const;
  readonly alignment = 1;
  readonly size: number;
  readonly readOnly = false;
  readonly buffer: SharedArrayBuffer;
  private readonly bytes: Uint8Array;
  private readonly copy = loadNative()?.copyBytes;

  constructor(opts: { size: number } | { buffer: SharedArrayBuffer }) {
    if ('buffer' in opts) {
      this.buffer = opts.buffer;
    } else {
      if (!Number.isSafeInteger(opts.size) || opts.size <= 0) throw new RangeError(`memory namespace size must be a positive integer, got ${opts.size}`);
      this.buffer = new SharedArrayBuffer(opts.size);
    }
    this.size = this.buffer.byteLength;
    this.bytes = new Uint8Array(this.buffer);
  }

  get description(): string {
    return `memory ${formatBytes(this.size)}`;
  }

  read(pos: number, segments: readonly Uint8Array[], done: IoDone): void {
    let p = pos;
    for (const s of segments) {
      if (p + s.length > this.size) return done(new BackendError('read', `read past the end at ${p}`));
      if (this.copy) this.copy(s, 0, this.bytes, p, s.length);
      else s.set(this.bytes.subarray(p, p + s.length));
      p += s.length;
    }
    done(null);
  }

  write(pos: number, segments: readonly Uint8Array[], _fua: boolean, done: IoDone): void {
    let p = pos;
    for (const s of segments) {
      if (p + s.length > this.size) return done(new BackendError('write', `write past the end at ${p}`));
      if (this.copy) this.copy(this.bytes, p, s, 0, s.length);
      else this.bytes.set(s, p);
      p += s.length;
    }
    done(null);
  }

  flush(done: IoDone): void {
    done(null);
  }

  writeZeroes(pos: number, length: number, _deallocate: boolean, done: IoDone): void {
    if (pos + length > this.size) return done(new BackendError('write', `write zeroes past the end at ${pos}`));
    this.bytes.fill(0, pos, pos + length);
    done(null);
  }

  deallocate(pos: number, length: number, done: IoDone): void {
    this.writeZeroes(pos, length, true, done);
  }

  async close(): Promise<void> {}

  /** Nothing outlives a memory namespace. */
  async discard(): Promise<void> {}

  handle(): BackendHandle {
    return { kind: 'memory', buffer: this.buffer };
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u++;
  }
  return `${v} ${units[u]}`;
}
