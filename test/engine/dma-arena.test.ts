/**
 * DmaArena: the bounds check every controller access goes through, and the
 * page allocator behind queue rings, PRP lists and data buffers.
 */
import { describe, it, expect } from 'vitest';
import { ARENA_PAGE_SIZE, DEFAULT_IOVA_BASE, DmaArena, type DmaBuffer } from '../../src/engine/dma-arena.js';

const PAGE = ARENA_PAGE_SIZE;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  throw new Error('expected a throw');
}

describe('construction', () => {
  it('uses 4 KiB pages and a default IOVA base above 4 GiB', () => {
    expect(PAGE).toBe(4096);
    expect(DEFAULT_IOVA_BASE).toBeGreaterThanOrEqual(2 ** 32);
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    expect(a.base).toBe(DEFAULT_IOVA_BASE);
    expect(a.size).toBe(4 * PAGE);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    // A page to spare, so the arena can start on a real page boundary.
    expect(a.buffer.byteLength).toBe(5 * PAGE);
    expect(a.bytes.length).toBe(4 * PAGE);
    expect(a.bytes.buffer).toBe(a.buffer);
    expect(a.view.buffer).toBe(a.buffer);
    expect(a.freePages()).toBe(4);
  });

  for (const bad of [0, -PAGE, 1, PAGE - 1, PAGE + 1, PAGE * 1.5, NaN, Infinity]) {
    it(`rejects size ${bad}`, () => {
      expect(() => new DmaArena({ sizeBytes: bad })).toThrow(RangeError);
    });
  }

  for (const bad of [0, -PAGE, 100, PAGE + 1]) {
    it(`rejects IOVA base ${bad}`, () => {
      expect(() => new DmaArena({ sizeBytes: PAGE, base: bad })).toThrow(RangeError);
    });
  }

  it('accepts a custom page-aligned base', () => {
    const a = new DmaArena({ sizeBytes: 2 * PAGE, base: 0x2000 });
    expect(a.base).toBe(0x2000);
    expect(a.translate(0x2000, 1)).toBe(0);
    expect(a.translate(0x1fff, 1)).toBe(-1);
    expect(a.iovaOf(PAGE)).toBe(0x2000 + PAGE);
  });

  it('maps the same memory from a handle', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE, base: 0x10000 });
    const b = new DmaArena(a.handle());
    expect(b.buffer).toBe(a.buffer);
    expect(b.base).toBe(a.base);
    expect(b.size).toBe(a.size);
    a.bytes[PAGE + 3] = 0x42;
    expect(b.bytes[b.translate(0x10000 + PAGE + 3, 1)]).toBe(0x42);
  });

  it('rejects a handle with a bad base', () => {
    expect(() => new DmaArena({ buffer: new SharedArrayBuffer(PAGE), base: 0 })).toThrow(RangeError);
  });
});

describe('translate', () => {
  const a = new DmaArena({ sizeBytes: 4 * PAGE });
  const base = a.base;
  const end = base + a.size;

  it('maps IOVAs inside the arena to offsets', () => {
    expect(a.translate(base, 1)).toBe(0);
    expect(a.translate(base, a.size)).toBe(0);
    expect(a.translate(base + PAGE + 8, 64)).toBe(PAGE + 8);
    expect(a.translate(end - 1, 1)).toBe(a.size - 1);
    expect(a.translate(end - 16, 16)).toBe(a.size - 16);
  });

  it('is the inverse of iovaOf', () => {
    for (const off of [0, 1, PAGE, 3 * PAGE + 17]) expect(a.translate(a.iovaOf(off), 1)).toBe(off);
  });

  it('rejects IOVA 0 (a null PRP)', () => {
    expect(a.translate(0, 1)).toBe(-1);
    expect(a.translate(0, 0)).toBe(-1);
  });

  it('rejects IOVAs below the base', () => {
    expect(a.translate(base - 1, 1)).toBe(-1);
    expect(a.translate(base - PAGE, PAGE)).toBe(-1);
    // Starting below and reaching in is still outside.
    expect(a.translate(base - 1, 2)).toBe(-1);
    // The low 32 bits alone would match the arena: the high half must count.
    expect(a.translate(base % 2 ** 32, 1)).toBe(-1);
  });

  it('rejects IOVAs past the end', () => {
    expect(a.translate(end, 1)).toBe(-1);
    expect(a.translate(end + PAGE, 1)).toBe(-1);
    expect(a.translate(base + 2 ** 40, 1)).toBe(-1);
  });

  it('rejects ranges that cross the end', () => {
    expect(a.translate(end - 1, 2)).toBe(-1);
    expect(a.translate(end - PAGE, PAGE + 1)).toBe(-1);
    expect(a.translate(base, a.size + 1)).toBe(-1);
    expect(a.translate(base, Infinity)).toBe(-1);
  });

  it('rejects a negative length', () => {
    expect(a.translate(base, -1)).toBe(-1);
    expect(a.translate(base + PAGE, -PAGE)).toBe(-1);
  });

  it('rejects a NaN IOVA', () => {
    expect(a.translate(NaN, 1)).toBe(-1);
    expect(a.translate(NaN, 0)).toBe(-1);
  });

  it('rejects a NaN length', () => {
    expect(a.translate(base, NaN)).toBe(-1);
  });

  it('rejects IOVAs that are not safe integers', () => {
    expect(a.translate(base + 0.5, 1)).toBe(-1);
    expect(a.translate(2 ** 53 + 2, 1)).toBe(-1);
    expect(a.translate(Infinity, 1)).toBe(-1);
    expect(a.translate(-Infinity, 1)).toBe(-1);
  });
});

describe('alloc', () => {
  it('returns page-aligned, page-rounded buffers with matching IOVAs', () => {
    const a = new DmaArena({ sizeBytes: 16 * PAGE });
    for (const size of [1, 512, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE]) {
      const buf = a.alloc(size);
      expect(buf.offset % PAGE).toBe(0);
      expect(buf.iova % PAGE).toBe(0);
      expect(buf.size).toBe(Math.ceil(size / PAGE) * PAGE);
      expect(buf.bytes.length).toBe(buf.size);
      expect(buf.iova).toBe(a.base + buf.offset);
      expect(a.translate(buf.iova, buf.size)).toBe(buf.offset);
    }
    expect(a.freePages()).toBe(16 - (1 + 1 + 1 + 1 + 2 + 3));
  });

  it('hands out buffers that do not overlap', () => {
    const a = new DmaArena({ sizeBytes: 16 * PAGE });
    const bufs = [a.alloc(PAGE), a.alloc(2 * PAGE), a.alloc(1), a.alloc(5 * PAGE)];
    const ranges = bufs.map((b) => [b.offset, b.offset + b.size] as const).sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]);
  });

  it('returns views of the arena memory (zero copy)', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    a.alloc(PAGE);
    const buf = a.alloc(2 * PAGE);
    expect(buf.bytes.buffer).toBe(a.buffer);
    expect(a.offsetOf(buf.bytes)).toBe(buf.offset);
    buf.bytes[0] = 0x12;
    buf.bytes[buf.size - 1] = 0x34;
    expect(a.bytes[buf.offset]).toBe(0x12);
    expect(a.bytes[buf.offset + buf.size - 1]).toBe(0x34);
    a.view.setUint8(buf.offset + 100, 0x56);
    expect(buf.bytes[100]).toBe(0x56);
  });

  it('zeroes pages, also when they were used before', () => {
    const a = new DmaArena({ sizeBytes: 2 * PAGE });
    const first = a.alloc(2 * PAGE);
    first.bytes.fill(0xff);
    a.release(first);
    const again = a.alloc(2 * PAGE);
    expect(again.offset).toBe(first.offset);
    expect(again.bytes.every((x) => x === 0)).toBe(true);
  });

  it('zeroes pages written directly through the arena', () => {
    const a = new DmaArena({ sizeBytes: 2 * PAGE });
    a.bytes.fill(0x77);
    const buf = a.alloc(PAGE);
    expect(buf.bytes.every((x) => x === 0)).toBe(true);
    // and only the allocated pages
    expect(a.bytes[buf.offset === 0 ? PAGE : 0]).toBe(0x77);
  });

  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    it(`rejects size ${bad}`, () => {
      const a = new DmaArena({ sizeBytes: PAGE });
      expect(() => a.alloc(bad)).toThrow(RangeError);
      expect(a.freePages()).toBe(1);
    });
  }

  it('throws NVMQ_ARENA_EXHAUSTED when the arena is full', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    a.alloc(4 * PAGE);
    expect(a.freePages()).toBe(0);
    expect(() => a.alloc(1)).toThrow(/exhausted/);
    expect(codeOf(() => a.alloc(1))).toBe('NVMQ_ARENA_EXHAUSTED');
  });

  it('throws NVMQ_ARENA_EXHAUSTED for a request larger than the arena', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    expect(codeOf(() => a.alloc(4 * PAGE + 1))).toBe('NVMQ_ARENA_EXHAUSTED');
    // A failed alloc takes nothing.
    expect(a.freePages()).toBe(4);
    expect(a.alloc(4 * PAGE).size).toBe(4 * PAGE);
  });
});

describe('release', () => {
  it('returns pages to the arena', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    const buf = a.alloc(3 * PAGE);
    expect(a.freePages()).toBe(1);
    a.release(buf);
    expect(a.freePages()).toBe(4);
  });

  it('merges free extents so a large allocation succeeds again after fragmentation', () => {
    const a = new DmaArena({ sizeBytes: 8 * PAGE });
    const bufs: DmaBuffer[] = [];
    for (let i = 0; i < 8; i++) bufs.push(a.alloc(PAGE));
    // Free every other page: 4 free pages, none adjacent.
    for (const i of [1, 3, 5, 7]) a.release(bufs[i]!);
    expect(a.freePages()).toBe(4);
    expect(codeOf(() => a.alloc(2 * PAGE))).toBe('NVMQ_ARENA_EXHAUSTED');
    // Free the rest out of order; neighbours on both sides must merge.
    for (const i of [4, 0, 6, 2]) a.release(bufs[i]!);
    expect(a.freePages()).toBe(8);
    const big = a.alloc(8 * PAGE);
    expect(big.offset).toBe(0);
    expect(big.size).toBe(8 * PAGE);
  });

  it('merges a freed extent with the one before and the one after', () => {
    const a = new DmaArena({ sizeBytes: 6 * PAGE });
    const x = a.alloc(2 * PAGE);
    const y = a.alloc(2 * PAGE);
    const z = a.alloc(2 * PAGE);
    a.release(x);
    a.release(z);
    expect(codeOf(() => a.alloc(3 * PAGE))).toBe('NVMQ_ARENA_EXHAUSTED');
    a.release(y);
    expect(a.alloc(6 * PAGE).offset).toBe(0);
  });

  it('lets a freed hole be reused by a smaller allocation', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    const x = a.alloc(2 * PAGE);
    a.alloc(2 * PAGE);
    a.release(x);
    const s = a.alloc(PAGE);
    expect(s.offset).toBe(x.offset);
    expect(a.freePages()).toBe(1);
  });

  it('throws on a double release and leaves the free count alone', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    const buf = a.alloc(PAGE);
    a.release(buf);
    expect(() => a.release(buf)).toThrow();
    expect(a.freePages()).toBe(4);
  });

  it('throws for a buffer it never allocated', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    a.alloc(PAGE);
    const fake: DmaBuffer = { iova: a.base + 2 * PAGE, offset: 2 * PAGE, size: PAGE, bytes: a.bytes.subarray(2 * PAGE, 3 * PAGE) };
    expect(() => a.release(fake)).toThrow();
    const odd: DmaBuffer = { iova: a.base + 100, offset: 100, size: PAGE, bytes: new Uint8Array(PAGE) };
    expect(() => a.release(odd)).toThrow();
    expect(a.freePages()).toBe(3);
  });

  it('throws for a buffer from another arena at an offset it does not own', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    const other = new DmaArena({ sizeBytes: 4 * PAGE });
    a.alloc(PAGE);
    other.alloc(PAGE);
    const foreign = other.alloc(PAGE);
    expect(() => a.release(foreign)).toThrow();
    expect(a.freePages()).toBe(3);
  });

  it('throws for a buffer from another arena even when it owns a buffer at the same offset', () => {
    const a = new DmaArena({ sizeBytes: 4 * PAGE });
    const other = new DmaArena({ sizeBytes: 4 * PAGE });
    const mine = a.alloc(PAGE);
    const foreign = other.alloc(PAGE);
    expect(foreign.offset).toBe(mine.offset);
    expect(() => a.release(foreign)).toThrow();
    // `mine` must still be allocated.
    expect(a.freePages()).toBe(3);
  });
});

describe('contains', () => {
  const a = new DmaArena({ sizeBytes: 4 * PAGE });

  it('is true for the arena bytes, its allocations and their subarrays', () => {
    expect(a.contains(a.bytes)).toBe(true);
    const buf = a.alloc(PAGE);
    expect(a.contains(buf.bytes)).toBe(true);
    expect(a.contains(buf.bytes.subarray(10, 20))).toBe(true);
    expect(a.contains(new Uint8Array(a.buffer, a.skew + 3 * PAGE, 16))).toBe(true);
  });

  it('is true for a second mapping of the same memory', () => {
    const b = new DmaArena(a.handle());
    expect(b.contains(a.bytes)).toBe(true);
  });

  it('is false for ordinary and other shared memory', () => {
    expect(a.contains(new Uint8Array(PAGE))).toBe(false);
    expect(a.contains(new Uint8Array(new SharedArrayBuffer(PAGE)))).toBe(false);
    expect(a.contains(Buffer.alloc(16))).toBe(false);
    const other = new DmaArena({ sizeBytes: PAGE });
    expect(a.contains(other.bytes)).toBe(false);
    expect(a.contains(other.alloc(1).bytes)).toBe(false);
  });
});
