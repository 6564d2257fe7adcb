/**
 * Unit tests of the PRP walker (NVMe 1.4, section 4.3) on a bare DMA arena:
 * which bytes of host memory a PRP1 / PRP2 pair addresses, and which malformed
 * pairs are rejected with which status.
 */
import { describe, it, expect } from 'vitest';
import { DmaArena } from '../../../src/engine/dma-arena.js';
import { mapPrps, scatter, gather } from '../../../src/engine/device/prp.js';
import { PRP_OFFSET_INVALID, DATA_TRANSFER_ERROR } from '../../../src/engine/device/status.js';

const PS = 4096;
const TWO32 = 0x1_0000_0000;

// Expected statuses spelled out from the spec, not taken from the code under test:
// generic command status (SCT 0), DNR set.
const PRP_OFFSET_INVALID_STATUS = (1 << 14) | (0 << 8) | 0x13;
const DATA_TRANSFER_ERROR_STATUS = (1 << 14) | (0 << 8) | 0x04;

function arenaOf(pages: number): DmaArena {
  return new DmaArena({ sizeBytes: pages * PS });
}

/** Writes a 64-bit little-endian PRP entry at an arena offset. */
function putEntry(a: DmaArena, offset: number, value: number): void {
  a.view.setUint32(offset, value % TWO32, true);
  a.view.setUint32(offset + 4, Math.floor(value / TWO32), true);
}

/** Writes consecutive entries starting at an arena offset. */
function putList(a: DmaArena, offset: number, values: readonly number[]): void {
  values.forEach((v, i) => putEntry(a, offset + i * 8, v));
}

/** [arena offset, length] of each segment, after checking it is a view on the arena's SharedArrayBuffer. */
function layout(a: DmaArena, segs: readonly Uint8Array[]): Array<[number, number]> {
  for (const s of segs) expect(s.buffer).toBe(a.buffer);
  return segs.map((s) => [a.offsetOf(s), s.length]);
}

function total(segs: readonly Uint8Array[]): number {
  return segs.reduce((n, s) => n + s.length, 0);
}

describe('status constants', () => {
  it('are generic status with DNR', () => {
    expect(PRP_OFFSET_INVALID).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(DATA_TRANSFER_ERROR).toBe(DATA_TRANSFER_ERROR_STATUS);
  });
});

describe('PRP1 only', () => {
  it('maps a transfer inside one page, with an offset into it; PRP2 is ignored', () => {
    const a = arenaOf(8);
    const r = mapPrps(a, a.iovaOf(2 * PS + 100), 0xdead_beef_0003, 200, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([[2 * PS + 100, 200]]);
  });

  it('maps a transfer that ends exactly at the end of PRP1\'s page', () => {
    const a = arenaOf(8);
    const r = mapPrps(a, a.iovaOf(3 * PS + 4092), 7, 4, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([[3 * PS + 4092, 4]]);
    const whole = mapPrps(a, a.iovaOf(PS), 0, PS, PS);
    expect(whole.status).toBe(0);
    expect(layout(a, whole.segments)).toEqual([[PS, PS]]);
  });

  it('maps nothing for a zero-length transfer', () => {
    const a = arenaOf(2);
    const r = mapPrps(a, 0, 0, 0, PS);
    expect(r.status).toBe(0);
    expect(r.segments).toEqual([]);
  });

  it.each([1, 2, 3, 5, 4094])('rejects PRP1 with page offset %i (not dword aligned) as PRP Offset Invalid', (off) => {
    const a = arenaOf(4);
    const r = mapPrps(a, a.iovaOf(PS + off), 0, 16, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(r.segments).toEqual([]);
  });

  it('accepts every dword-aligned PRP1 offset', () => {
    const a = arenaOf(4);
    for (let off = 0; off < PS; off += 4) {
      const r = mapPrps(a, a.iovaOf(PS + off), 0, 4, PS);
      expect(r.status).toBe(0);
      expect(layout(a, r.segments)).toEqual([[PS + off, 4]]);
    }
  });
});

describe('PRP2 as a data pointer (transfer ends in the second page)', () => {
  it('maps the rest of the transfer at PRP2', () => {
    const a = arenaOf(8);
    const r = mapPrps(a, a.iovaOf(PS + 3000), a.iovaOf(5 * PS), 4000, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [PS + 3000, PS - 3000],
      [5 * PS, 4000 - (PS - 3000)],
    ]);
  });

  it('treats PRP2 as data, not a list, when the transfer is exactly two pages', () => {
    const a = arenaOf(8);
    // Garbage in the page PRP2 points to: read as a list, it would fail.
    a.bytes.fill(0x55, 6 * PS, 7 * PS);
    const r = mapPrps(a, a.iovaOf(2 * PS), a.iovaOf(6 * PS), 2 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [2 * PS, PS],
      [6 * PS, PS],
    ]);
  });

  it('merges PRP1\'s page and PRP2\'s page when they are adjacent', () => {
    const a = arenaOf(8);
    const r = mapPrps(a, a.iovaOf(PS + 512), a.iovaOf(2 * PS), PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([[PS + 512, PS]]);
  });

  it.each([4, 8, 512, 2048, 4092])('rejects a PRP2 data pointer with page offset %i as PRP Offset Invalid', (off) => {
    const a = arenaOf(8);
    const r = mapPrps(a, a.iovaOf(PS), a.iovaOf(4 * PS + off), PS + 16, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(r.segments).toEqual([]);
  });
});

describe('PRP2 as a list pointer', () => {
  it('walks a list that starts mid-page (qword aligned)', () => {
    const a = arenaOf(16);
    const listAt = 3 * PS + 8 * 100;
    putList(a, listAt, [a.iovaOf(9 * PS), a.iovaOf(7 * PS), a.iovaOf(11 * PS)]);
    const r = mapPrps(a, a.iovaOf(PS + 1024), a.iovaOf(listAt), 3 * PS + 100, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [PS + 1024, PS - 1024],
      [9 * PS, PS],
      [7 * PS, PS],
      [11 * PS, 1024 + 100],
    ]);
    expect(total(r.segments)).toBe(3 * PS + 100);
  });

  it('reads only as many entries as the transfer needs', () => {
    const a = arenaOf(16);
    const listAt = 4 * PS;
    // Two entries needed; everything after them is garbage that must not be looked at.
    putList(a, listAt, [a.iovaOf(8 * PS), a.iovaOf(9 * PS), 3, 0, 0x1234_5678_9abc]);
    const r = mapPrps(a, a.iovaOf(7 * PS), a.iovaOf(listAt), 3 * PS, PS);
    expect(r.status).toBe(0);
    // PRP1's page and the two listed pages are contiguous: one segment.
    expect(layout(a, r.segments)).toEqual([[7 * PS, 3 * PS]]);
  });

  it.each([1, 2, 4, 6, 4092])('rejects a list pointer with page offset %i (not qword aligned) as PRP Offset Invalid', (off) => {
    const a = arenaOf(16);
    const listAt = 4 * PS + off;
    const r = mapPrps(a, a.iovaOf(PS), a.iovaOf(listAt), 3 * PS, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(r.segments).toEqual([]);
  });

  it.each([
    ['first', 0],
    ['middle', 2],
    ['last', 4],
  ])('rejects a list whose %s entry is not page aligned as PRP Offset Invalid', (_where, bad) => {
    const a = arenaOf(16);
    const listAt = 4 * PS;
    const entries = [8, 9, 10, 11, 12].map((p) => a.iovaOf(p * PS));
    entries[bad] = entries[bad]! + 512;
    putList(a, listAt, entries);
    const r = mapPrps(a, a.iovaOf(PS), a.iovaOf(listAt), 6 * PS, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(r.segments).toEqual([]);
  });

  it('rejects an entry with only bits 1:0 set (dword aligned is not enough for a list entry)', () => {
    const a = arenaOf(16);
    putList(a, 4 * PS, [a.iovaOf(8 * PS) + 4, a.iovaOf(9 * PS)]);
    expect(mapPrps(a, a.iovaOf(PS), a.iovaOf(4 * PS), 3 * PS, PS).status).toBe(PRP_OFFSET_INVALID_STATUS);
  });
});

describe('chained PRP lists', () => {
  // With 4 KiB pages a list page holds 512 entries; the last one chains when more than one page of data remains.
  const PER_PAGE = PS / 8;

  it('uses all 512 entries of one list page without chaining when they are exactly enough', () => {
    const a = arenaOf(1100);
    const listAt = 1 * PS;
    const dataPages = Array.from({ length: PER_PAGE }, (_, i) => 1090 - 2 * i); // descending, never adjacent
    putList(a, listAt, dataPages.map((p) => a.iovaOf(p * PS)));
    // The page after the list holds garbage: following a "chain" would fail.
    a.bytes.fill(0x33, 2 * PS, 3 * PS);
    const r = mapPrps(a, a.iovaOf(10 * PS), a.iovaOf(listAt), (PER_PAGE + 1) * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([[10 * PS, PS], ...dataPages.map((p) => [p * PS, PS] as [number, number])]);
  });

  it('follows the last entry to the next list page when one more page is needed (513 entries)', () => {
    const a = arenaOf(1100);
    const list1 = 1 * PS;
    const list2 = 40 * PS;
    const dataPages = Array.from({ length: PER_PAGE + 1 }, (_, i) => 1090 - 2 * i);
    putList(a, list1, [...dataPages.slice(0, PER_PAGE - 1).map((p) => a.iovaOf(p * PS)), a.iovaOf(list2)]);
    putList(a, list2, dataPages.slice(PER_PAGE - 1).map((p) => a.iovaOf(p * PS)));
    const r = mapPrps(a, a.iovaOf(20 * PS), a.iovaOf(list1), (PER_PAGE + 2) * PS, PS);
    expect(r.status).toBe(0);
    const segs = layout(a, r.segments);
    expect(segs).toHaveLength(PER_PAGE + 2);
    expect(segs).toEqual([[20 * PS, PS], ...dataPages.map((p) => [p * PS, PS] as [number, number])]);
    // The chain pointer itself is never data.
    expect(segs.some(([off]) => off === list2)).toBe(false);
  });

  it('walks a long transfer (600 pages) over two list pages, data pages in scattered order', () => {
    const a = arenaOf(1300);
    const list1 = 2 * PS;
    const list2 = 3 * PS;
    const n = 599; // pages after PRP1's
    // A permutation of pages 100.. (stride 7 mod 1200), so no two neighbours merge.
    const dataPages = Array.from({ length: n }, (_, i) => 100 + ((i * 7) % 1193));
    expect(new Set(dataPages).size).toBe(n);
    putList(a, list1, [...dataPages.slice(0, PER_PAGE - 1).map((p) => a.iovaOf(p * PS)), a.iovaOf(list2)]);
    putList(a, list2, dataPages.slice(PER_PAGE - 1).map((p) => a.iovaOf(p * PS)));
    const length = 600 * PS - 100;
    const r = mapPrps(a, a.iovaOf(50 * PS), a.iovaOf(list1), length, PS);
    expect(r.status).toBe(0);
    expect(total(r.segments)).toBe(length);
    const segs = layout(a, r.segments);
    const expected: Array<[number, number]> = [[50 * PS, PS]];
    dataPages.forEach((p, i) => expected.push([p * PS, i === n - 1 ? PS - 100 : PS]));
    // Adjacent pieces merge, so compare byte coverage in order rather than segment boundaries.
    expect(expandPages(segs)).toEqual(expandPages(expected));
  });

  it('chains early when the list starts mid-page: 2 entries left in the first list page', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 16; // room for 2 entries
    const list2 = 9 * PS;
    putList(a, list1, [a.iovaOf(20 * PS), a.iovaOf(list2)]);
    putList(a, list2, [a.iovaOf(30 * PS), a.iovaOf(25 * PS)]);
    const r = mapPrps(a, a.iovaOf(40 * PS + 2048), a.iovaOf(list1), 2048 + 3 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [40 * PS + 2048, 2048],
      [20 * PS, PS],
      [30 * PS, PS],
      [25 * PS, PS],
    ]);
  });

  it('chains at once when the list starts at the last qword of a page', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 8; // room for 1 entry: it must be the chain pointer
    const list2 = 9 * PS;
    putEntry(a, list1, a.iovaOf(list2));
    putList(a, list2, [a.iovaOf(30 * PS), a.iovaOf(32 * PS)]);
    const r = mapPrps(a, a.iovaOf(40 * PS), a.iovaOf(list1), 3 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [40 * PS, PS],
      [30 * PS, PS],
      [32 * PS, PS],
    ]);
  });

  it('does not chain when the last entry of a list page covers the rest of the transfer', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 16; // 2 entries: both data, the second one covers the last page
    putList(a, list1, [a.iovaOf(20 * PS), a.iovaOf(22 * PS)]);
    const r = mapPrps(a, a.iovaOf(40 * PS), a.iovaOf(list1), 3 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [40 * PS, PS],
      [20 * PS, PS],
      [22 * PS, PS],
    ]);
  });

  it('rejects a chain pointer that is not page aligned as PRP Offset Invalid', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 16;
    putList(a, list1, [a.iovaOf(20 * PS), a.iovaOf(9 * PS) + 8]);
    putList(a, 9 * PS + 8, [a.iovaOf(30 * PS), a.iovaOf(25 * PS)]);
    const r = mapPrps(a, a.iovaOf(40 * PS), a.iovaOf(list1), 4 * PS, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(r.segments).toEqual([]);
  });

  it('rejects a bad entry in a chained list page', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 16;
    putList(a, list1, [a.iovaOf(20 * PS), a.iovaOf(9 * PS)]);
    putList(a, 9 * PS, [a.iovaOf(30 * PS), 0]);
    const r = mapPrps(a, a.iovaOf(40 * PS), a.iovaOf(list1), 4 * PS, PS);
    expect(r.status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(r.segments).toEqual([]);
  });
});

describe('addresses outside host memory', () => {
  it('rejects PRP1 = 0 (the arena never starts at 0) as Data Transfer Error', () => {
    const a = arenaOf(4);
    expect(mapPrps(a, 0, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });

  it('rejects PRP1 just below the arena and at its end', () => {
    const a = arenaOf(4);
    expect(mapPrps(a, a.base - PS, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.base - 4, 0, 4, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.base + a.size, 0, 4, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    // The last dword of the arena is still inside.
    const last = mapPrps(a, a.base + a.size - 4, 0, 4, PS);
    expect(last.status).toBe(0);
    expect(layout(a, last.segments)).toEqual([[a.size - 4, 4]]);
  });

  it('rejects addresses that only differ from the arena in the upper 32 bits', () => {
    const a = arenaOf(4);
    const lowHalf = a.base % TWO32;
    expect(mapPrps(a, lowHalf + PS, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.base + 7 * TWO32 + PS, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });

  it('rejects addresses past 2^53 and near 2^64', () => {
    const a = arenaOf(4);
    expect(mapPrps(a, 2 ** 60, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, 0xffff_ffff_ffff_f000, 0, 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });

  it('rejects a zero or outside PRP2 data pointer as Data Transfer Error', () => {
    const a = arenaOf(8);
    expect(mapPrps(a, a.iovaOf(PS), 0, PS + 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.iovaOf(PS), a.base + a.size, PS + 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.iovaOf(PS), a.base - PS, PS + 512, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    // The arena's last page is fine.
    expect(mapPrps(a, a.iovaOf(PS), a.base + a.size - PS, 2 * PS, PS).status).toBe(0);
  });

  it('rejects a zero or outside list pointer as Data Transfer Error', () => {
    const a = arenaOf(8);
    expect(mapPrps(a, a.iovaOf(PS), 0, 3 * PS, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.iovaOf(PS), a.base + a.size, 3 * PS, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(mapPrps(a, a.iovaOf(PS), a.base + a.size + 8 * 1000, 3 * PS, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });

  it.each([
    ['zero', (_a: DmaArena) => 0],
    ['one page past the end', (a: DmaArena) => a.base + a.size],
    ['below the arena', (a: DmaArena) => a.base - 2 * PS],
    ['far away', (_a: DmaArena) => 0x7_0000_0000_0000],
  ])('rejects a %s list entry as Data Transfer Error, even when it is the last one', (_what, bad) => {
    const a = arenaOf(16);
    for (const at of [0, 1, 3]) {
      const entries = [8, 9, 10, 11].map((p) => a.iovaOf(p * PS));
      entries[at] = bad(a);
      putList(a, 4 * PS, entries);
      const r = mapPrps(a, a.iovaOf(PS), a.iovaOf(4 * PS), 5 * PS, PS);
      expect(r.status).toBe(DATA_TRANSFER_ERROR_STATUS);
      expect(r.segments).toEqual([]);
    }
  });

  it('rejects a zero chain pointer as Data Transfer Error', () => {
    const a = arenaOf(64);
    const list1 = 5 * PS + PS - 16;
    putList(a, list1, [a.iovaOf(20 * PS), 0]);
    expect(mapPrps(a, a.iovaOf(40 * PS), a.iovaOf(list1), 4 * PS, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });

  it('maps a list in the arena\'s last bytes that points at its last page', () => {
    const a = arenaOf(8);
    const listAt = a.size - 16;
    putList(a, listAt, [a.iovaOf(a.size - PS), a.iovaOf(2 * PS)]);
    const r = mapPrps(a, a.iovaOf(PS), a.iovaOf(listAt), 3 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [PS, PS],
      [a.size - PS, PS],
      [2 * PS, PS],
    ]);
  });
});

describe('host memory pages larger than the arena granule', () => {
  // CC.MPS may select 8 KiB pages while the arena is only a multiple of 4 KiB:
  // its last host page is then only partly backed. The controller must read only
  // the list entries and data bytes the transfer needs.
  it('maps a short list at the start of a half-backed last page', () => {
    const P8 = 8192;
    const a = new DmaArena({ sizeBytes: 3 * PS }); // 12 KiB: one full 8 KiB page and half of the next
    const listAt = P8; // page aligned, only 4 KiB of this page exist
    putList(a, listAt, [a.iovaOf(0), a.iovaOf(0)]);
    const r = mapPrps(a, a.iovaOf(P8 - 512), a.iovaOf(listAt), 512 + P8 + 512, P8);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [P8 - 512, 512],
      [0, P8],
      [0, 512],
    ]);
  });

  it('maps data ending inside a half-backed last page, and rejects data reaching past it', () => {
    const P8 = 8192;
    const a = new DmaArena({ sizeBytes: 3 * PS });
    const ok = mapPrps(a, a.iovaOf(0), a.iovaOf(P8), P8 + PS, P8);
    expect(ok.status).toBe(0);
    expect(layout(a, ok.segments)).toEqual([[0, P8 + PS]]);
    expect(mapPrps(a, a.iovaOf(0), a.iovaOf(P8), P8 + PS + 4, P8).status).toBe(DATA_TRANSFER_ERROR_STATUS);
  });
});

describe('segments', () => {
  it('are views on the arena\'s SharedArrayBuffer (zero copy), in both directions', () => {
    const a = arenaOf(16);
    putList(a, 4 * PS, [a.iovaOf(9 * PS), a.iovaOf(6 * PS)]);
    const r = mapPrps(a, a.iovaOf(PS + 256), a.iovaOf(4 * PS), 3 * PS - 256, PS);
    expect(r.status).toBe(0);
    for (const s of r.segments) {
      expect(s.buffer).toBe(a.buffer);
      expect(s.buffer).toBeInstanceOf(SharedArrayBuffer);
    }
    // Controller writes land in host memory...
    r.segments[1]!.fill(0xab);
    expect(a.bytes[9 * PS]).toBe(0xab);
    expect(a.bytes[10 * PS - 1]).toBe(0xab);
    expect(a.bytes[9 * PS - 1]).toBe(0);
    // ...and host writes are seen through the segments.
    a.bytes[PS + 256] = 0x5a;
    expect(r.segments[0]![0]).toBe(0x5a);
  });

  it('merge when consecutive pages are adjacent, and split where they are not', () => {
    const a = arenaOf(32);
    putList(a, 2 * PS, [5, 6, 7, 12, 13, 9].map((p) => a.iovaOf(p * PS)));
    const r = mapPrps(a, a.iovaOf(4 * PS + 100), a.iovaOf(2 * PS), PS - 100 + 6 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [4 * PS + 100, 4 * PS - 100],
      [12 * PS, 2 * PS],
      [9 * PS, PS],
    ]);
  });

  it('do not merge a later page with an earlier one that happens to precede it in memory', () => {
    const a = arenaOf(32);
    putList(a, 2 * PS, [5, 4].map((p) => a.iovaOf(p * PS)));
    const r = mapPrps(a, a.iovaOf(3 * PS), a.iovaOf(2 * PS), 3 * PS, PS);
    expect(r.status).toBe(0);
    expect(layout(a, r.segments)).toEqual([
      [3 * PS, PS],
      [5 * PS, PS],
      [4 * PS, PS],
    ]);
  });
});

describe('scatter and gather', () => {
  function segsOn(a: DmaArena, spans: Array<[number, number]>): Uint8Array[] {
    return spans.map(([off, len]) => a.bytes.subarray(off, off + len));
  }

  it('scatter copies the source into the segments in order', () => {
    const a = arenaOf(4);
    a.bytes.fill(0xee);
    const segs = segsOn(a, [[100, 3], [2000, 5], [50, 2]]);
    scatter(segs, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect([...a.bytes.subarray(100, 103)]).toEqual([1, 2, 3]);
    expect([...a.bytes.subarray(2000, 2005)]).toEqual([4, 5, 6, 7, 8]);
    expect([...a.bytes.subarray(50, 52)]).toEqual([9, 10]);
    // Nothing around them changed.
    expect(a.bytes[99]).toBe(0xee);
    expect(a.bytes[103]).toBe(0xee);
    expect(a.bytes[1999]).toBe(0xee);
    expect(a.bytes[2005]).toBe(0xee);
    expect(a.bytes[49]).toBe(0xee);
    expect(a.bytes[52]).toBe(0xee);
  });

  it('scatter zero-fills what the source does not cover, and ignores source bytes past the segments', () => {
    const a = arenaOf(4);
    a.bytes.fill(0xee);
    const segs = segsOn(a, [[10, 4], [20, 4], [30, 4]]);
    scatter(segs, Uint8Array.from([1, 2, 3, 4, 5, 6]));
    expect([...a.bytes.subarray(10, 14)]).toEqual([1, 2, 3, 4]);
    expect([...a.bytes.subarray(20, 24)]).toEqual([5, 6, 0, 0]);
    expect([...a.bytes.subarray(30, 34)]).toEqual([0, 0, 0, 0]);
    expect(a.bytes[34]).toBe(0xee);

    a.bytes.fill(0xee);
    scatter(segsOn(a, [[10, 2]]), Uint8Array.from([7, 8, 9, 10]));
    expect([...a.bytes.subarray(9, 13)]).toEqual([0xee, 7, 8, 0xee]);
  });

  it('gather concatenates the segments, up to the length asked for', () => {
    const a = arenaOf(4);
    a.bytes.set([1, 2, 3], 100);
    a.bytes.set([4, 5, 6, 7], 3000);
    a.bytes.set([8, 9], 40);
    const segs = segsOn(a, [[100, 3], [3000, 4], [40, 2]]);
    expect([...gather(segs, 9)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...gather(segs, 5)]).toEqual([1, 2, 3, 4, 5]);
    // Asking for more than the segments hold leaves zeroes at the end.
    expect([...gather(segs, 11)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0]);
  });

  it('gather returns a copy, not a view on the arena', () => {
    const a = arenaOf(4);
    a.bytes.set([1, 2, 3, 4], 8);
    const out = gather(segsOn(a, [[8, 4]]), 4);
    expect(out.buffer).not.toBe(a.buffer);
    a.bytes[8] = 99;
    expect(out[0]).toBe(1);
  });

  it('gather after scatter over mapped PRPs round-trips the data', () => {
    const a = arenaOf(32);
    putList(a, 2 * PS, [20, 7, 15, 3].map((p) => a.iovaOf(p * PS)));
    const length = 4 * PS + 1000;
    const r = mapPrps(a, a.iovaOf(10 * PS + PS - 1000), a.iovaOf(2 * PS), length, PS);
    expect(r.status).toBe(0);
    const src = new Uint8Array(length);
    for (let i = 0; i < length; i++) src[i] = (i * 131 + 7) & 0xff;
    scatter(r.segments, src);
    expect(gather(r.segments, length)).toEqual(src);
    // And the bytes really sit where the PRPs say.
    expect(a.bytes.subarray(10 * PS + PS - 1000, 11 * PS)).toEqual(src.subarray(0, 1000));
    expect(a.bytes.subarray(20 * PS, 21 * PS)).toEqual(src.subarray(1000, 1000 + PS));
    expect(a.bytes.subarray(3 * PS, 4 * PS)).toEqual(src.subarray(1000 + 3 * PS));
  });
});

/** Byte ranges as a list of [offset, length] pieces no longer than a page, for comparisons independent of merging. */
function expandPages(spans: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [off, len] of spans) {
    let o = off;
    let left = len;
    while (left > 0) {
      const n = Math.min(left, PS - (o % PS));
      out.push([o, n]);
      o += n;
      left -= n;
    }
  }
  return out;
}

describe('addresses at or above 2^53 (past what a double holds exactly)', () => {
  // Found by the fuzzer: rounded to a double, an unaligned address up there looked page aligned, and the
  // command failed with Data Transfer Error where the spec's offset checks say PRP Offset Invalid.
  it('a PRP list entry up there that is not page aligned is PRP Offset Invalid', () => {
    const a = arenaOf(8);
    const list = 2 * PS;
    // 0x44ad464b_dba29054: not page aligned; as a double it rounds to a multiple of 4096.
    a.view.setUint32(list, 0xdba29054, true);
    a.view.setUint32(list + 4, 0x44ad464b, true);
    const r = mapPrps(a, a.iovaOf(0), a.iovaOf(list), 3 * PS, PS);
    expect(r.status).toBe(PRP_OFFSET_INVALID_STATUS);
    expect(PRP_OFFSET_INVALID).toBe(PRP_OFFSET_INVALID_STATUS);
  });

  it('a page-aligned entry up there is outside host memory: Data Transfer Error', () => {
    const a = arenaOf(8);
    const list = 2 * PS;
    a.view.setUint32(list, 0xdba29000, true);
    a.view.setUint32(list + 4, 0x44ad464b, true);
    expect(mapPrps(a, a.iovaOf(0), a.iovaOf(list), 3 * PS, PS).status).toBe(DATA_TRANSFER_ERROR_STATUS);
    expect(DATA_TRANSFER_ERROR).toBe(DATA_TRANSFER_ERROR_STATUS);
  });
});
