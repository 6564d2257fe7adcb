/**
 * Argument checks of the public host API. A bad argument is an NvmqError
 * with code NVMQ_INVALID_ARGUMENT and a one-line message naming the
 * argument, what it accepts and what it got: "nlb must be 1..65536, got -1".
 *
 * The checks on the I/O path (read / write) are integer compares and a type
 * test; the message is built only once a check has failed.
 */
import { NvmqError } from '../errors.js';
import { SQE_SIZE, Sqe } from '../spec/command.js';
import { readU64 } from '../spec/layout.js';

export function invalidArgument(name: string, accepted: string, got: unknown): NvmqError {
  return new NvmqError('NVMQ_INVALID_ARGUMENT', `${name} must be ${accepted}, got ${describeValue(got)}`);
}

/** A value as an error message shows it: numbers as they are, strings quoted, objects by their kind. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v !== 'object' || v === null) return String(v);
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${v.byteLength} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const name = (v as { constructor?: { name?: string } }).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** The completion callback of a callback form: the one argument that cannot report its own error. */
export function checkCallback(done: unknown): void {
  if (typeof done !== 'function') throw invalidArgument('done', 'a function (err, completion) => void', done);
}

/** What `submit()` / `passthru()` accept as command fields, by how wide they are. */
const DWORD_FIELDS = ['nsid', 'cdw2', 'cdw3', 'cdw10', 'cdw11', 'cdw12', 'cdw13', 'cdw14', 'cdw15'];
const ADDRESS_FIELDS = ['mptr', 'prp1', 'prp2'];
const COMMAND_FIELDS = new Set(['opcode', 'fuse', 'psdt', ...DWORD_FIELDS, ...ADDRESS_FIELDS]);
const MAX_DWORD = 0xffffffff;
const MIN_DWORD = -0x80000000;

/**
 * Checks a command for `submit()` / `passthru()` and its data: the fields'
 * widths, and that nothing contradicts the PRPs the queue pair builds for a
 * data buffer (it points DPTR at the buffer, so the command must leave
 * PRP1 / PRP2 zero). PSDT goes out as given: a controller that takes no SGL
 * refuses a non-zero one, which tests rely on. `raw` (a whole SQE) only with
 * `allowRaw`.
 */
export function checkCommand(cmd: unknown, data: unknown, allowRaw: boolean): void {
  if (typeof cmd !== 'object' || cmd === null) throw invalidArgument('cmd', allowRaw ? 'command fields or { raw }' : 'command fields', cmd);
  const withData = checkData(data);
  if (allowRaw && 'raw' in cmd) return checkRawSqe(cmd as { raw: unknown }, withData);
  for (const key of Object.keys(cmd)) {
    if (!COMMAND_FIELDS.has(key)) throw invalidArgument('a command field', `one of ${[...COMMAND_FIELDS].join(', ')}${allowRaw ? ', or raw alone' : ''}`, key);
  }
  const c = cmd as Record<string, unknown>;
  checkInteger('opcode', c.opcode, 0, 0xff);
  if (c.fuse !== undefined) checkInteger('fuse', c.fuse, 0, 3);
  if (c.psdt !== undefined) checkInteger('psdt', c.psdt, 0, 3);
  for (const f of DWORD_FIELDS) if (c[f] !== undefined) checkInteger(f, c[f], MIN_DWORD, MAX_DWORD, 'an integer -0x80000000..0xffffffff (32 bits, signed or unsigned)');
  for (const f of ADDRESS_FIELDS) if (c[f] !== undefined) checkInteger(f, c[f], 0, Number.MAX_SAFE_INTEGER, 'an integer 0..2^53-1 (an address a Number holds exactly)');
  if (!withData) return;
  for (const f of ['prp1', 'prp2']) {
    if (c[f]) throw invalidArgument(f, 'unset or 0 with data (the queue pair points PRP1 / PRP2 at data.buffer)', c[f]);
  }
}

/** `{ raw }`: one whole SQE, alone; with data, its DPTR is the queue pair's to fill. */
function checkRawSqe(cmd: { raw: unknown }, withData: boolean): void {
  const { raw } = cmd;
  if (!(raw instanceof Uint8Array) || raw.length !== SQE_SIZE) throw invalidArgument('raw', `a Uint8Array of ${SQE_SIZE} bytes (one SQE)`, raw);
  // Checked without allocating (this runs per command on the NVMe/TCP target's path): the array only on a refusal.
  for (const k in cmd) {
    if (k !== 'raw') {
      const others = Object.keys(cmd).filter((o) => o !== 'raw');
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `cmd must be { raw } alone (the SQE holds every field), got raw with ${others.join(', ')}`);
    }
  }
  if (!withData) return;
  // PRP1 and PRP2 (bytes 24..39) must be zero: any set byte is a refusal, and only then is a view made to name the value.
  for (let i = Sqe.PRP1.offset; i < Sqe.PRP2.offset + Sqe.PRP2.size; i++) {
    if (raw[i] !== 0) {
      const f = i < Sqe.PRP2.offset ? Sqe.PRP1 : Sqe.PRP2;
      const v = readU64(new DataView(raw.buffer, raw.byteOffset, SQE_SIZE), f.offset);
      throw invalidArgument(`raw ${f.name} (bytes ${f.offset}..${f.offset + f.size - 1})`, '0 with data (the queue pair points PRP1 / PRP2 at data.buffer)', v);
    }
  }
}

/** Whether `data` carries bytes to move (a zero-length buffer moves none). */
function checkData(data: unknown): boolean {
  if (data === undefined) return false;
  if (typeof data !== 'object' || data === null) throw invalidArgument('data', "{ buffer, direction } or undefined", data);
  const { buffer, direction } = data as Record<string, unknown>;
  if (!(buffer instanceof Uint8Array)) throw invalidArgument('data.buffer', 'a Uint8Array', buffer);
  if (direction !== 'to-device' && direction !== 'from-device') throw invalidArgument('data.direction', "'to-device' or 'from-device'", direction);
  return buffer.length > 0;
}

/**
 * `v` is an integer in min..max (`range` says so in the message when the
 * bare numbers would not). On the I/O path give `range` as a constant: a
 * template literal would build a string per call.
 */
export function checkInteger(name: string, v: unknown, min: number, max: number, range?: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidArgument(name, range ?? `an integer ${min}..${max}`, v);
}

/** NLB is a 16-bit 0's based field: at most 65536 blocks a command. */
export const MAX_NLB = 0x10000;

/** An LBA range of a read / write: a non-negative SLBA and 1..65536 blocks. */
export function checkBlocks(slba: number, nlb: number): void {
  if (!Number.isSafeInteger(slba) || slba < 0) throw invalidArgument('slba', 'a non-negative integer', slba);
  if (!Number.isInteger(nlb) || nlb < 1 || nlb > MAX_NLB) throw invalidArgument('nlb', `1..${MAX_NLB}`, nlb);
}

/** A boolean option (`fua`, `deallocate`) of an options object that may be left out. */
export function flag<K extends string>(opts: Partial<Record<K, boolean>> | undefined, key: K): boolean {
  if (opts === undefined) return false;
  if (typeof opts !== 'object' || opts === null) throw invalidArgument('opts', `an object ({ ${key}?: boolean }) or undefined`, opts);
  const v = opts[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw invalidArgument(`opts.${key}`, 'a boolean', v);
  return v;
}

/** An NSID that names no active namespace: the same refusal from the engine and from a queue pair. */
export function inactiveNsid(nsid: unknown, active: Iterable<number>, accepted = ''): NvmqError {
  return invalidArgument('nsid', `an active NSID (${[...active].join(', ') || 'none'})${accepted}`, nsid);
}
