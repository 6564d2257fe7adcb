/**
 * The discovery subsystem (Fabrics 1.1, discovery service): `nqn.2014-08.org.nvmexpress.discovery`,
 * whose controllers answer Identify Controller and the Discovery Log Page
 * (Log Identifier 70h) and nothing about namespaces.
 *
 *   const discovery = new DiscoveryService({ port: { trtype: 'tcp', traddr, trsvcid: '8009', adrfam: 'ipv4' } });
 *   discovery.add(subsystem);
 *   connectTo([discovery, subsystem], sqe, data, link);
 *
 * The log lists, as Linux's nvmet does: first the discovery subsystem itself
 * on the port the host reached (SUBTYPE 3, "current discovery subsystem",
 * which `nvme discover` / `connect-all` know not to follow), then every NVM
 * subsystem the host's NQN may connect to (SUBTYPE 2). A host reads it in
 * pieces (header, then entries from offset 1024, then the header again to
 * compare GENCTR): GENCTR changes whenever the list does.
 */
import { NvmqError } from '../errors.js';
import { Sqe } from '../spec/command.js';
import { bitsOf, readField, writeField, readU64 } from '../spec/layout.js';
import { AdminOpcode } from '../spec/opcodes.js';
import { CommandSpecificStatus, FabricsStatus, Sct } from '../spec/status.js';
import { Cns, IdCtrl, IdentifyCdw10, IDENTIFY_DATA_SIZE, Lpa } from '../spec/identify.js';
import { GetLogPageCdw10, GetLogPageCdw11 } from '../spec/log-pages.js';
import {
  Adrfam,
  CNTLID_DYNAMIC,
  ConnectData,
  ConnectSqe,
  ControllerType,
  DISCOVERY_DEFAULT_KATO_MS,
  DISCOVERY_LOG_ENTRY_SIZE,
  DISCOVERY_LOG_HEADER_SIZE,
  DISCOVERY_LOG_PAGE_ID,
  DISCOVERY_NQN,
  DiscoveryLogEntry,
  DiscoveryLogHeader,
  DiscoverySubtype,
  SglSupport,
  TcpSectype,
  Treq,
  Trtype,
} from '../spec/fabrics.js';
import { fail, invalidField, invalidOpcode, ok, viewOf, writeStringField, type FabricsResponse, type QueueLink } from './capsule.js';
import { connectInvalid, connectResult, isResponse, parseConnect, type ConnectResult, type ConnectTarget } from './connect.js';
import { CntlidPool } from './cntlid-pool.js';
import { ControllerCore, TARGET_AERL, type ControllerIdentity } from './controller-core.js';
import type { PortAddress, Subsystem } from './subsystem.js';

/** The largest Discovery Log Page read this controller serves in one command (MDTS 0 = no limit, but a bound here). */
const MAX_LOG_READ = 1 << 20;

export interface DiscoveryOptions {
  /** The port discovery is reached on (the SUBTYPE 3 entry). */
  port: PortAddress;
  /** Entries of the largest admin queue (default 32: ASQSZ). */
  adminQueueSize?: number;
  /** Added to KATO before a silent host is dropped (default 1000 ms). */
  keepAliveGraceMs?: number;
}

export class DiscoveryService implements ConnectTarget {
  readonly subnqn = DISCOVERY_NQN;
  readonly port: Required<PortAddress>;
  private readonly adminQueueSize: number;
  private readonly keepAliveGraceMs: number;
  private readonly subsystems: Subsystem[] = [];
  private readonly pool = new CntlidPool();
  private readonly controllers = new Map<number, DiscoveryController>();
  /** GENCTR: bumped whenever the log's content changes (Fabrics 1.1, Discovery Log Page header). */
  private generation = 0;

  constructor(opts: DiscoveryOptions) {
    const p = opts.port;
    if (p?.trtype !== 'tcp' || (p.adrfam !== 'ipv4' && p.adrfam !== 'ipv6') || typeof p.traddr !== 'string' || typeof p.trsvcid !== 'string') {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `port must be { trtype: 'tcp', adrfam: 'ipv4' | 'ipv6', traddr, trsvcid }, got ${JSON.stringify(p)}`);
    }
    this.port = { ...p, portid: p.portid ?? 1 };
    this.adminQueueSize = opts.adminQueueSize ?? 32;
    this.keepAliveGraceMs = opts.keepAliveGraceMs ?? 1000;
  }

  /** Lists a subsystem in the log. */
  add(s: Subsystem): void {
    if (!this.subsystems.includes(s)) {
      this.subsystems.push(s);
      this.generation++;
    }
  }
  remove(s: Subsystem): void {
    const i = this.subsystems.indexOf(s);
    if (i >= 0) {
      this.subsystems.splice(i, 1);
      this.generation++;
    }
  }
  get genctr(): number {
    return this.generation;
  }
  get activeControllers(): ReadonlyMap<number, DiscoveryController> {
    return this.controllers;
  }

  /** An admin Connect to the discovery subsystem (discovery controllers have no I/O queues). Never throws. */
  connect(sqe: Uint8Array, data: Uint8Array | undefined, link: QueueLink): ConnectResult<DiscoveryController> {
    const req = parseConnect(sqe, data);
    if (isResponse(req)) return connectResult(undefined, req, {}, sqe);
    if (req.subnqn !== DISCOVERY_NQN) return connectResult(req, connectInvalid('data', ConnectData.SUBNQN));
    // A discovery controller has only an admin queue (Fabrics 1.1, discovery service).
    if (req.qid !== 0) return connectResult(req, connectInvalid('sqe', ConnectSqe.QID));
    if (req.cntlid !== CNTLID_DYNAMIC) return connectResult(req, connectInvalid('data', ConnectData.CNTLID));
    if (req.hostid.every((b) => b === 0)) return connectResult(req, connectInvalid('data', ConnectData.HOSTID));
    if (req.sqsize === 0 || req.sqsize >= this.adminQueueSize) return connectResult(req, connectInvalid('sqe', ConnectSqe.SQSIZE));
    const cntlid = this.pool.take();
    if (cntlid === undefined) return connectResult(req, fail(Sct.COMMAND_SPECIFIC, FabricsStatus.CONTROLLER_BUSY, 0, true));
    const controller = new DiscoveryController(
      {
        cntlid,
        subnqn: DISCOVERY_NQN,
        hostnqn: req.hostnqn,
        hostid: req.hostid,
        // Linux's nvmet gives a discovery controller connected without KATO 120 s, so stale associations end.
        kato: req.kato === 0 ? DISCOVERY_DEFAULT_KATO_MS : req.kato,
        adminEntries: req.sqsize + 1,
        maxQueueEntries: this.adminQueueSize,
        keepAliveGraceMs: this.keepAliveGraceMs,
        onGone: (c) => {
          if (this.controllers.get(c.cntlid) === c) {
            this.controllers.delete(c.cntlid);
            this.pool.release(c.cntlid);
          }
        },
      },
      link,
      this,
    );
    this.controllers.set(cntlid, controller);
    return connectResult(req, ok(cntlid), { controller, queue: { qid: 0, entries: req.sqsize + 1, sqFlowControlDisabled: req.sqFlowControlDisabled } });
  }

  /** The whole Discovery Log Page as `hostnqn` sees it: header and entries. */
  logPage(hostnqn: string): Uint8Array {
    const visible = this.subsystems.filter((s) => s.allows(hostnqn));
    const records = 1 + visible.length;
    const out = new Uint8Array(DISCOVERY_LOG_HEADER_SIZE + records * DISCOVERY_LOG_ENTRY_SIZE);
    const dv = viewOf(out);
    writeField(dv, 0, DiscoveryLogHeader.GENCTR, this.generation);
    writeField(dv, 0, DiscoveryLogHeader.NUMREC, records);
    writeField(dv, 0, DiscoveryLogHeader.RECFMT, 0);
    let at = DISCOVERY_LOG_HEADER_SIZE;
    const entry = (port: Required<PortAddress>, subtype: number, subnqn: string, asqsz: number): void => {
      writeField(dv, at, DiscoveryLogEntry.TRTYPE, Trtype.TCP);
      writeField(dv, at, DiscoveryLogEntry.ADRFAM, port.adrfam === 'ipv4' ? Adrfam.IPV4 : Adrfam.IPV6);
      writeField(dv, at, DiscoveryLogEntry.SUBTYPE, subtype);
      // No secure channel requirement stated, SQ flow control cannot be disabled: TREQ 0 (what nvmet reports without TLS).
      writeField(dv, at, DiscoveryLogEntry.TREQ, Treq.SECURE_NOT_SPECIFIED);
      writeField(dv, at, DiscoveryLogEntry.PORTID, port.portid);
      // Dynamic controller model: any controller (FFFFh).
      writeField(dv, at, DiscoveryLogEntry.CNTLID, CNTLID_DYNAMIC);
      writeField(dv, at, DiscoveryLogEntry.ASQSZ, asqsz);
      writeStringField(out, at + DiscoveryLogEntry.TRSVCID.offset, DiscoveryLogEntry.TRSVCID.size, port.trsvcid);
      writeStringField(out, at + DiscoveryLogEntry.SUBNQN.offset, DiscoveryLogEntry.SUBNQN.size, subnqn);
      writeStringField(out, at + DiscoveryLogEntry.TRADDR.offset, DiscoveryLogEntry.TRADDR.size, port.traddr);
      writeField(dv, at, DiscoveryLogEntry.TSAS_SECTYPE, TcpSectype.NONE);
      at += DISCOVERY_LOG_ENTRY_SIZE;
    };
    entry(this.port, DiscoverySubtype.CURRENT_DISCOVERY, DISCOVERY_NQN, this.adminQueueSize);
    for (const s of visible) entry(s.port, DiscoverySubtype.NVM, s.subnqn, s.adminQueueSize);
    return out;
  }

  close(reason = 'discovery service closed'): void {
    for (const c of [...this.controllers.values()]) c.teardown(reason);
  }
}

/** A discovery controller: Identify Controller, Get Log Page 70h, and what ControllerCore answers. */
export class DiscoveryController extends ControllerCore {
  readonly kind = 'discovery' as const;

  constructor(id: ControllerIdentity, adminLink: QueueLink, private readonly service: DiscoveryService) {
    super(id, adminLink);
  }

  protected async adminCommand(sqe: Uint8Array): Promise<FabricsResponse> {
    const dv = viewOf(sqe);
    switch (readField(dv, 0, Sqe.OPC)) {
      case AdminOpcode.IDENTIFY:
        if (bitsOf(readField(dv, 0, Sqe.CDW10), IdentifyCdw10.CNS) !== Cns.CONTROLLER) return invalidField();
        return ok(0, this.identifyController());
      case AdminOpcode.GET_LOG_PAGE:
        return this.getLogPage(dv);
      default:
        // Set / Get Features of Keep Alive Timer and Async Event Configuration, Keep Alive, AER are ControllerCore's.
        return invalidOpcode();
    }
  }

  /** Identify Controller of a discovery controller (Fabrics 1.1, discovery controllers), built here: there is no device behind it. */
  identifyController(): Uint8Array {
    const data = new Uint8Array(IDENTIFY_DATA_SIZE);
    const dv = viewOf(data);
    writeStringField(data, IdCtrl.SN.offset, IdCtrl.SN.size, 'nvmq-discovery');
    data.fill(0x20, IdCtrl.SN.offset + 'nvmq-discovery'.length, IdCtrl.SN.offset + IdCtrl.SN.size);
    writeStringField(data, IdCtrl.MN.offset, IdCtrl.MN.size, 'nvmq discovery controller');
    data.fill(0x20, IdCtrl.MN.offset + 'nvmq discovery controller'.length, IdCtrl.MN.offset + IdCtrl.MN.size);
    writeStringField(data, IdCtrl.FR.offset, IdCtrl.FR.size, '0.1');
    data.fill(0x20, IdCtrl.FR.offset + 3, IdCtrl.FR.offset + IdCtrl.FR.size);
    writeField(dv, 0, IdCtrl.CNTLID, this.cntlid);
    writeField(dv, 0, IdCtrl.VER, this.vs);
    writeField(dv, 0, IdCtrl.CNTRLTYPE, ControllerType.DISCOVERY);
    writeField(dv, 0, IdCtrl.AERL, TARGET_AERL);
    // Extended data for Get Log Page: LPOL / LPOU offsets, how hosts read the log in pieces.
    writeField(dv, 0, IdCtrl.LPA, Lpa.EXTENDED_DATA);
    writeField(dv, 0, IdCtrl.KAS, 1);
    writeField(dv, 0, IdCtrl.MAXCMD, this.queue(0)?.entries ?? 32);
    writeField(dv, 0, IdCtrl.SGLS, SglSupport.SUPPORTED | SglSupport.TRANSPORT_DATA_BLOCK | SglSupport.OFFSET);
    writeStringField(data, IdCtrl.SUBNQN.offset, IdCtrl.SUBNQN.size, DISCOVERY_NQN);
    writeField(dv, 0, IdCtrl.MSDBD, 1);
    return data;
  }

  /**
   * Get Log Page 70h (Fabrics 1.1, Discovery Log Page): NUMD dwords from byte offset
   * LPO (CDW13:CDW12, dword aligned per NVMe 1.4 section 5.14); bytes past
   * the end of the log read as zero.
   */
  private getLogPage(dv: DataView): FabricsResponse {
    const cdw10 = readField(dv, 0, Sqe.CDW10);
    const cdw11 = readField(dv, 0, Sqe.CDW11);
    if (bitsOf(cdw10, GetLogPageCdw10.LID) !== DISCOVERY_LOG_PAGE_ID) return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.INVALID_LOG_PAGE);
    const length = (bitsOf(cdw10, GetLogPageCdw10.NUMDL) + bitsOf(cdw11, GetLogPageCdw11.NUMDU) * 0x10000 + 1) * 4;
    // LPOL is CDW12 and LPOU CDW13: one 64-bit byte offset.
    const offset = readU64(dv, Sqe.CDW12.offset);
    if (offset % 4 !== 0 || length > MAX_LOG_READ) return invalidField();
    const log = this.service.logPage(this.hostnqn);
    if (offset > log.length) return invalidField();
    const out = new Uint8Array(length);
    out.set(log.subarray(offset, Math.min(log.length, offset + length)));
    return ok(0, out);
  }
}
