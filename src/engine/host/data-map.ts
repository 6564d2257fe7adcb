/**
 * Where a command's data lies for the controller, and the PRPs that point at
 * it: a buffer inside the DMA arena is used in place (zero copy); any other
 * is copied through a bounce buffer allocated for the command. Beyond two
 * pages PRP2 points at a PRP list in pages each request slot owns, made when
 * the queue pair is (nothing is allocated per command but a bounce buffer).
 */
import type { DmaArena, DmaBuffer } from '../dma-arena.js';
import { PRP_ENTRY_SIZE } from '../spec/command.js';
import { writeU64 } from '../spec/layout.js';
import { invalidArgument } from './arguments.js';

/** Request slots that keep a bounce page of their own (256 KiB of pages at 4 KiB). */
const SLOT_PAGES = 64;

export interface DataSpec {
  /** Bytes to send (host → controller) or a buffer to fill (controller → host). */
  buffer: Uint8Array;
  direction: 'to-device' | 'from-device';
}

/**
 * PRP list pages each request slot needs for transfers up to `maxTransfer`:
 * none up to two pages (PRP1 and PRP2 suffice); beyond, pageSize / 8 entries
 * a page, the last of which chains to the next page (4.3).
 */
function prpListPages(maxTransfer: number, pageSize: number): number {
  const perPage = pageSize / PRP_ENTRY_SIZE;
  const dataPages = Math.ceil(maxTransfer / pageSize) + 1;
  return dataPages <= 2 ? 0 : Math.max(1, Math.ceil((dataPages - 1) / (perPage - 1)));
}

/** A buffer of the arena that another thread allocated, by its offset. */
export function arenaBuffer(arena: DmaArena, offset: number, size: number): DmaBuffer {
  return { iova: arena.iovaOf(offset), offset, size, bytes: new Uint8Array(arena.buffer, arena.skew + offset, size) };
}

export class DataMap {
  /** PRP1 / PRP2 as `map()` left them. */
  prp1 = 0;
  prp2 = 0;
  private readonly pages: DmaBuffer[];
  /** Each request slot's bounce page for transfers of a page or less, made on first use in this thread. */
  private readonly slotPages: Array<DmaBuffer | undefined> = [];
  private readonly kept = new Set<DmaBuffer>();
  private pagesPerSlot: number;
  private limit: number;

  private constructor(
    private readonly arena: DmaArena,
    private readonly pageSize: number,
    maxTransfer: number,
    pages: DmaBuffer[],
    pagesPerSlot: number,
    /** An SGL Data Block descriptor instead of PRPs: `prp1` the address, `prp2` the length (SGL1 in DPTR). */
    readonly sgl: boolean,
  ) {
    this.limit = maxTransfer;
    this.pages = pages;
    this.pagesPerSlot = pagesPerSlot;
  }

  /** For a new pair of `slots` request slots: allocates their PRP list pages. */
  static create(arena: DmaArena, pageSize: number, maxTransfer: number, slots: number, sgl = false): DataMap {
    const perSlot = sgl ? 0 : prpListPages(maxTransfer, pageSize);
    return new DataMap(arena, pageSize, maxTransfer, allocPages(arena, pageSize, slots * perSlot), perSlot, sgl);
  }

  /** The list pages another thread's pair made (`listPages()` there). */
  static attach(arena: DmaArena, pageSize: number, maxTransfer: number, pages: { offsets: number[]; perSlot: number }, sgl = false): DataMap {
    return new DataMap(arena, pageSize, maxTransfer, pages.offsets.map((off) => arenaBuffer(arena, off, pageSize)), pages.perSlot, sgl);
  }

  /** The largest transfer, in bytes, PRPs are built for. */
  get maxTransfer(): number {
    return this.limit;
  }

  /** What `attach()` in another thread needs (structured-cloneable). */
  listPages(): { offsets: number[]; perSlot: number } {
    return { offsets: this.pages.map((p) => p.offset), perSlot: this.pagesPerSlot };
  }

  /**
   * Changes the largest transfer, re-making the list pages of `slots`
   * request slots to fit. Only while no command uses them.
   */
  setMaxTransfer(bytes: number, slots: number): void {
    const perSlot = this.sgl ? 0 : prpListPages(bytes, this.pageSize);
    if (perSlot !== this.pagesPerSlot) {
      const pages = allocPages(this.arena, this.pageSize, slots * perSlot);
      for (const p of this.pages) this.arena.release(p);
      this.pages.splice(0, this.pages.length, ...pages);
      this.pagesPerSlot = perSlot;
    }
    this.limit = bytes;
  }

  /**
   * Places `data` (non-empty) for request slot `cid`'s command: leaves its
   * PRPs in `prp1` / `prp2` and returns the bounce buffer it copied through,
   * if any (a to-device buffer is copied in here; `unmap()` copies a
   * from-device one back). Throws, having allocated nothing, for a buffer
   * past the maximum transfer or when the arena has no room for a bounce.
   */
  map(cid: number, data: DataSpec): DmaBuffer | undefined {
    const { buffer } = data;
    if (buffer.length > this.limit) {
      throw invalidArgument('data.buffer', `at most ${this.limit} bytes (the queue's maximum transfer)`, buffer);
    }
    let region: Uint8Array = buffer;
    let bounce: DmaBuffer | undefined;
    if (!this.arena.contains(buffer)) {
      // A page or less goes through the slot's own bounce page, made once: no allocation per command.
      // (The first SLOT_PAGES slots only: a deep queue must not tie up a thread's whole buffer pool.)
      bounce = buffer.length <= this.pageSize && cid < SLOT_PAGES ? (this.slotPages[cid] ??= this.keep(this.arena.alloc(this.pageSize))) : this.arena.alloc(buffer.length);
      region = bounce.bytes.subarray(0, buffer.length);
      if (data.direction === 'to-device') region.set(buffer);
    }
    const iova = this.arena.iovaOf(this.arena.offsetOf(region));
    if (this.sgl) {
      // SGL1: ADDRESS (bytes 24..31), LENGTH (32..35), SGL Identifier 0 (Data Block, Address) in byte 39.
      this.prp1 = iova;
      this.prp2 = region.length;
    } else {
      this.buildPrps(cid, iova, region.length);
    }
    return bounce;
  }

  /** Releases a command's bounce buffer, copying into `readBack` (the from-device buffer) first when it succeeded. */
  unmap(bounce: DmaBuffer, readBack: Uint8Array | undefined, status: number): void {
    if (readBack && status === 0) readBack.set(bounce.bytes.subarray(0, readBack.length));
    this.drop(bounce);
  }

  /** Gives a bounce buffer back (a slot's own page stays with the slot). */
  drop(bounce: DmaBuffer): void {
    if (!this.kept.has(bounce)) this.arena.release(bounce);
  }

  private keep(page: DmaBuffer): DmaBuffer {
    this.kept.add(page);
    return page;
  }

  /** Returns the list pages and the slots' bounce pages to the arena (the thread that created the pair). */
  release(): void {
    for (const p of this.pages) this.arena.release(p);
    this.pages.length = 0;
    for (const p of this.kept) this.arena.release(p);
    this.kept.clear();
    this.slotPages.length = 0;
  }

  /**
   * Leaves in `prp1` / `prp2` the PRPs for a contiguous region of the
   * arena. Beyond two pages PRP2 points at the slot's list pages, chained
   * when one page of entries is not enough (4.3).
   */
  private buildPrps(cid: number, iova: number, length: number): void {
    const ps = this.pageSize;
    const first = ps - (iova % ps);
    this.prp1 = iova;
    this.prp2 = 0;
    if (length <= first) return;
    const rest = length - first;
    const second = iova + first;
    if (rest <= ps) {
      this.prp2 = second;
      return;
    }
    const pages = Math.ceil(rest / ps);
    const perPage = ps / PRP_ENTRY_SIZE;
    const dv = this.arena.view;
    let listIndex = cid * this.pagesPerSlot;
    let list = this.pages[listIndex]!;
    let slot = 0;
    for (let i = 0; i < pages; i++) {
      if (slot === perPage - 1 && pages - i > 1) {
        const next = this.pages[++listIndex]!;
        writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, next.iova);
        list = next;
        slot = 0;
      }
      writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, second + i * ps);
      slot++;
    }
    this.prp2 = this.pages[cid * this.pagesPerSlot]!.iova;
  }
}

/** `n` pages of the arena, all or none. */
function allocPages(arena: DmaArena, pageSize: number, n: number): DmaBuffer[] {
  const pages: DmaBuffer[] = [];
  try {
    for (let i = 0; i < n; i++) pages.push(arena.alloc(pageSize));
  } catch (e) {
    for (const p of pages) arena.release(p);
    throw e;
  }
  return pages;
}
