/**
 * An NVM subsystem offered over a fabric: one local controller (the engine's
 * NvmeDriver) behind it, and one FabricsController per host association,
 * each with its own CNTLID, properties, features and keep-alive timer. No
 * sockets here: a transport decodes capsules and calls in.
 *
 *   const sub = new Subsystem({ subnqn, driver, allowHosts: [hostnqn], port });
 *   // first capsule of a new queue's connection (a Connect):
 *   const r = sub.connect(sqe, connectData, { close: (why) => socket.destroy() });
 *   send(r.cqe);                         // status + CNTLID in DW0
 *   // then, on the admin queue:          r.controller.execute(sqe, data) -> FabricsResponse
 *   // on an I/O queue, a Fabrics capsule: controller.fabricsCommand(sqe, qid)
 *   // when a connection ends:            admin: controller.disconnect(); I/O: controller.removeIoQueue(qid)
 *
 * Connect checks (Fabrics 1.1, Connect command), in order, each with its status:
 *   RECFMT ≠ 0                              Incompatible Format
 *   Connect data shorter than 1024 bytes    Data SGL Length Invalid
 *   SUBNQN not this subsystem's             Connect Invalid Parameters, IATTR 1, IPO 256 (SUBNQN)
 *   HOSTNQN not allowed                     Connect Invalid Host, IATTR 1, IPO 512 (HOSTNQN)
 *   admin queue (QID 0):
 *     CNTLID ≠ FFFFh (dynamic model)        Connect Invalid Parameters, IATTR 1, IPO 16 (CNTLID)
 *     HOSTID all zeroes                     Connect Invalid Parameters, IATTR 1, IPO 0 (HOSTID)
 *     SQSIZE 0 or ≥ the admin queue size    Connect Invalid Parameters, IATTR 0, IPO 44 (SQSIZE)
 *     no CNTLID free                        Controller Busy
 *   I/O queue (QID > 0):
 *     no controller with that CNTLID        Connect Invalid Parameters, IATTR 1, IPO 16 (CNTLID)
 *     HOSTNQN / HOSTID not the admin's      Connect Invalid Parameters, IATTR 1, IPO 512 / 0
 *     controller not enabled (CC.EN, RDY)   Command Sequence Error
 *     QID past the granted queue count      Invalid Queue Identifier, IATTR 0, IPO 42 (QID)
 *     QID already connected                 Command Sequence Error
 *     SQSIZE 0 or > CAP.MQES                Connect Invalid Parameters, IATTR 0, IPO 44 (SQSIZE)
 */
import type { NvmeDriver } from '../host/driver.js';
import { NvmqError } from '../errors.js';
import { CommandSpecificStatus, FabricsStatus, Sct } from '../spec/status.js';
import { Adrfam, CNTLID_DYNAMIC, ConnectData, ConnectIattr, ConnectInvalidDw0, ConnectSqe, DISCOVERY_NQN, NQN_MAX_LENGTH, Trtype } from '../spec/fabrics.js';
import { withBits } from '../spec/layout.js';
import { commandSequenceError, fail, ok, type QueueLink } from './capsule.js';
import { connectInvalid, connectInvalidHost, connectResult, isResponse, parseConnect, type ConnectRequest, type ConnectResult, type ConnectTarget } from './connect.js';
import { CntlidPool } from './cntlid-pool.js';
import { FabricsController, type LocalAdmin } from './fabrics-controller.js';
import type { ControllerCore } from './controller-core.js';

/** Where the subsystem is reachable: what the discovery log page says about it. */
export interface PortAddress {
  trtype: 'tcp';
  /** IP address, as text. */
  traddr: string;
  /** TCP port, as text (4420 is NVMe/TCP's I/O port, 8009 discovery's). */
  trsvcid: string;
  adrfam: 'ipv4' | 'ipv6';
  /** PORTID in the discovery log (default 1). */
  portid?: number;
}

export interface SubsystemOptions {
  /** The subsystem's NQN (NVMe 1.4 section 7.9), at most 223 bytes. */
  subnqn: string;
  /** The local controller behind the subsystem. */
  driver: NvmeDriver | LocalAdmin;
  /** Host NQNs allowed to connect. */
  allowHosts?: readonly string[];
  /** Any host may connect (default false: only the NQNs of allowHosts). */
  allowAnyHost?: boolean;
  /** I/O queues per controller (default 8, 1..65535). */
  maxIoQueues?: number;
  /** Entries of the largest I/O queue (default 128, 2..65536): CAP.MQES + 1 and MAXCMD. */
  maxQueueSize?: number;
  /** Entries of the largest admin queue (default 32, the ASQSZ the discovery log reports; at least 32). */
  adminQueueSize?: number;
  /** Bytes of in-capsule data an I/O command capsule may carry (IOCCSZ = 4 + this / 16; default 8192, a multiple of 16). */
  inCapsuleDataBytes?: number;
  /** Milliseconds added to KATO before a silent host's controller is torn down (default 1000). */
  keepAliveGraceMs?: number;
  port: PortAddress;
}

function intOption(name: string, v: number | undefined, def: number, min: number, max: number): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}, got ${String(v)}`);
  return n;
}

export function checkNqn(name: string, nqn: unknown): string {
  if (typeof nqn !== 'string' || nqn.length === 0 || Buffer.byteLength(nqn) > NQN_MAX_LENGTH || nqn.includes('\0')) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `${name} must be an NQN of 1..${NQN_MAX_LENGTH} bytes, got ${JSON.stringify(nqn)}`);
  }
  return nqn;
}

function localAdminOf(d: NvmeDriver | LocalAdmin): LocalAdmin {
  if ('maxTransferBytes' in d) return d;
  const driver = d;
  return {
    adminPassthru: (cmd, data) => driver.adminPassthru(cmd, data),
    get maxTransferBytes() {
      const m = driver.controller.maxTransferBytes;
      return Number.isFinite(m) ? m : 1 << 20;
    },
  };
}

export class Subsystem implements ConnectTarget {
  readonly subnqn: string;
  readonly port: Required<PortAddress>;
  readonly maxIoQueues: number;
  readonly maxQueueSize: number;
  readonly adminQueueSize: number;
  readonly inCapsuleDataBytes: number;
  private readonly keepAliveGraceMs: number;
  private readonly allowAnyHost: boolean;
  private readonly allowHosts: Set<string>;
  private readonly local: LocalAdmin;
  private readonly pool = new CntlidPool();
  private readonly controllers = new Map<number, FabricsController>();

  constructor(opts: SubsystemOptions) {
    this.subnqn = checkNqn('subnqn', opts.subnqn);
    if (this.subnqn === DISCOVERY_NQN) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `subnqn ${DISCOVERY_NQN} is the discovery subsystem's`);
    this.maxIoQueues = intOption('maxIoQueues', opts.maxIoQueues, 8, 1, 0xffff);
    this.maxQueueSize = intOption('maxQueueSize', opts.maxQueueSize, 128, 2, 0x10000);
    this.adminQueueSize = intOption('adminQueueSize', opts.adminQueueSize, 32, 32, 0x1000);
    this.inCapsuleDataBytes = intOption('inCapsuleDataBytes', opts.inCapsuleDataBytes, 8192, 0, 1 << 20);
    if (this.inCapsuleDataBytes % 16 !== 0) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `inCapsuleDataBytes must be a multiple of 16 (IOCCSZ is in 16-byte units), got ${this.inCapsuleDataBytes}`);
    this.keepAliveGraceMs = intOption('keepAliveGraceMs', opts.keepAliveGraceMs, 1000, 0, 600_000);
    this.allowHosts = new Set((opts.allowHosts ?? []).map((h, i) => checkNqn(`allowHosts[${i}]`, h)));
    // Refused unless allowed: a host NQN on the list, or every host when asked for explicitly.
    this.allowAnyHost = opts.allowAnyHost === true;
    const p = opts.port;
    if (p?.trtype !== 'tcp' || (p.adrfam !== 'ipv4' && p.adrfam !== 'ipv6') || typeof p.traddr !== 'string' || typeof p.trsvcid !== 'string') {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `port must be { trtype: 'tcp', adrfam: 'ipv4' | 'ipv6', traddr, trsvcid }, got ${JSON.stringify(p)}`);
    }
    this.port = { ...p, portid: intOption('port.portid', p.portid, 1, 0, 0xffff) };
    this.local = localAdminOf(opts.driver);
  }

  /** Whether `hostnqn` may connect (and see this subsystem in the discovery log). */
  allows(hostnqn: string): boolean {
    return this.allowAnyHost || this.allowHosts.has(hostnqn);
  }

  /** The live controllers, by CNTLID. */
  get activeControllers(): ReadonlyMap<number, FabricsController> {
    return this.controllers;
  }

  controller(cntlid: number): FabricsController | undefined {
    return this.controllers.get(cntlid);
  }

  /** TRTYPE / ADRFAM numbers of the port, for the discovery log. */
  get portNumbers(): { trtype: number; adrfam: number } {
    return { trtype: Trtype.TCP, adrfam: this.port.adrfam === 'ipv4' ? Adrfam.IPV4 : Adrfam.IPV6 };
  }

  /**
   * A Connect capsule (the first of every queue's connection). On success
   * `controller` is the controller the queue belongs to (new for an admin
   * queue) and `queue` the queue's QID and size. Never throws.
   */
  connect(sqe: Uint8Array, data: Uint8Array | undefined, link: QueueLink): ConnectResult<FabricsController> {
    const req = parseConnect(sqe, data);
    if (isResponse(req)) return connectResult(undefined, req, {}, sqe);
    if (req.subnqn !== this.subnqn) return connectResult(req, connectInvalid('data', ConnectData.SUBNQN));
    if (!this.allows(req.hostnqn)) return connectResult(req, connectInvalidHost());
    return req.qid === 0 ? this.connectAdmin(req, link) : this.connectIo(req, link);
  }

  private connectAdmin(req: ConnectRequest, link: QueueLink): ConnectResult<FabricsController> {
    // Dynamic controller model: the host asks for a new controller with FFFFh (Fabrics 1.1, dynamic controller model).
    if (req.cntlid !== CNTLID_DYNAMIC) return connectResult(req, connectInvalid('data', ConnectData.CNTLID));
    if (req.hostid.every((b) => b === 0)) return connectResult(req, connectInvalid('data', ConnectData.HOSTID));
    if (req.sqsize === 0 || req.sqsize >= this.adminQueueSize) return connectResult(req, connectInvalid('sqe', ConnectSqe.SQSIZE));
    const cntlid = this.pool.take();
    if (cntlid === undefined) return connectResult(req, fail(Sct.COMMAND_SPECIFIC, FabricsStatus.CONTROLLER_BUSY, 0, true));
    const controller = new FabricsController(
      {
        cntlid,
        subnqn: this.subnqn,
        hostnqn: req.hostnqn,
        hostid: req.hostid,
        kato: req.kato,
        adminEntries: req.sqsize + 1,
        maxQueueEntries: this.maxQueueSize,
        keepAliveGraceMs: this.keepAliveGraceMs,
        onGone: (c: ControllerCore) => this.forget(c),
        local: this.local,
        maxIoQueues: this.maxIoQueues,
        inCapsuleDataBytes: this.inCapsuleDataBytes,
      },
      link,
    );
    this.controllers.set(cntlid, controller);
    const queue = { qid: 0, entries: req.sqsize + 1, sqFlowControlDisabled: req.sqFlowControlDisabled };
    // DW0: CNTLID, AUTHREQ 0 (no authentication, Fabrics 1.1 Connect response).
    return connectResult(req, ok(cntlid), { controller, queue });
  }

  private connectIo(req: ConnectRequest, link: QueueLink): ConnectResult<FabricsController> {
    const c = this.controllers.get(req.cntlid);
    if (!c || c.isGone) return connectResult(req, connectInvalid('data', ConnectData.CNTLID));
    if (c.hostnqn !== req.hostnqn) return connectResult(req, connectInvalid('data', ConnectData.HOSTNQN));
    if (!sameBytes(c.hostid, req.hostid)) return connectResult(req, connectInvalid('data', ConnectData.HOSTID));
    // I/O queues come after the host has enabled the controller (Fabrics 1.1, controller initialization).
    if (!c.enabled) return connectResult(req, commandSequenceError());
    if (req.qid > c.ioQueueLimit) {
      const dw0 = withBits(withBits(0, ConnectInvalidDw0.IPO, ConnectSqe.QID.offset), ConnectInvalidDw0.IATTR, ConnectIattr.SQE);
      return connectResult(req, fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER, dw0));
    }
    if (c.hasQueue(req.qid)) return connectResult(req, commandSequenceError());
    if (req.sqsize === 0 || req.sqsize >= this.maxQueueSize) return connectResult(req, connectInvalid('sqe', ConnectSqe.SQSIZE));
    const queue = { qid: req.qid, entries: req.sqsize + 1, sqFlowControlDisabled: req.sqFlowControlDisabled };
    c.addIoQueue(queue, link);
    return connectResult(req, ok(c.cntlid), { controller: c, queue });
  }

  private forget(c: ControllerCore): void {
    if (this.controllers.get(c.cntlid) === c) {
      this.controllers.delete(c.cntlid);
      this.pool.release(c.cntlid);
    }
  }

  /** Tears every controller down (the target is stopping). */
  close(reason = 'subsystem closed'): void {
    for (const c of [...this.controllers.values()]) c.teardown(reason);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
