/**
 * The verify stamp (`--verify crc32c`): every block a verifying job writes
 * starts with a 32-byte header and carries a payload derived from its LBA and
 * write sequence, so a read can tell a block that is wrong from one that is
 * merely old, misplaced or torn.
 *
 * | bytes | field |
 * | --- | --- |
 * | 0..3 | magic 'NVMQ' (0x514D564E, little endian) |
 * | 4..7 | block size in bytes |
 * | 8..15 | LBA of the block's first sector (u64) |
 * | 16..19 | write sequence (per worker, from 1) |
 * | 20..23 | writer (worker index) |
 * | 24..27 | crc32c of bytes 0..23 and 28..bs-1 |
 * | 28..31 | reserved, 0 |
 * | 32..bs-1 | xorshift32 stream seeded by LBA and sequence |
 */
import { crc32c } from '../../engine/shared/crc32c.js';

export const MAGIC = 0x514d564e;
export const HEADER_BYTES = 32;
const H_MAGIC = 0;
const H_BS = 1;
const H_LBA_LO = 2;
const H_LBA_HI = 3;
const H_SEQ = 4;
const H_WRITER = 5;
const H_CRC = 6;
const H_RESERVED = 7;

function words(buf: Uint8Array): Uint32Array {
  return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
}

function blockCrc(buf: Uint8Array): number {
  return crc32c(buf.subarray(H_RESERVED * 4), crc32c(buf.subarray(0, H_CRC * 4)));
}

/** Stamps `buf` (4-byte aligned, a multiple of 4 bytes) as block `lba` written with sequence `seq`. */
export function stampBlock(buf: Uint8Array, lba: number, seq: number, writer: number): void {
  const w = words(buf);
  w[H_MAGIC] = MAGIC;
  w[H_BS] = buf.length;
  w[H_LBA_LO] = lba >>> 0;
  w[H_LBA_HI] = Math.floor(lba / 0x1_0000_0000);
  w[H_SEQ] = seq;
  w[H_WRITER] = writer;
  w[H_RESERVED] = 0;
  let x = (lba ^ Math.imul(seq, 0x9e3779b9)) >>> 0 || 1;
  for (let i = HEADER_BYTES / 4; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x;
  }
  w[H_CRC] = blockCrc(buf);
}

/** Whether the block carries a verify header at all (an unwritten block does not). */
export function isStamped(buf: Uint8Array): boolean {
  return words(buf)[H_MAGIC] === MAGIC;
}

/**
 * Checks a block read back at `lba`. `seq` is the sequence of the last write
 * this run made to it, or 0 when the run has not written it (then the header
 * must only be self-consistent). Returns why it is wrong, or undefined.
 */
export function checkBlock(buf: Uint8Array, lba: number, seq: number): string | undefined {
  const w = words(buf);
  if (w[H_MAGIC] !== MAGIC) return `no verify header (magic 0x${w[H_MAGIC]!.toString(16).padStart(8, '0')})`;
  if (w[H_BS] !== buf.length) return `header says a ${w[H_BS]}-byte block, read ${buf.length}`;
  const at = w[H_LBA_LO]! + w[H_LBA_HI]! * 0x1_0000_0000;
  if (at !== lba) return `block stamped for LBA ${at}`;
  const crc = blockCrc(buf);
  if (crc !== w[H_CRC]) return `crc32c 0x${crc.toString(16).padStart(8, '0')}, header has 0x${w[H_CRC]!.toString(16).padStart(8, '0')}`;
  if (seq !== 0 && w[H_SEQ] !== seq) return `write sequence ${w[H_SEQ]}, expected ${seq} (a lost or stale write)`;
  return undefined;
}
