/**
 * The PRP walker (NVMe 1.4, section 4.3): turns PRP1 / PRP2 / PRP lists into a
 * scatter list of views on the DMA arena, enforcing the spec's rules:
 *
 * - PRP1 may carry an offset into its page, dword aligned (bits 1:0 clear).
 * - When the transfer ends in the second page, PRP2 is a data pointer and must
 *   be page aligned.
 * - Otherwise PRP2 points to a PRP list (qword aligned, may start mid-page).
 *   Every entry is a page-aligned data pointer, except that the last entry of a
 *   list page points to the next list page when more than one page of data
 *   remains ("chained" lists); that pointer must be page aligned too.
 * - Every address is translated through the arena's single bounds check; an
 *   address outside it (zero included) is a Data Transfer Error.
 *
 * The whole list is walked before any data moves, so a bad entry anywhere
 * rejects the command without touching memory or media.
 */
import type { DmaArena } from '../dma-arena.js';
import { DATA_TRANSFER_ERROR, INVALID_FIELD, PRP_OFFSET_INVALID } from './status.js';
import { PRP_ENTRY_SIZE } from '../spec/command.js';
import { readAddress } from '../spec/layout.js';

export interface PrpResult {
  status: number;
  segments: Uint8Array[];
}

const EMPTY: Uint8Array[] = [];

export function mapPrps(arena: DmaArena, prp1: number, prp2: number, length: number, pageSize: number): PrpResult {
  if (length === 0) return { status: 0, segments: EMPTY };
  // The common case, a transfer within PRP1's page: one view, no list walk.
  if (prp1 % 4 === 0 && length <= pageSize - (prp1 % pageSize)) {
    const off = arena.translate(prp1, length);
    return off < 0 ? { status: DATA_TRANSFER_ERROR, segments: EMPTY } : { status: 0, segments: [new Uint8Array(arena.buffer, arena.skew + off, length)] };
  }
  const mask = pageSize - 1;
  const segments: Uint8Array[] = [];
  let lastEnd = -1;
  // Adjacent pieces merge into one view: fewer iovecs for the backend.
  const push = (iova: number, len: number): boolean => {
    const off = arena.translate(iova, len);
    if (off < 0) return false;
    if (off === lastEnd) {
      const prev = segments[segments.length - 1]!;
      segments[segments.length - 1] = new Uint8Array(arena.buffer, prev.byteOffset, prev.length + len);
    } else {
      segments.push(new Uint8Array(arena.buffer, arena.skew + off, len));
    }
    lastEnd = off + len;
    return true;
  };

  if (prp1 % 4 !== 0) return { status: PRP_OFFSET_INVALID, segments: EMPTY };
  const first = Math.min(length, pageSize - (prp1 % pageSize));
  if (!push(prp1, first)) return { status: DATA_TRANSFER_ERROR, segments: EMPTY };
  let remaining = length - first;
  if (remaining === 0) return { status: 0, segments };

  if (remaining <= pageSize) {
    if (prp2 % pageSize !== 0) return { status: PRP_OFFSET_INVALID, segments: EMPTY };
    if (!push(prp2, remaining)) return { status: DATA_TRANSFER_ERROR, segments: EMPTY };
    return { status: 0, segments };
  }

  if (prp2 % PRP_ENTRY_SIZE !== 0) return { status: PRP_OFFSET_INVALID, segments: EMPTY };
  let list = prp2;
  let entries = (pageSize - (prp2 & mask)) / PRP_ENTRY_SIZE;
  // Bounded by the transfer: each pass either maps a page or follows a chain pointer to a fresh page of entries.
  while (remaining > 0) {
    // Only the entries this transfer needs are read (and bounds-checked): the rest of the list page need not exist.
    const needed = Math.min(entries, Math.ceil(remaining / pageSize));
    const listOff = arena.translate(list, needed * PRP_ENTRY_SIZE);
    if (listOff < 0) return { status: DATA_TRANSFER_ERROR, segments: EMPTY };
    let chained = false;
    for (let i = 0; i < entries && remaining > 0; i++) {
      const entry = readAddress(arena.view, listOff + i * PRP_ENTRY_SIZE);
      if (entry % pageSize !== 0) return { status: PRP_OFFSET_INVALID, segments: EMPTY };
      if (i === entries - 1 && remaining > pageSize) {
        list = entry;
        entries = pageSize / PRP_ENTRY_SIZE;
        chained = true;
        break;
      }
      const n = Math.min(remaining, pageSize);
      if (!push(entry, n)) return { status: DATA_TRANSFER_ERROR, segments: EMPTY };
      remaining -= n;
    }
    if (!chained && remaining > 0) return { status: DATA_TRANSFER_ERROR, segments: EMPTY };
  }
  return { status: 0, segments };
}

/** Copies `src` into a scatter list (controller → host). */
export function scatter(segments: readonly Uint8Array[], src: Uint8Array): void {
  let p = 0;
  for (const s of segments) {
    const n = Math.min(s.length, src.length - p);
    if (n > 0) s.set(src.subarray(p, p + n));
    if (n < s.length) s.fill(0, Math.max(n, 0));
    p += s.length;
  }
}

/** Copies a scatter list into one buffer (host → controller). */
export function gather(segments: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let p = 0;
  for (const s of segments) {
    out.set(s.subarray(0, Math.min(s.length, length - p)), p);
    p += s.length;
    if (p >= length) break;
  }
  return out;
}

/** The first `length` bytes of a direct command's data (its one buffer, as a rule); Invalid Field when it holds fewer. */
export function directData(data: Uint8Array[], length: number): { status: number; segments: Uint8Array[] } {
  const have = data.length === 0 ? 0 : data[0]!.length;
  if (have === length) return { status: 0, segments: data };
  if (have < length) return { status: INVALID_FIELD, segments: [] };
  return { status: 0, segments: [data[0]!.subarray(0, length)] };
}
