/**
 * What every Fabrics controller of this target shares, I/O and discovery
 * alike: the properties (CAP, VS, CC, CSTS) and the CC.EN / CC.SHN state
 * machine, the keep-alive timer, Asynchronous Event Requests, the queues
 * connected to it and their teardown, and the admin commands whose answer
 * depends only on the controller (Keep Alive, Abort, Set / Get Features
 * Keep Alive Timer, Asynchronous Event Configuration, Host Identifier).
 *
 * Subclasses answer the rest in `adminCommand()`.
 *
 * Controller state (Fabrics 1.1 controller initialization, NVMe 1.4 section 7.6):
 *
 *   connected (CC.EN 0, CSTS.RDY 0) --CC.EN=1, valid CC--> ready (RDY 1)
 *   ready --CC.EN=0--> connected (I/O queues closed, AERs aborted)
 *   ready --CC.SHN≠0--> ready with CSTS.SHST = complete
 *   any --teardown()--> gone (every queue's link closed, CNTLID freed)
 */
import { debuglog } from 'node:util';
import { Sqe, SQE_SIZE, SQE_SIZE_LOG2, CQE_SIZE_LOG2 } from '../spec/command.js';
import { bitsOf, readField, withBits, readU64 } from '../spec/layout.js';
import { AdminOpcode, opcodeName } from '../spec/opcodes.js';
import { GenericStatus, CommandSpecificStatus, FabricsStatus, Sct, formatStatus } from '../spec/status.js';
import { Cap, Cc, Csts, Vs, ShutdownStatus, CAP_CSS_NVM, CC_CSS_NVM } from '../spec/registers.js';
import { FeatureId, SetFeaturesCdw10, GetFeaturesCdw10, HostIdentifierCdw11, AsyncEventConfigDw } from '../spec/features.js';
import { CONNECT_RECFMT, DisconnectSqe, FABRICS_OPCODE, FabricsSqe, fabricsCommandName, FabricsType, Property, PropertyAttrib, PropertySize, PropertySqe } from '../spec/fabrics.js';
import { commandSequenceError, fail, failGeneric, invalidField, invalidOpcode, ok, viewOf, type FabricsResponse, type QueueLink } from './capsule.js';
import type { FabricsQueueInfo } from './connect.js';
import { AsyncEvents } from './async-events.js';

const trace = debuglog('nvmq');

/** NVMe version these controllers report: 1.3 (Namespace Identification Descriptors, Fabrics 1.0 / 1.1 commands). */
export const TARGET_VERSION = { MJR: 1, MNR: 3, TER: 0 } as const;
/** CAP.TO in 500 ms units: 7.5 s, what Linux's nvmet reports. Readiness here is immediate. */
export const TARGET_CAP_TO = 15;
/** AERL (0's based): four Asynchronous Event Requests may be outstanding per controller. */
export const TARGET_AERL = 3;
/** The longest delay a Node timer takes (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ControllerIdentity {
  cntlid: number;
  subnqn: string;
  hostnqn: string;
  hostid: Uint8Array;
  /** Keep Alive Timeout from the admin Connect, ms; 0 = none. */
  kato: number;
  /** Entries the admin submission queue was connected with. */
  adminEntries: number;
  /** Largest I/O queue (entries) this controller accepts: CAP.MQES + 1. */
  maxQueueEntries: number;
  /** Added to KATO before a silent host is given up (see ARCHITECTURE.md). */
  keepAliveGraceMs: number;
  /** Called once when the controller is gone, so its owner frees the CNTLID. */
  onGone: (c: ControllerCore) => void;
}

interface ConnectedQueue extends FabricsQueueInfo {
  link: QueueLink;
}

/**
 * A Fabrics capsule (opcode 7Fh) on an I/O queue: only Disconnect is valid
 * there, and it needs nothing of the controller but to forget the queue
 * (`disconnect`), so a thread serving the queue away from its controller
 * answers it the same way.
 */
export function ioQueueFabricsCommand(sqe: Uint8Array): { response: FabricsResponse; disconnect: boolean } {
  const dv = viewOf(sqe);
  switch (readField(dv, 0, FabricsSqe.FCTYPE)) {
    case FabricsType.CONNECT:
      return { response: commandSequenceError(), disconnect: false };
    case FabricsType.DISCONNECT:
      if (readField(dv, 0, DisconnectSqe.RECFMT) !== CONNECT_RECFMT) return { response: fail(Sct.COMMAND_SPECIFIC, FabricsStatus.INCOMPATIBLE_FORMAT), disconnect: false };
      return { response: ok(), disconnect: true };
    default:
      // Property Get / Set belong to the admin queue; authentication is not offered.
      return { response: invalidOpcode(), disconnect: false };
  }
}

export abstract class ControllerCore {
  readonly cntlid: number;
  readonly subnqn: string;
  readonly hostnqn: string;
  readonly hostid: Uint8Array;
  protected readonly maxQueueEntries: number;
  private cc = 0;
  private csts = 0;
  private katoMs: number;
  private readonly graceMs: number;
  private kaTimer: ReturnType<typeof setTimeout> | undefined;
  private asyncEventConfig = 0;
  private readonly events = new AsyncEvents(TARGET_AERL + 1);
  private readonly queues = new Map<number, ConnectedQueue>();
  private readonly onGone: (c: ControllerCore) => void;
  private gone = false;
  private whyGone: string | undefined;

  constructor(id: ControllerIdentity, adminLink: QueueLink) {
    this.cntlid = id.cntlid;
    this.subnqn = id.subnqn;
    this.hostnqn = id.hostnqn;
    this.hostid = id.hostid;
    this.katoMs = id.kato;
    this.graceMs = id.keepAliveGraceMs;
    this.maxQueueEntries = id.maxQueueEntries;
    this.onGone = id.onGone;
    this.queues.set(0, { qid: 0, entries: id.adminEntries, sqFlowControlDisabled: false, link: adminLink });
    this.armKeepAlive();
  }

  /** Controller type for Identify CNTRLTYPE and logs. */
  abstract readonly kind: 'io' | 'discovery';

  /** The admin commands a subclass answers (Identify, Get Log Page, ...), given the 64-byte SQE and any host data. */
  protected abstract adminCommand(sqe: Uint8Array, data: Uint8Array | undefined): Promise<FabricsResponse>;

  // ---- read-only state for the transport and the I/O path ----------------

  /** CC.EN = 1 and CSTS.RDY = 1: the host may use I/O queues. */
  get enabled(): boolean {
    return bitsOf(this.cc, Cc.EN) === 1 && bitsOf(this.csts, Csts.RDY) === 1;
  }
  get isGone(): boolean {
    return this.gone;
  }
  /** Why the controller went away; undefined while it lives. */
  get goneReason(): string | undefined {
    return this.whyGone;
  }
  /** Keep Alive Timeout in effect, ms (0: no timer). */
  get keepAliveTimeoutMs(): number {
    return this.katoMs;
  }
  /** The connected queues, admin queue first. */
  get connectedQueues(): readonly FabricsQueueInfo[] {
    return [...this.queues.values()].map(({ qid, entries, sqFlowControlDisabled }) => ({ qid, entries, sqFlowControlDisabled }));
  }
  queue(qid: number): FabricsQueueInfo | undefined {
    const q = this.queues.get(qid);
    return q && { qid: q.qid, entries: q.entries, sqFlowControlDisabled: q.sqFlowControlDisabled };
  }

  // ---- capsules on the admin queue ----------------------------------------

  /**
   * Executes one command capsule received on this controller's admin queue:
   * Fabrics commands (Property Get / Set, ...) and admin commands. Never
   * rejects; a malformed capsule gets its status.
   */
  async execute(sqe: Uint8Array, data?: Uint8Array): Promise<FabricsResponse> {
    const r = await this.dispatch(sqe, data);
    if (r.status !== 0 && sqe instanceof Uint8Array && sqe.length === SQE_SIZE) {
      const opc = sqe[Sqe.OPC.offset]!;
      const what = opc === FABRICS_OPCODE ? fabricsCommandName(sqe[FabricsSqe.FCTYPE.offset]!) : opcodeName(opc, true);
      trace('fabrics controller %d: %s refused: %s', this.cntlid, what, formatStatus(r.status, opc === FABRICS_OPCODE ? 'fabrics' : 'nvm'));
    }
    return r;
  }

  private async dispatch(sqe: Uint8Array, data: Uint8Array | undefined): Promise<FabricsResponse> {
    if (!(sqe instanceof Uint8Array) || sqe.length !== SQE_SIZE) return invalidField();
    if (this.gone) return failGeneric(GenericStatus.ABORTED_SQ_DELETION);
    // Any command on the admin queue shows the host alive, as nvmet's traffic accounting does: a host's
    // bring-up commands precede its first Keep Alive (sent KATO / 2 after it starts its timer, not ours).
    this.armKeepAlive();
    const dv = viewOf(sqe);
    const opc = readField(dv, 0, Sqe.OPC);
    if (opc === FABRICS_OPCODE) return this.fabricsCommand(sqe, 0);
    // Everything but Fabrics commands waits for CC.EN = 1 and CSTS.RDY = 1 (Fabrics 1.1, controller initialization).
    if (!this.enabled) return commandSequenceError();
    try {
      switch (opc) {
        case AdminOpcode.KEEP_ALIVE:
          return this.keepAlive();
        case AdminOpcode.ASYNC_EVENT_REQUEST:
          return this.events.request();
        case AdminOpcode.ABORT:
          // Nothing here is abortable once received: DW0 bit 0 set = not aborted (NVMe 1.4 section 5.1).
          return ok(1);
        case AdminOpcode.SET_FEATURES: {
          const own = this.setOwnFeature(dv);
          if (own) return own;
          break;
        }
        case AdminOpcode.GET_FEATURES: {
          const own = this.getOwnFeature(dv);
          if (own) return own;
          break;
        }
      }
      return await this.adminCommand(sqe, data);
    } catch (e) {
      trace('fabrics controller %d: admin opcode 0x%s failed: %s', this.cntlid, opc.toString(16), (e as Error).message);
      return failGeneric(GenericStatus.INTERNAL_ERROR);
    }
  }

  /**
   * A Fabrics command (opcode 7Fh) received on queue `qid`. On an I/O queue
   * only Disconnect is valid: the queue is forgotten here, and the transport
   * closes its connection once the response is sent.
   */
  fabricsCommand(sqe: Uint8Array, qid: number): FabricsResponse {
    if (!(sqe instanceof Uint8Array) || sqe.length !== SQE_SIZE) return invalidField();
    if (qid !== 0) {
      const r = ioQueueFabricsCommand(sqe);
      if (r.disconnect) this.removeIoQueue(qid);
      return r.response;
    }
    switch (readField(viewOf(sqe), 0, FabricsSqe.FCTYPE)) {
      case FabricsType.PROPERTY_GET:
        return this.propertyGet(sqe);
      case FabricsType.PROPERTY_SET:
        return this.propertySet(sqe);
      case FabricsType.CONNECT:
        // A queue connects once; a second Connect on it is out of sequence.
        return commandSequenceError();
      case FabricsType.DISCONNECT:
        // Disconnect deletes an I/O queue; on the admin queue it is refused (Fabrics 1.1, Disconnect command).
        return fail(Sct.COMMAND_SPECIFIC, FabricsStatus.INVALID_QUEUE_TYPE);
      default:
        // Authentication is not offered (AUTHREQ 0 in every Connect response): its commands are as unknown ones.
        return invalidOpcode();
    }
  }


  /** Property Get (Fabrics 1.1): CAP as 8 bytes; VS, CC, CSTS as 4. The value comes back in DW0 (and DW1). */
  propertyGet(sqe: Uint8Array): FabricsResponse {
    const dv = viewOf(sqe);
    const attrib = readField(dv, 0, PropertySqe.ATTRIB);
    if (attrib & ~0x7) return invalidField();
    const size = bitsOf(attrib, PropertyAttrib.SIZE);
    const ofst = readField(dv, 0, PropertySqe.OFST);
    if (size === PropertySize.EIGHT_BYTES) {
      if (ofst === Property.CAP.offset) return ok(this.capLo, undefined, this.capHi);
      return invalidField();
    }
    if (size !== PropertySize.FOUR_BYTES) return invalidField();
    switch (ofst) {
      case Property.VS.offset:
        return ok(this.vs);
      case Property.CC.offset:
        return ok(this.cc);
      case Property.CSTS.offset:
        return ok(this.csts);
      default:
        // NSSR is reserved (CAP.NSSRS = 0), CAP is an 8-byte property, the rest is reserved.
        return invalidField();
    }
  }

  /** Property Set (Fabrics 1.1): only CC is writable. */
  propertySet(sqe: Uint8Array): FabricsResponse {
    const dv = viewOf(sqe);
    const attrib = readField(dv, 0, PropertySqe.ATTRIB);
    if (attrib & ~0x7 || bitsOf(attrib, PropertyAttrib.SIZE) !== PropertySize.FOUR_BYTES) return invalidField();
    if (readField(dv, 0, PropertySqe.OFST) !== Property.CC.offset) return invalidField();
    this.writeCc(readU64(dv, PropertySqe.VALUE.offset) % 0x1_0000_0000);
    return ok();
  }

  get capLo(): number {
    let lo = withBits(0, Cap.MQES, this.maxQueueEntries - 1);
    lo = withBits(lo, Cap.CQR, 1);
    return withBits(lo, Cap.TO, TARGET_CAP_TO);
  }
  get capHi(): number {
    // DSTRD 0, NSSRS 0, CSS = NVM, MPSMIN = MPSMAX = 0 (4 KiB): CAP_HI holds the fields from bit 32.
    return withBits(0, Cap.CSS, CAP_CSS_NVM);
  }
  get vs(): number {
    return withBits(withBits(withBits(0, Vs.MJR, TARGET_VERSION.MJR), Vs.MNR, TARGET_VERSION.MNR), Vs.TER, TARGET_VERSION.TER);
  }

  private writeCc(value: number): void {
    const old = this.cc;
    this.cc = value >>> 0;
    const wasEn = bitsOf(old, Cc.EN);
    const en = bitsOf(value, Cc.EN);
    if (!wasEn && en) {
      // The host's CC must match what CAP offers (NVMe 1.4 section 3.1.5); otherwise the controller fails (CSTS.CFS).
      const valid = bitsOf(value, Cc.CSS) === CC_CSS_NVM && bitsOf(value, Cc.MPS) === 0 && bitsOf(value, Cc.IOSQES) === SQE_SIZE_LOG2 && bitsOf(value, Cc.IOCQES) === CQE_SIZE_LOG2;
      this.csts = valid ? withBits(this.csts, Csts.RDY, 1) : withBits(this.csts, Csts.CFS, 1);
      trace('fabrics controller %d: CC.EN=1 %s', this.cntlid, valid ? 'ready' : 'refused (CSTS.CFS)');
    } else if (wasEn && !en) {
      // CC.EN 1 -> 0 is a Controller Level Reset (NVMe 1.4 section 7.3.2): I/O queues go, outstanding commands are aborted.
      this.resetController('controller reset (CC.EN cleared)');
    }
    const shn = bitsOf(value, Cc.SHN);
    if (shn !== 0 && bitsOf(old, Cc.SHN) === 0) {
      // Nothing is cached here: shutdown completes at once (NVMe 1.4 section 7.6.2).
      this.csts = withBits(this.csts, Csts.SHST, ShutdownStatus.COMPLETE);
      this.events.abortAll(failGeneric(GenericStatus.ABORTED_SQ_DELETION));
    } else if (shn === 0 && bitsOf(old, Cc.SHN) !== 0) {
      this.csts = withBits(this.csts, Csts.SHST, ShutdownStatus.NORMAL);
    }
  }

  private resetController(reason: string): void {
    this.csts = 0;
    this.events.abortAll(failGeneric(GenericStatus.ABORTED_SQ_DELETION));
    for (const [qid, q] of [...this.queues]) {
      if (qid === 0) continue;
      this.queues.delete(qid);
      q.link.close(reason);
    }
    this.onReset();
  }

  /** Per-controller settings a reset returns to their defaults (Number of Queues...). */
  protected onReset(): void {}

  // ---- I/O queues ----------------------------------------------------------

  /** Registers a connected I/O queue (the Subsystem's, once it has checked QID and SQSIZE). */
  addIoQueue(q: FabricsQueueInfo, link: QueueLink): void {
    this.queues.set(q.qid, { ...q, link });
  }
  hasQueue(qid: number): boolean {
    return this.queues.has(qid);
  }
  get ioQueueCount(): number {
    return this.queues.size - 1;
  }

  /**
   * The I/O queue `qid` is gone (Disconnect, or its connection ended): it is
   * forgotten and may connect again. Its link is not closed here: the
   * transport calling this is closing it.
   */
  removeIoQueue(qid: number): void {
    if (qid !== 0) this.queues.delete(qid);
  }

  // ---- keep alive (NVMe 1.4 section 7.12) -----------------------------------

  private armKeepAlive(): void {
    if (this.kaTimer) clearTimeout(this.kaTimer);
    this.kaTimer = undefined;
    if (this.katoMs === 0 || this.gone) return;
    this.waitKeepAlive(Date.now() + this.katoMs + this.graceMs);
  }

  /** KATO is 32-bit milliseconds, a timer at most 2^31 - 1: a longer wait is made of several. */
  private waitKeepAlive(deadline: number): void {
    const left = deadline - Date.now();
    this.kaTimer = setTimeout(() => (Date.now() < deadline ? this.waitKeepAlive(deadline) : this.teardown('keep alive timeout expired')), Math.min(Math.max(left, 0), MAX_TIMER_MS));
    this.kaTimer.unref?.();
  }

  /** Keep Alive (NVMe 1.4 section 5.16): `execute()` has restarted the timer already. */
  private keepAlive(): FabricsResponse {
    return ok();
  }

  // ---- features this controller owns ---------------------------------------

  private setOwnFeature(dv: DataView): FabricsResponse | undefined {
    const cdw10 = readField(dv, 0, Sqe.CDW10);
    const cdw11 = readField(dv, 0, Sqe.CDW11);
    const fid = bitsOf(cdw10, SetFeaturesCdw10.FID);
    const own = fid === FeatureId.KEEP_ALIVE_TIMER || fid === FeatureId.ASYNC_EVENT_CONFIG || fid === FeatureId.HOST_IDENTIFIER;
    if (!own) return undefined;
    // Nothing is saved across power cycles on a target (NVMe 1.4 section 5.21).
    if (bitsOf(cdw10, SetFeaturesCdw10.SV)) return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.FEATURE_NOT_SAVEABLE);
    switch (fid) {
      case FeatureId.KEEP_ALIVE_TIMER:
        this.katoMs = cdw11 >>> 0;
        this.armKeepAlive();
        return ok();
      case FeatureId.ASYNC_EVENT_CONFIG:
        this.asyncEventConfig = cdw11 & this.supportedAsyncEvents();
        return ok();
      default:
        // The host identifier of a Fabrics host is fixed by its Connect (Fabrics 1.1, Connect command).
        return commandSequenceError();
    }
  }

  private getOwnFeature(dv: DataView): FabricsResponse | undefined {
    const fid = bitsOf(readField(dv, 0, Sqe.CDW10), GetFeaturesCdw10.FID);
    switch (fid) {
      case FeatureId.KEEP_ALIVE_TIMER:
        return ok(this.katoMs);
      case FeatureId.ASYNC_EVENT_CONFIG:
        return ok(this.asyncEventConfig);
      case FeatureId.HOST_IDENTIFIER:
        // Only the 128-bit form exists on a fabric (EXHID = 1).
        if (bitsOf(readField(dv, 0, Sqe.CDW11), HostIdentifierCdw11.EXHID) !== 1) return invalidField();
        return ok(0, this.hostid.slice());
      default:
        return undefined;
    }
  }

  /** Asynchronous Event Configuration bits this controller keeps (SMART warnings and notices). */
  protected supportedAsyncEvents(): number {
    return withBits(withBits(0, AsyncEventConfigDw.SMART_WARNINGS, 0xff), AsyncEventConfigDw.NS_ATTR_NOTICES, 1);
  }

  // ---- asynchronous events (NVMe 1.4 section 5.2) ----------------------------

  /** Reports an event to the host: completes an outstanding request or waits for the next. */
  postAsyncEvent(type: number, info: number, logPage: number): void {
    if (!this.gone) this.events.post(type, info, logPage);
  }

  /** Outstanding Asynchronous Event Requests. */
  get outstandingAsyncEvents(): number {
    return this.events.outstanding;
  }

  // ---- teardown --------------------------------------------------------------

  /**
   * Ends the controller: every queue's link is closed (I/O queues first, the
   * admin queue last), outstanding AERs complete with Command Aborted due to
   * SQ Deletion, the keep-alive timer stops and the owner frees the CNTLID.
   * Idempotent.
   */
  teardown(reason: string): void {
    if (this.gone) return;
    this.gone = true;
    this.whyGone = reason;
    trace('fabrics controller %d (%s): torn down: %s', this.cntlid, this.hostnqn, reason);
    if (this.kaTimer) clearTimeout(this.kaTimer);
    this.kaTimer = undefined;
    this.events.abortAll(failGeneric(GenericStatus.ABORTED_SQ_DELETION));
    const queues = [...this.queues.values()].sort((a, b) => b.qid - a.qid);
    this.queues.clear();
    for (const q of queues) {
      try {
        q.link.close(reason);
      } catch (e) {
        trace('fabrics controller %d: closing queue %d threw: %s', this.cntlid, q.qid, (e as Error).message);
      }
    }
    this.onGone(this);
  }

  /** The host ended the association (its admin connection closed): `teardown('disconnected')`. */
  disconnect(): void {
    this.teardown('host disconnected');
  }
}
