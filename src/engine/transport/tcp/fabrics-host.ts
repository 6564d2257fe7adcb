/**
 * The host's Fabrics commands, awaited one at a time on a connection: Connect
 * (admin and I/O queues), Property Get / Set, Keep Alive. Each has a
 * deadline, and a refused Connect says in one line what the target refused
 * (the host NQN, the subsystem, a parameter), from its status and IATTR / IPO.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { NvmqError } from '../../errors.js';
import { SQE_SIZE, Sqe } from '../../spec/command.js';
import { readField, writeField, bitsOf } from '../../spec/layout.js';
import { AdminOpcode } from '../../spec/opcodes.js';
import {
  AuthReq,
  CONNECT_DATA_SIZE,
  ConnectData,
  ConnectIattr,
  ConnectInvalidDw0,
  ConnectResponseDw0,
  ConnectSqe,
  FABRICS_OPCODE,
  FabricsSqe,
  FabricsType,
  NQN_MAX_LENGTH,
  Property,
  PropertySize,
  PropertySqe,
} from '../../spec/fabrics.js';
import { FabricsStatus, Sct, formatStatus, statusSc, statusSct } from '../../spec/status.js';
import type { HostConnection } from './host-connection.js';

export interface FabricsResult {
  status: number;
  dw0: number;
  dw1: number;
}

/** Who the host is: its NQN and 16-byte host identifier. */
export interface HostIdentity {
  hostnqn: string;
  hostid: Uint8Array;
}

const UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:';

function uuidBytes(uuid: string): Uint8Array | undefined {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) return undefined;
  return Uint8Array.from(hex.match(/../g)!.map((b) => parseInt(b, 16)));
}

function readTrimmed(path: string): string | undefined {
  try {
    const s = readFileSync(path, 'utf8').trim();
    return s.length > 0 ? s : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The host's identity: `hostnqn` as given, else the machine's
 * (/etc/nvme/hostnqn, as nvme-cli reads it), else a UUID-based NQN made for
 * this process. The host ID is /etc/nvme/hostid, else the NQN's UUID, else random.
 */
export function hostIdentity(hostnqn?: string): HostIdentity {
  const nqn = hostnqn ?? readTrimmed('/etc/nvme/hostnqn') ?? `${UUID_NQN_PREFIX}${randomUUID()}`;
  if (new TextEncoder().encode(nqn).length > NQN_MAX_LENGTH || nqn.length === 0) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `hostnqn must be 1 to ${NQN_MAX_LENGTH} bytes of UTF-8, got ${JSON.stringify(nqn)}`);
  }
  const fromFile = readTrimmed('/etc/nvme/hostid');
  const hostid = (hostnqn === undefined && fromFile ? uuidBytes(fromFile) : undefined) ?? (nqn.startsWith(UUID_NQN_PREFIX) ? uuidBytes(nqn.slice(UUID_NQN_PREFIX.length)) : undefined) ?? uuidBytes(randomUUID())!;
  return { hostnqn: nqn, hostid };
}

/** Sends one command and waits for it, at most `timeoutMs`. */
export function fabricsCommand(conn: HostConnection, sqe: Uint8Array, what: string, timeoutMs: number, data?: { out?: Uint8Array; in?: Uint8Array }): Promise<FabricsResult> {
  const cid = readField(new DataView(sqe.buffer, sqe.byteOffset, SQE_SIZE), 0, Sqe.CID);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new NvmqError('NVMQ_TIMEOUT', `${what}: the target did not answer within ${timeoutMs} ms`)), timeoutMs);
    conn.send(sqe, {
      cid,
      out: data?.out,
      in: data?.in,
      done: (status, dw0, dw1) => {
        clearTimeout(timer);
        // The connection ended under the command: that, not the path error status, is what happened.
        if (conn.failed) reject(conn.failed);
        else resolve({ status, dw0, dw1 });
      },
    });
  });
}

function fabricsSqe(cid: number, fctype: number): { sqe: Uint8Array; v: DataView } {
  const sqe = new Uint8Array(SQE_SIZE);
  const v = new DataView(sqe.buffer);
  writeField(v, 0, FabricsSqe.OPC, FABRICS_OPCODE);
  writeField(v, 0, FabricsSqe.CID, cid);
  writeField(v, 0, FabricsSqe.FCTYPE, fctype);
  return { sqe, v };
}

export interface ConnectParams {
  qid: number;
  /** SQ entries (the SQSIZE sent is one less). */
  entries: number;
  /** Keep-alive timeout in ms (admin queue; 0 for none). */
  kato: number;
  cntlid: number;
  subnqn: string;
  identity: HostIdentity;
  /** The target's address, for messages. */
  where: string;
  timeoutMs: number;
}

/** Why a Connect was refused, in one line. */
function connectRefusal(p: ConnectParams, status: number, dw0: number): NvmqError {
  const queue = p.qid === 0 ? 'admin queue' : `I/O queue ${p.qid}`;
  const at = `the NVMe/TCP target at ${p.where}`;
  if (statusSct(status) === Sct.COMMAND_SPECIFIC && statusSc(status) === FabricsStatus.CONNECT_INVALID_HOST) {
    return new NvmqError('NVMQ_CONNECT_INVALID_HOST', `${at} refused host ${p.identity.hostnqn} on ${p.subnqn} (Connect Invalid Host): allow this host NQN on the target`);
  }
  if (statusSct(status) === Sct.COMMAND_SPECIFIC && statusSc(status) === FabricsStatus.CONNECT_INVALID_PARAMETERS) {
    const inData = bitsOf(dw0, ConnectInvalidDw0.IATTR) === ConnectIattr.DATA;
    const ipo = bitsOf(dw0, ConnectInvalidDw0.IPO);
    if (inData && ipo === ConnectData.SUBNQN.offset) return new NvmqError('NVMQ_UNKNOWN_SUBSYSTEM', `${at} has no subsystem ${p.subnqn} (Connect Invalid Parameters: SUBNQN)`);
    if (inData && ipo === ConnectData.HOSTNQN.offset) return new NvmqError('NVMQ_CONNECT_INVALID_HOST', `${at} refused host NQN ${p.identity.hostnqn} (Connect Invalid Parameters: HOSTNQN)`);
    if (inData && ipo === ConnectData.CNTLID.offset) return new NvmqError('NVMQ_CONNECT_INVALID_PARAMETERS', `${at} has no controller ${p.cntlid} for this host any more (${queue} Connect: CNTLID)`);
    return new NvmqError('NVMQ_CONNECT_INVALID_PARAMETERS', `${at} refused the ${queue} Connect: invalid parameter at byte ${ipo} of the ${inData ? 'Connect data' : 'command'}`);
  }
  return new NvmqError('NVMQ_CONNECT_REFUSED', `${at} refused the ${queue} Connect: ${formatStatus(status, 'fabrics')}`);
}

/** Connects the queue the connection carries; resolves with the controller ID. */
export async function connectQueue(conn: HostConnection, cid: number, p: ConnectParams): Promise<number> {
  const { sqe, v } = fabricsSqe(cid, FabricsType.CONNECT);
  writeField(v, 0, ConnectSqe.QID, p.qid);
  writeField(v, 0, ConnectSqe.SQSIZE, p.entries - 1);
  writeField(v, 0, ConnectSqe.KATO, p.kato);
  const data = new Uint8Array(CONNECT_DATA_SIZE);
  data.set(p.identity.hostid, ConnectData.HOSTID.offset);
  writeField(new DataView(data.buffer), 0, ConnectData.CNTLID, p.cntlid);
  data.set(new TextEncoder().encode(p.subnqn), ConnectData.SUBNQN.offset);
  data.set(new TextEncoder().encode(p.identity.hostnqn), ConnectData.HOSTNQN.offset);
  const r = await fabricsCommand(conn, sqe, `${p.qid === 0 ? 'admin' : `I/O queue ${p.qid}`} Connect to ${p.where}`, p.timeoutMs, { out: data });
  if (r.status !== 0) throw connectRefusal(p, r.status, r.dw0);
  if (bitsOf(r.dw0, ConnectResponseDw0.AUTHREQ) & (AuthReq.ATR | AuthReq.ASCR)) {
    throw new NvmqError('NVMQ_UNSUPPORTED_TARGET', `the NVMe/TCP target at ${p.where} requires in-band authentication, which nvmq does not do`);
  }
  return p.qid === 0 ? bitsOf(r.dw0, ConnectResponseDw0.CNTLID) : p.cntlid;
}


/** Property Get (`size` 4 or 8 bytes); resolves with the value. */
export async function propertyGet(conn: HostConnection, cid: number, offset: number, size: 4 | 8, timeoutMs: number): Promise<number> {
  const sqe = propertyGetSqe(cid, offset, size);
  const name = Object.entries(Property).find(([, p]) => p.offset === offset)?.[0] ?? `0x${offset.toString(16)}`;
  const r = await fabricsCommand(conn, sqe, `Property Get ${name}`, timeoutMs);
  if (r.status !== 0) throw new NvmqError('NVMQ_TARGET_PROTOCOL', `the target refused Property Get ${name}: ${formatStatus(r.status, 'fabrics')}`);
  return size === 8 ? r.dw0 + r.dw1 * 0x1_0000_0000 : r.dw0;
}

/** Property Set of a 4-byte property. */
export function propertySetSqe(cid: number, offset: number, value: number): Uint8Array {
  const { sqe, v } = fabricsSqe(cid, FabricsType.PROPERTY_SET);
  writeField(v, 0, PropertySqe.ATTRIB, 0);
  writeField(v, 0, PropertySqe.OFST, offset);
  v.setUint32(PropertySqe.VALUE.offset, value >>> 0, true);
  return sqe;
}

/** Property Get of a 4- or 8-byte property. */
export function propertyGetSqe(cid: number, offset: number, size: 4 | 8 = 4): Uint8Array {
  const { sqe, v } = fabricsSqe(cid, FabricsType.PROPERTY_GET);
  writeField(v, 0, PropertySqe.ATTRIB, size === 8 ? PropertySize.EIGHT_BYTES : PropertySize.FOUR_BYTES);
  writeField(v, 0, PropertySqe.OFST, offset);
  return sqe;
}

/** Keep Alive (an admin command, no data). */
export function keepAliveSqe(cid: number): Uint8Array {
  const sqe = new Uint8Array(SQE_SIZE);
  const v = new DataView(sqe.buffer);
  writeField(v, 0, Sqe.OPC, AdminOpcode.KEEP_ALIVE);
  writeField(v, 0, Sqe.CID, cid);
  return sqe;
}
