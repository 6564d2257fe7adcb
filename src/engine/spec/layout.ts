/**
 * Field tables for NVMe structures.
 *
 * Every structure the spec defines is described once, as a table of named
 * fields (byte offset, width, and for bit fields a shift and bit count). Code
 * elsewhere reads `Sqe.CDW10.offset` instead of a bare number, and
 * `checkLayout()` (run by the tests) proves that every field lies inside its
 * structure and that no two byte fields overlap.
 *
 * All multi-byte NVMe fields are little endian.
 */

export interface Field {
  readonly name: string;
  /** Byte offset from the start of the structure. */
  readonly offset: number;
  /** Width in bytes of the containing field (1, 2, 4, 8, 16 or any length for byte arrays). */
  readonly size: number;
  /** For a bit field: the lowest bit inside the containing little-endian word. */
  readonly shift: number;
  /** For a bit field: the number of bits; 0 means the whole field. */
  readonly bits: number;
}

export type FieldSpec = readonly [offset: number, size: number] | readonly [offset: number, size: number, shift: number, bits: number];

export type Struct<T extends Record<string, FieldSpec>> = {
  readonly [K in keyof T]: Field;
} & {
  readonly $name: string;
  readonly $size: number;
  readonly $fields: readonly Field[];
};

export function struct<T extends Record<string, FieldSpec>>(name: string, size: number, spec: T): Struct<T> {
  const out: Record<string, unknown> = { $name: name, $size: size };
  const fields: Field[] = [];
  for (const [key, s] of Object.entries(spec)) {
    const f: Field = Object.freeze({ name: key, offset: s[0], size: s[1], shift: s[2] ?? 0, bits: s[3] ?? 0 });
    out[key] = f;
    fields.push(f);
  }
  out.$fields = Object.freeze(fields);
  return Object.freeze(out) as Struct<T>;
}

/** Problems with a layout: fields past the end, overlapping byte fields, bad bit ranges. */
export function checkLayout(s: { $name: string; $size: number; $fields: readonly Field[] }): string[] {
  const problems: string[] = [];
  const whole = s.$fields.filter((f) => f.bits === 0);
  for (const f of s.$fields) {
    if (f.offset < 0 || f.offset + f.size > s.$size) problems.push(`${s.$name}.${f.name} [${f.offset}, +${f.size}) lies outside ${s.$size} bytes`);
    if (f.bits !== 0 && (f.shift + f.bits > f.size * 8 || f.bits > 32)) problems.push(`${s.$name}.${f.name} bits ${f.shift}+${f.bits} do not fit a ${f.size}-byte word`);
  }
  const sorted = [...whole].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    // A whole field may contain narrower whole fields (CDW0 holds OPC, CID): only partial overlap is wrong.
    const contains = cur.offset + cur.size <= prev.offset + prev.size;
    if (cur.offset < prev.offset + prev.size && !contains) {
      problems.push(`${s.$name}.${cur.name} overlaps ${s.$name}.${prev.name}`);
    }
  }
  return problems;
}

/** Reads a field of up to 4 bytes (or a bit field inside one) as an unsigned number. */
export function readField(dv: DataView, base: number, f: Field): number {
  let v: number;
  switch (f.size) {
    case 1: v = dv.getUint8(base + f.offset); break;
    case 2: v = dv.getUint16(base + f.offset, true); break;
    case 4: v = dv.getUint32(base + f.offset, true); break;
    case 8: {
      if (f.bits !== 0) throw new Error(`bit fields in 8-byte words are not supported (${f.name})`);
      return readU64(dv, base + f.offset);
    }
    default: throw new Error(`field ${f.name} of ${f.size} bytes is not a number`);
  }
  if (f.bits === 0) return v;
  return f.bits === 32 ? v >>> 0 : (v >>> f.shift) & ((1 << f.bits) - 1);
}

/** Writes a field of up to 8 bytes (or a bit field inside one), keeping the other bits of the word. */
export function writeField(dv: DataView, base: number, f: Field, value: number): void {
  if (f.bits !== 0) {
    const mask = (f.bits === 32 ? 0xffffffff : ((1 << f.bits) - 1) << f.shift) >>> 0;
    const old = f.size === 1 ? dv.getUint8(base + f.offset) : f.size === 2 ? dv.getUint16(base + f.offset, true) : dv.getUint32(base + f.offset, true);
    const nv = ((old & ~mask) | ((value << f.shift) & mask)) >>> 0;
    if (f.size === 1) dv.setUint8(base + f.offset, nv);
    else if (f.size === 2) dv.setUint16(base + f.offset, nv, true);
    else dv.setUint32(base + f.offset, nv, true);
    return;
  }
  switch (f.size) {
    case 1: dv.setUint8(base + f.offset, value); break;
    case 2: dv.setUint16(base + f.offset, value, true); break;
    case 4: dv.setUint32(base + f.offset, value >>> 0, true); break;
    case 8: writeU64(dv, base + f.offset, value); break;
    case 16: writeU128(dv, base + f.offset, value); break;
    default: throw new Error(`field ${f.name} of ${f.size} bytes is not a number`);
  }
}

/** Writes ASCII text padded with spaces, as the spec wants for SN, MN and FR. */
export function writeAscii(dv: DataView, base: number, f: Field, text: string): void {
  for (let i = 0; i < f.size; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x20;
    dv.setUint8(base + f.offset + i, c >= 0x20 && c < 0x7f ? c : 0x3f);
  }
}

export function readAscii(dv: DataView, base: number, f: Field): string {
  let s = '';
  for (let i = 0; i < f.size; i++) s += String.fromCharCode(dv.getUint8(base + f.offset + i));
  return s.replace(/[\s\0]+$/, '');
}

const TWO32 = 0x1_0000_0000;

/**
 * A 64-bit host address as a Number: exact below 2^53; at or above it (no
 * host memory is there) a value just under 2^53 with the same low 16 bits,
 * so that alignment checks (dword, PRP entry, page up to 64 KiB) still see
 * the address's real offset, which rounding to a double would lose.
 */
export function addressOf(lo: number, hi: number): number {
  return hi < 0x20_0000 ? lo + hi * TWO32 : HIGH_ADDRESS + (lo & 0xffff);
}
const HIGH_ADDRESS = 2 ** 53 - 0x1_0000;

/** A PRP entry (or any 64-bit host address) read little endian, as addressOf() gives it. */
export function readAddress(dv: DataView, at: number): number {
  return addressOf(dv.getUint32(at, true), dv.getUint32(at + 4, true));
}

/** A 64-bit little-endian value as a number; values past 2^53 lose precision, which no field we read can reach. */
export function readU64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * TWO32;
}

export function writeU64(dv: DataView, at: number, value: number): void {
  dv.setUint32(at, value % TWO32, true);
  dv.setUint32(at + 4, Math.floor(value / TWO32), true);
}

/** A 128-bit counter (SMART log): the low 64 bits carry the value, the high 64 are zero. */
export function writeU128(dv: DataView, at: number, value: number): void {
  writeU64(dv, at, value);
  writeU64(dv, at + 8, 0);
}

export function readU128(dv: DataView, at: number): number {
  return readU64(dv, at) + readU64(dv, at + 8) * 2 ** 64;
}

/** A bit field of a dword already in hand (a command's CDWn, a register value). */
export function bitsOf(dword: number, f: Field): number {
  if (f.bits === 0 || f.bits === 32) return dword >>> 0;
  return (dword >>> f.shift) & ((1 << f.bits) - 1);
}

/** `dword` with the bit field `f` set to `value`. */
export function withBits(dword: number, f: Field, value: number): number {
  if (f.bits === 0 || f.bits === 32) return value >>> 0;
  const mask = ((1 << f.bits) - 1) << f.shift;
  return ((dword & ~mask) | ((value << f.shift) & mask)) >>> 0;
}
