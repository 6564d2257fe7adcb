import { describe, it, expect } from 'vitest';
import { crc32c, crc32cJavaScript, crc32cImplementation } from '../../../src/engine/shared/crc32c.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A deterministic pseudo-random byte stream (xorshift32), so a failure reproduces. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const implementations = [
  ['crc32c (as loaded)', crc32c],
  ['crc32cJavaScript', crc32cJavaScript],
] as const;

for (const [name, fn] of implementations) {
  describe(name, () => {
    it('matches the standard check values', () => {
      expect(fn(ascii('123456789'))).toBe(0xe3069283);
      expect(fn(new Uint8Array(0))).toBe(0);
      // RFC 3720 (iSCSI) B.4 vectors: 32 bytes of zeroes, of ones, ascending and descending.
      expect(fn(new Uint8Array(32))).toBe(0x8a9136aa);
      expect(fn(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
      expect(fn(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
      expect(fn(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    });

    it('gives the same value at any alignment and when continued in pieces', () => {
      const data = bytes(1000, 7919);
      const whole = fn(data);
      const backing = new Uint8Array(1010);
      for (let off = 0; off < 8; off++) {
        backing.set(data, off);
        expect(fn(backing.subarray(off, off + 1000))).toBe(whole);
      }
      for (const cut of [0, 1, 3, 8, 333, 999, 1000]) expect(fn(data.subarray(cut), fn(data.subarray(0, cut)))).toBe(whole);
    });

    it('reads Buffers and views over a SharedArrayBuffer (the DMA arena)', () => {
      const data = bytes(4096 + 13, 42);
      const want = crc32cJavaScript(data.subarray(5, 4096 + 5));
      const shared = new Uint8Array(new SharedArrayBuffer(data.length));
      shared.set(data);
      expect(fn(shared.subarray(5, 4096 + 5))).toBe(want);
      expect(fn(Buffer.from(shared.buffer, 5, 4096))).toBe(want);
      expect(fn(Buffer.from(data.subarray(5, 4096 + 5)))).toBe(want);
    });

    it('returns an unsigned 32-bit value', () => {
      for (let i = 0; i < 64; i++) {
        const v = fn(bytes(i * 3, i + 1));
        expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
      }
    });
  });
}

describe('crc32c: native and JavaScript agree', () => {
  it('on random data of many lengths and offsets, one-shot and seeded', () => {
    const data = bytes(70_000, 12345);
    const lengths = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 72, 76, 127, 128, 132, 255, 511, 4096, 4100, 8191, 65_536];
    for (const len of lengths) {
      for (const off of [0, 1, 3, 4, 7]) {
        const piece = data.subarray(off, off + len);
        const want = crc32cJavaScript(piece);
        expect(crc32c(piece), `length ${len} at offset ${off}`).toBe(want);
        const cut = len >>> 1;
        expect(crc32c(piece.subarray(cut), crc32c(piece.subarray(0, cut)))).toBe(want);
        expect(crc32cJavaScript(piece.subarray(cut), crc32cJavaScript(piece.subarray(0, cut)))).toBe(want);
      }
    }
  });
});

describe('crc32cImplementation', () => {
  it('is native on linux-x64 (the SIMD addon installs and loads there)', () => {
    if (process.platform === 'linux' && process.arch === 'x64') expect(crc32cImplementation).toBe('native');
    else expect(['native', 'javascript']).toContain(crc32cImplementation);
  });
});
