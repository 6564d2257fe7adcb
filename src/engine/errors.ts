/**
 * The public error vocabulary. NVMe status travels between host and
 * controller; callers get errors with a stable `code`, made from a status by
 * exactly one function, `statusToError()`.
 */
import { describeStatus, formatStatus } from './spec/status.js';
import { opcodeName } from './spec/opcodes.js';
import { Fes, fesName, pduTypeName } from './spec/tcp-pdu.js';

export class NvmqError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NvmqError';
    this.code = code;
  }
}

/** Opening an image failed: `code` is one of the NVMQ_IMAGE_* / NVMQ_INVALID_ARGUMENT codes, the message one line naming the path or argument. */
export class ImageError extends NvmqError {
  /** The image or device the error is about, where there is one. */
  readonly path: string | undefined;
  constructor(code: string, message: string, options?: { cause?: unknown; path?: string }) {
    super(code, message, options);
    this.name = 'ImageError';
    this.path = options?.path;
  }
}

/** A command completed with a non-zero status. */
export class NvmeStatusError extends NvmqError {
  /** Status field without the phase tag. */
  readonly status: number;
  readonly sct: number;
  readonly sc: number;
  readonly dnr: boolean;
  readonly more: boolean;
  readonly statusName: string;
  readonly opcode: number;
  readonly command: string;
  readonly qid: number;
  readonly cid: number;
  constructor(code: string, message: string, fields: { status: number; sct: number; sc: number; dnr: boolean; more: boolean; statusName: string; opcode: number; command: string; qid: number; cid: number }) {
    super(code, message);
    this.name = 'NvmeStatusError';
    this.status = fields.status;
    this.sct = fields.sct;
    this.sc = fields.sc;
    this.dnr = fields.dnr;
    this.more = fields.more;
    this.statusName = fields.statusName;
    this.opcode = fields.opcode;
    this.command = fields.command;
    this.qid = fields.qid;
    this.cid = fields.cid;
  }
}

/** "Write (0x01) failed: LBA Out of Range (SCT 0, SC 0x80), DNR" as an error with code NVMQ_LBA_OUT_OF_RANGE. */
export function statusToError(status: number, ctx: { opcode: number; qid: number; cid: number }): NvmeStatusError {
  const d = describeStatus(status);
  const command = opcodeName(ctx.opcode, ctx.qid === 0);
  return new NvmeStatusError(d.code, `${command} failed: ${formatStatus(status)}`, {
    status,
    sct: d.sct,
    sc: d.sc,
    dnr: d.dnr,
    more: d.more,
    statusName: d.name,
    opcode: ctx.opcode,
    command,
    qid: ctx.qid,
    cid: ctx.cid,
  });
}

/**
 * An error as it crosses between threads. Structured cloning keeps an Error's
 * message and stack but drops its class and own fields (`code`, the NVMe
 * status), so a worker sends this instead and the caller's thread rebuilds it.
 */
export interface WireError {
  name: string;
  message: string;
  stack: string | undefined;
  /** Own enumerable fields with plain values (code, status, sct, sc, ...). */
  fields: Record<string, string | number | boolean>;
}

export function errorToWire(e: Error): WireError {
  const fields: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(e)) if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = v;
  return { name: e.name, message: e.message, stack: e.stack, fields };
}

/** JavaScript's own error classes, rebuilt by name on the receiving side. */
const BUILTIN_ERRORS: Record<string, ErrorConstructor> = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

/**
 * Rebuilds what errorToWire() sent: an NvmeStatusError, ImageError or
 * NvmqError again (any NVMQ_ code), one of JavaScript's own classes by name,
 * or else an Error with the same name; own fields come along.
 */
export function errorFromWire(w: WireError): Error {
  const f = w.fields;
  let e: Error;
  if (w.name === 'NvmeStatusError' && typeof f.code === 'string') {
    e = new NvmeStatusError(f.code, w.message, f as unknown as ConstructorParameters<typeof NvmeStatusError>[2]);
  } else if (w.name === 'ImageError' && typeof f.code === 'string') {
    e = Object.assign(new ImageError(f.code, w.message, typeof f.path === 'string' ? { path: f.path } : {}), f);
  } else if (typeof f.code === 'string' && f.code.startsWith('NVMQ_')) {
    e = Object.assign(new NvmqError(f.code, w.message), f);
  } else {
    e = Object.assign(new (BUILTIN_ERRORS[w.name] ?? Error)(w.message), f);
    e.name = w.name;
  }
  if (w.stack !== undefined) e.stack = w.stack;
  return e;
}

/**
 * How a task ended, as a worker sends it back: its value, its Error (as a
 * WireError), or something else it threw. An envelope rather than the bare
 * value, so a task's own return value is never mistaken for an error.
 */
export type TaskOutcome = { ok: unknown } | { err: WireError } | { thrown: unknown };

/** The value of a task's outcome, or what it threw, rebuilt. */
export function unwrapOutcome(o: TaskOutcome): unknown {
  if ('ok' in o) return o.ok;
  if ('err' in o) throw errorFromWire(o.err);
  throw o.thrown;
}

// ------------------------------------------------------------------ backends

/**
 * What a backend operation reports: the kind picks the NVMe status (read →
 * Unrecovered Read Error, write → Write Fault, no-space → Capacity Exceeded).
 * Internal to the device; hosts see the status.
 */
/** `aborted`: the operation was cancelled (its ring torn down) before it finished. */
export type BackendErrorKind = 'read' | 'write' | 'no-space' | 'aborted' | 'internal';

export class BackendError extends Error {
  readonly kind: BackendErrorKind;
  readonly errno: string | undefined;
  constructor(kind: BackendErrorKind, message: string, errno?: string) {
    super(message);
    this.name = 'BackendError';
    this.kind = kind;
    this.errno = errno;
  }
}

/** Completes a backend operation, exactly once. */
export type IoDone = (err: BackendError | null) => void;

/** Error from a Node.js system call as a backend error of the given kind. */
export function fromSystemError(kind: 'read' | 'write', err: NodeJS.ErrnoException): BackendError {
  const k: BackendErrorKind = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'no-space' : kind;
  return new BackendError(k, `${kind} failed: ${err.message}`, err.code);
}

// ------------------------------------------------------------------ NVMe/TCP

/**
 * A received NVMe/TCP PDU broke the transport binding: the connection is
 * over. `fes` and `fei` are what the C2HTermReq (or H2CTermReq) reports, and
 * `offendingHeader` its error data: the PDU header as received, cut to
 * TERM_REQ_MAX_ERROR_DATA bytes. `sendTermReq` is false where the spec wants
 * the connection closed without a termination request (a malformed TermReq
 * from the peer). `code` is NVMQ_TCP_ and the FES name
 * (NVMQ_TCP_HEADER_DIGEST_ERROR).
 */
export class PduError extends NvmqError {
  readonly fes: number;
  readonly fei: number;
  /** CH.PDU-TYPE of the offending PDU. */
  readonly pduType: number;
  readonly offendingHeader: Uint8Array;
  readonly sendTermReq: boolean;
  constructor(fes: number, fei: number, message: string, fields: { pduType: number; offendingHeader: Uint8Array; sendTermReq?: boolean }) {
    super(`NVMQ_TCP_${fesCode(fes)}`, `${pduTypeName(fields.pduType)}: ${message} (${fesName(fes)}, FEI 0x${(fei >>> 0).toString(16)})`);
    this.name = 'PduError';
    this.fes = fes;
    this.fei = fei >>> 0;
    this.pduType = fields.pduType;
    this.offendingHeader = fields.offendingHeader;
    this.sendTermReq = fields.sendTermReq ?? true;
  }
}

function fesCode(fes: number): string {
  for (const [k, v] of Object.entries(Fes)) if (v === fes) return k;
  return 'PROTOCOL_ERROR';
}
