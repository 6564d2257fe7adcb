/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and
 * final XOR 0xFFFFFFFF; the check value of "123456789" is 0xE3069283): the
 * checksum of fio's `verify=crc32c` and of the NVMe/TCP header and data
 * digests.
 *
 * Two implementations behind one function:
 *
 * - `native`: `@node-rs/crc32`, a prebuilt addon that uses the CPU's CRC32C
 *   instructions (SSE 4.2 on x86-64, the ARMv8 CRC extension on arm64). NVMe/TCP
 *   data digests cover every byte that crosses the wire, so they must keep up
 *   with the link.
 * - `javascript`: table-driven slice-by-8, used where the addon has no build
 *   for the platform (or fails its self-check). About 3 µs per 4 KiB.
 *
 * `crc32cImplementation` says which one this process loaded; the tests insist
 * on `native` on linux-x64.
 */
import { createRequire } from 'node:module';

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
 * The JavaScript CRC-32C: slice-by-8 (eight bytes per step, about eight times
 * the speed of the byte-at-a-time loop), with the byte loop for the unaligned
 * head and tail. Words are read through a Uint32Array, so this assumes a
 * little-endian host (x86-64, arm64: every platform Node ships on). Exported
 * for the tests and the fallback; callers use `crc32c`.
 */
export function crc32cJavaScript(data: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
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

type Crc32cFn = (input: Uint8Array, initialState?: number) => number;

/** The standard check input and value (the "check" of the CRC catalogue). */
const CHECK_INPUT = Uint8Array.from('123456789', (ch) => ch.charCodeAt(0));
const CHECK_VALUE = 0xe3069283;

/**
 * The addon's crc32c, or null when it cannot be loaded here or computes
 * something else than the JavaScript one (a broken build must not corrupt
 * digests: the self-check includes a seeded call and a SharedArrayBuffer
 * view, which the DMA arena's buffers are).
 */
function loadNative(): Crc32cFn | null {
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c?: unknown };
    if (typeof mod.crc32c !== 'function') return null;
    const fn = mod.crc32c as Crc32cFn;
    const shared = new Uint8Array(new SharedArrayBuffer(CHECK_INPUT.length + 3), 3);
    shared.set(CHECK_INPUT);
    const ok =
      fn(CHECK_INPUT) >>> 0 === CHECK_VALUE &&
      fn(shared) >>> 0 === CHECK_VALUE &&
      fn(CHECK_INPUT.subarray(4), fn(CHECK_INPUT.subarray(0, 4))) >>> 0 === CHECK_VALUE;
    return ok ? fn : null;
  } catch {
    return null;
  }
}

const native = loadNative();

/** Which implementation `crc32c` runs in this process. */
export const crc32cImplementation: 'native' | 'javascript' = native !== null ? 'native' : 'javascript';

/**
 * Below this many bytes the JavaScript loop beats the addon's call overhead
 * (PDU headers are 24 to 132 bytes): 67 vs 84 ns for 24 bytes, even at 128
 * (bench/crc32c.mjs, bench/RESULTS.md).
 */
const NATIVE_MIN_BYTES = 96;

/**
 * CRC-32C of `data`, continuing from `seed` (the value a previous call
 * returned; 0 to start), so a block can be summed in pieces:
 * `crc32c(b, crc32c(a)) === crc32c(a ++ b)`. Any Uint8Array (a Buffer, a
 * subarray, a view of a SharedArrayBuffer).
 */
export const crc32c: (data: Uint8Array, seed?: number) => number =
  native !== null ? (data, seed = 0) => (data.length < NATIVE_MIN_BYTES ? crc32cJavaScript(data, seed) : native(data, seed) >>> 0) : crc32cJavaScript;
