/**
 * The DMA arena: the host memory a controller can reach.
 *
 * One SharedArrayBuffer of 4 KiB pages. Addresses the controller sees are IOVAs
 * (arena offset + a non-zero base), so a zero PRP never lands inside it. Every
 * controller access to host memory goes through `translate()`, the one bounds
 * check: nothing outside the arena can be read or written.
 *
 * The page allocator belongs to the thread that created the arena; other
 * threads receive ranges carved out for them.
 *
 * The arena starts on a real page boundary of process memory (the
 * SharedArrayBuffer has a page to spare, and the views start `skew` bytes in,
 * where the native addon says the next page begins), so every 4 KiB arena
 * page is a 4 KiB memory page: what O_DIRECT transfers need. Offsets are
 * arena offsets, from the first byte of `bytes`; `offsetOf()` turns a view
 * on the buffer into one.
 */
import { loadNative } from './uring/native.js';

export const ARENA_PAGE_SIZE = 4096;
/** IOVA of arena byte 0. Above 4 GiB so that both halves of every 64-bit pointer matter. */
export const DEFAULT_IOVA_BASE = 0x1_0000_0000;

export interface DmaBuffer {
  /** Address the controller uses. */
  readonly iova: number;
  /** Offset inside the arena's SharedArrayBuffer. */
  readonly offset: number;
  readonly size: number;
  /** The bytes, a view on shared memory (zero copy). */
  readonly bytes: Uint8Array;
}

export interface DmaArenaHandle {
  buffer: SharedArrayBuffer;
  base: number;
  /** Where the arena starts in the buffer. */
  skew: number;
  /** Arena bytes. */
  size: number;
  /** The part of the arena this view may allocate from (a worker's buffer pool); the whole arena by default. */
  range?: { offset: number; size: number };
}

export class DmaArena {
  readonly buffer: SharedArrayBuffer;
  readonly base: number;
  readonly size: number;
  /** Byte of the buffer where the arena (offset 0) starts. */
  readonly skew: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** 32-bit words: SQEs and CQEs are read and written through these (and CQE dword 3 atomically). */
  readonly u32: Uint32Array;
  /** Free extents in pages, sorted by start, merged on free. */
  private free: Array<{ start: number; pages: number }>;
  private readonly owned = new Map<number, number>();

  constructor(opts: { sizeBytes: number; base?: number } | DmaArenaHandle) {
    if ('buffer' in opts) {
      this.buffer = opts.buffer;
      this.base = opts.base;
      this.skew = opts.skew;
      this.size = opts.size;
    } else {
      if (!Number.isInteger(opts.sizeBytes) || opts.sizeBytes <= 0 || opts.sizeBytes % ARENA_PAGE_SIZE !== 0) {
        throw new RangeError(`DMA arena size must be a positive multiple of ${ARENA_PAGE_SIZE} bytes, got ${opts.sizeBytes}`);
      }
      this.buffer = new SharedArrayBuffer(opts.sizeBytes + ARENA_PAGE_SIZE);
      this.base = opts.base ?? DEFAULT_IOVA_BASE;
      const native = loadNative();
      this.skew = native ? (ARENA_PAGE_SIZE - native.pageOffsetOf(new Uint8Array(this.buffer, 0, 1))) % ARENA_PAGE_SIZE : 0;
      this.size = opts.sizeBytes;
    }
    if (this.base <= 0 || this.base % ARENA_PAGE_SIZE !== 0) throw new RangeError(`IOVA base must be a non-zero multiple of ${ARENA_PAGE_SIZE}`);
    if (this.skew % 16 !== 0 || this.skew + this.size > this.buffer.byteLength) throw new RangeError(`arena [${this.skew}, +${this.size}) does not fit its buffer`);
    this.bytes = new Uint8Array(this.buffer, this.skew, this.size);
    this.view = new DataView(this.buffer, this.skew, this.size);
    this.u32 = new Uint32Array(this.buffer, this.skew, this.size >> 2);
    const range = 'buffer' in opts ? opts.range : undefined;
    this.free = range ? [{ start: range.offset / ARENA_PAGE_SIZE, pages: Math.floor(range.size / ARENA_PAGE_SIZE) }] : [{ start: 0, pages: this.size / ARENA_PAGE_SIZE }];
    if (range && (range.offset % ARENA_PAGE_SIZE !== 0 || range.offset < 0 || range.offset + range.size > this.size)) {
      throw new RangeError(`allocation range [${range.offset}, +${range.size}) is not page aligned inside the arena`);
    }
  }

  /** What another thread needs to map the same arena. */
  handle(): DmaArenaHandle {
    return { buffer: this.buffer, base: this.base, skew: this.skew, size: this.size };
  }

  /**
   * Arena offset of [iova, iova + length), or -1 when any byte lies outside.
   * The only way the controller turns an address into memory.
   */
  translate(iova: number, length: number): number {
    const off = iova - this.base;
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || off < 0 || length < 0 || off + length > this.size) return -1;
    return off;
  }

  iovaOf(offset: number): number {
    return this.base + offset;
  }

  /** True when `bytes` is a view inside this arena (zero-copy capable). */
  contains(bytes: Uint8Array): boolean {
    return bytes.buffer === this.buffer && bytes.byteOffset >= this.skew && bytes.byteOffset + bytes.length <= this.skew + this.size;
  }

  /** Arena offset of a view on this arena's buffer. */
  offsetOf(bytes: ArrayBufferView): number {
    return bytes.byteOffset - this.skew;
  }

  /** Allocates whole pages (first fit). Throws when the arena is exhausted. */
  alloc(size: number): DmaBuffer {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`allocation size must be a positive integer, got ${size}`);
    const pages = Math.ceil(size / ARENA_PAGE_SIZE);
    for (let i = 0; i < this.free.length; i++) {
      const ext = this.free[i]!;
      if (ext.pages < pages) continue;
      const start = ext.start;
      ext.start += pages;
      ext.pages -= pages;
      if (ext.pages === 0) this.free.splice(i, 1);
      this.owned.set(start, pages);
      const offset = start * ARENA_PAGE_SIZE;
      const bytes = new Uint8Array(this.buffer, this.skew + offset, pages * ARENA_PAGE_SIZE);
      bytes.fill(0);
      return { iova: this.base + offset, offset, size: pages * ARENA_PAGE_SIZE, bytes };
    }
    const err = new Error(`DMA arena exhausted: ${pages} pages wanted, ${this.freePages()} free of ${this.size / ARENA_PAGE_SIZE}`) as Error & { code: string };
    err.code = 'NVMQ_ARENA_EXHAUSTED';
    throw err;
  }

  release(buf: DmaBuffer): void {
    if (!this.contains(buf.bytes)) throw new Error('release of a buffer from another arena');
    const start = buf.offset / ARENA_PAGE_SIZE;
    const pages = this.owned.get(start);
    if (pages === undefined) throw new Error(`release of a buffer this arena did not allocate (offset ${buf.offset})`);
    this.owned.delete(start);
    let i = 0;
    while (i < this.free.length && this.free[i]!.start < start) i++;
    this.free.splice(i, 0, { start, pages });
    // Merge with the neighbours so large allocations stay possible.
    const merged: Array<{ start: number; pages: number }> = [];
    for (const e of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.start + last.pages === e.start) last.pages += e.pages;
      else merged.push({ ...e });
    }
    this.free = merged;
  }

  freePages(): number {
    return this.free.reduce((n, e) => n + e.pages, 0);
  }
}
