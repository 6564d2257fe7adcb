// A stamped 4096-byte block: magic, LBA, generation and cut number, a filler derived from
// them, and the SHA-256 of everything before it in the last 32 bytes. The power-cut test
// writes these in the guest and checks them on the host.
import { createHash } from 'node:crypto';

export const BLOCK = 4096;
const MAGIC = 0x5443_5051; // "QPCT" little-endian
const SUM = BLOCK - 32;

export function makeBlock(lba, gen, cut) {
  const b = new Uint8Array(BLOCK);
  const v = new DataView(b.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, lba, true);
  v.setUint32(8, gen, true);
  v.setUint32(12, cut, true);
  let x = (lba * 2654435761 + gen * 40503 + cut) >>> 0 || 1;
  for (let i = 16; i < SUM; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    v.setUint32(i, x, true);
  }
  b.set(createHash('sha256').update(b.subarray(0, SUM)).digest(), SUM);
  return b;
}

/** 'zero' (never written), 'bad' (neither zero nor a valid stamp), or { lba, gen, cut }. */
export function readStamp(b) {
  if (b.every((x) => x === 0)) return 'zero';
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint32(0, true) !== MAGIC) return 'bad';
  const sum = createHash('sha256').update(b.subarray(0, SUM)).digest();
  if (!sum.equals(Buffer.from(b.buffer, b.byteOffset + SUM, 32))) return 'bad';
  return { lba: v.getUint32(4, true), gen: v.getUint32(8, true), cut: v.getUint32(12, true) };
}
