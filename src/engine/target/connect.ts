/**
 * The Connect command (Fabrics 1.1, Connect command), decoded and checked for what
 * does not depend on the subsystem: the capsule's form, RECFMT, the sizes.
 * `connectTo()` routes a Connect to the subsystem (or discovery service) whose
 * NQN its data names.
 */
import { SQE_SIZE } from '../spec/command.js';
import { readField, type Field } from '../spec/layout.js';
import { GenericStatus, Sct, FabricsStatus } from '../spec/status.js';
import { CONNECT_DATA_SIZE, CONNECT_RECFMT, ConnectCattr, ConnectData, ConnectInvalidDw0, ConnectIattr, ConnectSqe, FABRICS_OPCODE, FabricsSqe, FabricsType, NQN_MAX_LENGTH } from '../spec/fabrics.js';
import { withBits } from '../spec/layout.js';
import { formatStatus } from '../spec/status.js';
import { debuglog } from 'node:util';

const trace = debuglog('nvmq');
import { capsuleCid, encodeResponse, fail, failGeneric, readNqnField, viewOf, type FabricsResponse, type QueueLink } from './capsule.js';

export interface ConnectRequest {
  cid: number;
  qid: number;
  /** SQSIZE as sent: 0's based. */
  sqsize: number;
  cattr: number;
  /** Disable SQ flow control (CATTR bit 2): the transport then reports SQHD as FFFFh. */
  sqFlowControlDisabled: boolean;
  /** Keep Alive Timeout in milliseconds; 0 = none asked for. */
  kato: number;
  hostid: Uint8Array;
  cntlid: number;
  subnqn: string;
  hostnqn: string;
}

/** Connect Invalid Parameters pointing at `field` of the SQE or of the Connect data (Fabrics 1.1, Connect response). */
export function connectInvalid(where: 'sqe' | 'data', field: Field): FabricsResponse {
  let dw0 = withBits(0, ConnectInvalidDw0.IPO, field.offset);
  dw0 = withBits(dw0, ConnectInvalidDw0.IATTR, where === 'data' ? ConnectIattr.DATA : ConnectIattr.SQE);
  return fail(Sct.COMMAND_SPECIFIC, FabricsStatus.CONNECT_INVALID_PARAMETERS, dw0);
}

/** Connect Invalid Host, pointing at HOSTNQN in the data. */
export function connectInvalidHost(field: Field = ConnectData.HOSTNQN): FabricsResponse {
  const dw0 = withBits(withBits(0, ConnectInvalidDw0.IPO, field.offset), ConnectInvalidDw0.IATTR, ConnectIattr.DATA);
  return fail(Sct.COMMAND_SPECIFIC, FabricsStatus.CONNECT_INVALID_HOST, dw0);
}

/** Decodes a Connect capsule, or the response refusing it. Never throws. */
export function parseConnect(sqe: Uint8Array, data: Uint8Array | undefined): ConnectRequest | FabricsResponse {
  if (!(sqe instanceof Uint8Array) || sqe.length !== SQE_SIZE) return failGeneric(GenericStatus.INVALID_FIELD);
  const dv = viewOf(sqe);
  if (readField(dv, 0, FabricsSqe.OPC) !== FABRICS_OPCODE) return failGeneric(GenericStatus.INVALID_OPCODE);
  if (readField(dv, 0, FabricsSqe.FCTYPE) !== FabricsType.CONNECT) return failGeneric(GenericStatus.INVALID_FIELD);
  // Only record format 0 exists: anything else is a host speaking a format this controller does not know.
  if (readField(dv, 0, ConnectSqe.RECFMT) !== CONNECT_RECFMT) return fail(Sct.COMMAND_SPECIFIC, FabricsStatus.INCOMPATIBLE_FORMAT);
  // The Connect data is 1024 bytes; less is a data length the SGL cannot have described.
  if (!(data instanceof Uint8Array) || data.length < CONNECT_DATA_SIZE) return failGeneric(GenericStatus.DATA_SGL_LENGTH_INVALID);
  const subnqn = readNqnField(data, ConnectData.SUBNQN.offset, ConnectData.SUBNQN.size);
  if (subnqn === undefined || subnqn.length === 0 || Buffer.byteLength(subnqn) > NQN_MAX_LENGTH) return connectInvalid('data', ConnectData.SUBNQN);
  const hostnqn = readNqnField(data, ConnectData.HOSTNQN.offset, ConnectData.HOSTNQN.size);
  if (hostnqn === undefined || hostnqn.length === 0 || Buffer.byteLength(hostnqn) > NQN_MAX_LENGTH) return connectInvalid('data', ConnectData.HOSTNQN);
  const ddv = viewOf(data);
  const cattr = readField(dv, 0, ConnectSqe.CATTR);
  return {
    cid: capsuleCid(sqe),
    qid: readField(dv, 0, ConnectSqe.QID),
    sqsize: readField(dv, 0, ConnectSqe.SQSIZE),
    cattr,
    sqFlowControlDisabled: ((cattr >>> ConnectCattr.SQFC_DISABLE.shift) & 1) === 1,
    kato: readField(dv, 0, ConnectSqe.KATO),
    hostid: data.slice(ConnectData.HOSTID.offset, ConnectData.HOSTID.offset + ConnectData.HOSTID.size),
    cntlid: readField(ddv, 0, ConnectData.CNTLID),
    subnqn,
    hostnqn,
  };
}

export function isResponse(x: ConnectRequest | FabricsResponse): x is FabricsResponse {
  return 'status' in x;
}

/** One queue of a controller, as the transport sees it after a successful Connect. */
export interface FabricsQueueInfo {
  readonly qid: number;
  /** Entries of the submission queue (SQSIZE + 1). */
  readonly entries: number;
  readonly sqFlowControlDisabled: boolean;
}

/** What a Connect produces: the response (and its 16-byte capsule), and on success the controller and queue. */
export interface ConnectResult<C> {
  response: FabricsResponse;
  /** The response capsule, SQHD 0 (the transport rewrites it if it tracks one). */
  cqe: Uint8Array;
  qid: number;
  controller?: C;
  queue?: FabricsQueueInfo;
}

export function connectResult<C>(req: { cid: number; qid: number; hostnqn?: string } | undefined, response: FabricsResponse, extra: { controller?: C; queue?: FabricsQueueInfo } = {}, sqe?: Uint8Array): ConnectResult<C> {
  const cid = req?.cid ?? (sqe ? capsuleCid(sqe) : 0);
  const qid = req?.qid ?? 0;
  if (response.status !== 0) {
    trace('Connect (QID %d) from %s refused: %s, DW0 0x%s', qid, req?.hostnqn ?? 'an unreadable capsule', formatStatus(response.status, 'fabrics'), response.dw0.toString(16));
  }
  return { response, cqe: encodeResponse(response, cid, qid, 0), qid, ...extra };
}

/** Anything a Connect can be addressed to: a Subsystem or the DiscoveryService. */
export interface ConnectTarget {
  readonly subnqn: string;
  connect(sqe: Uint8Array, data: Uint8Array | undefined, link: QueueLink): ConnectResult<unknown>;
}

/**
 * Routes a Connect by the SUBNQN of its data; an NQN no target has gets
 * Connect Invalid Parameters pointing at SUBNQN (Fabrics 1.1, Connect command).
 */
export function connectTo(targets: readonly ConnectTarget[], sqe: Uint8Array, data: Uint8Array | undefined, link: QueueLink): ConnectResult<unknown> {
  const req = parseConnect(sqe, data);
  if (isResponse(req)) return connectResult(undefined, req, {}, sqe);
  const target = targets.find((t) => t.subnqn === req.subnqn);
  if (!target) return connectResult(req, connectInvalid('data', ConnectData.SUBNQN));
  return target.connect(sqe, data, link);
}
