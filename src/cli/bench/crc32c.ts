/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum fio's
 * `verify=crc32c` and NVMe's own data-integrity formats use. Node 20 has no
 * built-in one; this is table-driven slice-by-8 (eight bytes per step, about
 * eight times the speed of the byte-at-a-time loop), with the byte loop for
 * the unaligned head and tail. Words are read through a Uint32Array, so this
 * assumes a little-endian host (x86-64, arm64: every platform Node ships on).
 */
const POLY = 0x82f63b78;

/** TABLES[k][b]: the CRC of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0]![b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[0]![b]!;
    for (let k = 1; k < 8; k++) {
      c = t[0]![c & 0xff]! ^ (c >>> 8);
      t[k]![b] = c >>> 0;
    }
  }
  return t;
})();
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

/**
 * CRC-32C of `data`, continuing from `crc` (the value a previous call
 * returned; 0 to start), so a block can be summed in pieces.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  // Byte steps until the data is 4-byte aligned, so the body can read 32-bit words.
  while (i < n && (data.byteOffset + i) & 3) c = T0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  const words = (n - i) >>> 3;
  if (words > 0) {
    // Little-endian words: the byte order the reflected CRC consumes.
    const w = new Uint32Array(data.buffer, data.byteOffset + i, words * 2);
    for (let k = 0; k < w.length; k += 2) {
      const lo = w[k]! ^ c;
      const hi = w[k + 1]!;
      c =
        T7[lo & 0xff]! ^
        T6[(lo >>> 8) & 0xff]! ^
        T5[(lo >>> 16) & 0xff]! ^
        T4[lo >>> 24]! ^
        T3[hi & 0xff]! ^
        T2[(hi >>> 8) & 0xff]! ^
        T1[(hi >>> 16) & 0xff]! ^
        T0[hi >>> 24]!;
    }
    i += words * 8;
  }
  while (i < n) c = T0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
