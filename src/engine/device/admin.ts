/**
 * Admin command set (NVMe 1.4, section 5): one handler per command, each
 * returning an NVMe status (or HELD when it completes later).
 */
import type { AdminContext, CommandEntry } from './context.js';
import { defaultTemperatureThresholds, numberOfQueuesValue } from './admin-state.js';
import {
  ABORT_REQUESTED,
  AER_LIMIT_EXCEEDED,
  COMMAND_SEQUENCE_ERROR,
  COMPLETION_QUEUE_INVALID,
  DATA_TRANSFER_ERROR,
  FEATURE_NOT_SAVEABLE,
  HELD,
  INVALID_FIELD,
  INVALID_INTERRUPT_VECTOR,
  INVALID_LOG_PAGE,
  INVALID_NAMESPACE,
  INVALID_QUEUE_DELETION,
  INVALID_QUEUE_IDENTIFIER,
  INVALID_QUEUE_SIZE,
  PRP_OFFSET_INVALID,
} from './status.js';
import type { Request } from './queues.js';
import { waitAsyncAlive } from '../shared/wait.js';
import { AdminOpcode } from '../spec/opcodes.js';
import { bitsOf, readField, writeAscii, writeField } from '../spec/layout.js';
import { Cns, IdCtrl, IdNs, IdentifyCdw10, IDENTIFY_DATA_SIZE, LbaFormat, ACTIVE_NS_LIST_ENTRIES, NSID_BROADCAST } from '../spec/identify.js';
import { CreateCqCdw10, CreateCqCdw11, CreateSqCdw10, CreateSqCdw11, DeleteQueueCdw10, AbortCdw10 } from '../spec/admin-commands.js';
import { FeatureId, FeatureSelect, FeatureCapability, GetFeaturesCdw10, SetFeaturesCdw10, NumberOfQueuesDw, VolatileWriteCacheDw, TemperatureThresholdDw } from '../spec/features.js';
import { GetLogPageCdw10, GetLogPageCdw11, LogPageId, CommandEffect, COMMANDS_EFFECTS_LOG_SIZE, SmartLog, AsyncEventType, AsyncSmartInfo, CriticalWarning } from '../spec/log-pages.js';
import { Cc, Regs } from '../spec/registers.js';
import { CQE_SIZE, SQE_SIZE, SQE_SIZE_LOG2, CQE_SIZE_LOG2 } from '../spec/command.js';

export function adminCommands(): Map<number, CommandEntry<AdminContext>> {
  const t = new Map<number, CommandEntry<AdminContext>>();
  const add = (opcode: number, handler: CommandEntry<AdminContext>['handler'], effects = 0): void => {
    t.set(opcode, { opcode, handler, effects });
  };
  add(AdminOpcode.DELETE_IO_SQ, executeDeleteIoSq);
  add(AdminOpcode.CREATE_IO_SQ, executeCreateIoSq);
  add(AdminOpcode.GET_LOG_PAGE, executeGetLogPage);
  add(AdminOpcode.DELETE_IO_CQ, executeDeleteIoCq);
  add(AdminOpcode.CREATE_IO_CQ, executeCreateIoCq);
  add(AdminOpcode.IDENTIFY, executeIdentify);
  add(AdminOpcode.ABORT, executeAbort);
  add(AdminOpcode.SET_FEATURES, executeSetFeatures);
  add(AdminOpcode.GET_FEATURES, executeGetFeatures);
  add(AdminOpcode.ASYNC_EVENT_REQUEST, executeAsyncEventRequest);
  return t;
}

// ------------------------------------------------------------------ Identify

function executeIdentify(c: AdminContext, req: Request): number {
  const cns = bitsOf(req.cmd.cdw10, IdentifyCdw10.CNS);
  const nsid = req.cmd.nsid;
  switch (cns) {
    case Cns.CONTROLLER:
      return c.io.sendToHost(req, identifyController(c));
    case Cns.NAMESPACE: {
      if (nsid === 0 || nsid === NSID_BROADCAST || nsid > c.maxNsid) return INVALID_NAMESPACE;
      const ns = c.io.namespaces.get(nsid);
      // An inactive NSID returns a zero-filled structure (5.15.2.1).
      return c.io.sendToHost(req, ns ? identifyNamespace(c, nsid) : new Uint8Array(IDENTIFY_DATA_SIZE));
    }
    case Cns.ACTIVE_NAMESPACE_LIST: {
      if (nsid >= 0xfffffffe) return INVALID_NAMESPACE;
      const out = new Uint8Array(IDENTIFY_DATA_SIZE);
      const dv = new DataView(out.buffer);
      const ids = [...c.io.namespaces.keys()].filter((id) => id > nsid).sort((a, b) => a - b).slice(0, ACTIVE_NS_LIST_ENTRIES);
      ids.forEach((id, i) => dv.setUint32(i * 4, id, true));
      return c.io.sendToHost(req, out);
    }
    default:
      return INVALID_FIELD;
  }
}

function identifyController(c: AdminContext): Uint8Array {
  const out = new Uint8Array(IDENTIFY_DATA_SIZE);
  const dv = new DataView(out.buffer);
  writeField(dv, 0, IdCtrl.VID, 0x1b36);
  writeField(dv, 0, IdCtrl.SSVID, 0x1af4);
  writeAscii(dv, 0, IdCtrl.SN, c.config.identity.serial);
  writeAscii(dv, 0, IdCtrl.MN, c.config.identity.model);
  writeAscii(dv, 0, IdCtrl.FR, c.config.identity.firmware);
  writeField(dv, 0, IdCtrl.RAB, 6);
  writeField(dv, 0, IdCtrl.MDTS, c.config.mdts);
  writeField(dv, 0, IdCtrl.CNTLID, 1);
  writeField(dv, 0, IdCtrl.VER, c.shared.regs.getUint32(Regs.VS.offset, true));
  writeField(dv, 0, IdCtrl.CNTRLTYPE, 1);
  writeField(dv, 0, IdCtrl.ACL, c.config.acl);
  writeField(dv, 0, IdCtrl.AERL, c.config.aerl);
  writeField(dv, 0, IdCtrl.FRMW, 0x02);
  // Commands Supported and Effects log page supported.
  writeField(dv, 0, IdCtrl.LPA, 0x02);
  writeField(dv, 0, IdCtrl.ELPE, c.config.errorLogEntries - 1);
  writeField(dv, 0, IdCtrl.WCTEMP, 343);
  writeField(dv, 0, IdCtrl.CCTEMP, 373);
  writeField(dv, 0, IdCtrl.SQES, (SQE_SIZE_LOG2 << 4) | SQE_SIZE_LOG2);
  writeField(dv, 0, IdCtrl.CQES, (CQE_SIZE_LOG2 << 4) | CQE_SIZE_LOG2);
  writeField(dv, 0, IdCtrl.MAXCMD, c.config.mqes + 1 > 0xffff ? 0xffff : c.config.mqes + 1);
  writeField(dv, 0, IdCtrl.NN, c.maxNsid);
  // ONCS: Dataset Management (bit 2), Write Zeroes (bit 3), Select in Get Features (bit 4).
  writeField(dv, 0, IdCtrl.ONCS, (1 << 2) | (1 << 3) | (1 << 4));
  // VWC: present (bit 0); Flush with NSID FFFFFFFFh applies to all namespaces (bits 2:1 = 11b).
  writeField(dv, 0, IdCtrl.VWC, 0x07);
  // SUBNQN is a null-terminated UTF-8 string (not space padded like SN / MN / FR); `out` is zero-filled.
  out.set(new TextEncoder().encode(`nqn.2026-11.io.nvmq:${c.config.identity.serial}`).subarray(0, IdCtrl.SUBNQN.size - 1), IdCtrl.SUBNQN.offset);
  // Power state 0: maximum power 25.00 W (centiwatts).
  dv.setUint16(IdCtrl.PSD0.offset, 2500, true);
  return out;
}

function identifyNamespace(c: AdminContext, nsid: number): Uint8Array {
  const ns = c.io.namespaces.get(nsid)!;
  const out = new Uint8Array(IDENTIFY_DATA_SIZE);
  const dv = new DataView(out.buffer);
  writeField(dv, 0, IdNs.NSZE, ns.blocks);
  writeField(dv, 0, IdNs.NCAP, ns.blocks);
  writeField(dv, 0, IdNs.NUSE, ns.blocks);
  writeField(dv, 0, IdNs.NLBAF, 0);
  writeField(dv, 0, IdNs.FLBAS, 0);
  // Deallocated blocks read as zeroes (001b); Write Zeroes may deallocate (bit 3).
  writeField(dv, 0, IdNs.DLFEAT, 0x09);
  // NSATTR bit 0: write protected (opened read-only, or gone read-only after data may have been lost).
  writeField(dv, 0, IdNs.NSATTR, ns.writeProtected ? 1 : 0);
  writeField(dv, IdNs.LBAF0.offset, LbaFormat.LBADS, ns.lbaShift);
  writeField(dv, IdNs.LBAF0.offset, LbaFormat.MS, 0);
  writeField(dv, IdNs.LBAF0.offset, LbaFormat.RP, 0);
  // NGUID / EUI64: stable per controller serial and NSID.
  const id = hash32(`${c.config.identity.serial}/${nsid}`);
  dv.setUint32(IdNs.NGUID.offset, 0x6e766d71, false);
  dv.setUint32(IdNs.NGUID.offset + 12, id, false);
  dv.setUint32(IdNs.EUI64.offset, 0x6e766d71, false);
  dv.setUint32(IdNs.EUI64.offset + 4, id, false);
  return out;
}

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ------------------------------------------------------------------ queues

function ccEntrySize(c: AdminContext, field: typeof Cc.IOSQES): number {
  return readField(c.shared.regs, Regs.CC.offset, field);
}

/** Checks shared by both Create commands on the queue's base address (PRP1, contiguous). */
function checkQueueMemory(c: AdminContext, base: number, bytes: number): number {
  if (base === 0 || base % c.shared.pageSize !== 0) return PRP_OFFSET_INVALID;
  if (c.arena.translate(base, bytes) < 0) return DATA_TRANSFER_ERROR;
  return 0;
}

function executeCreateIoCq(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const d11 = req.cmd.cdw11;
  const qid = bitsOf(d10, CreateCqCdw10.QID);
  const size = bitsOf(d10, CreateCqCdw10.QSIZE) + 1;
  const pc = bitsOf(d11, CreateCqCdw11.PC);
  const ien = bitsOf(d11, CreateCqCdw11.IEN);
  const iv = bitsOf(d11, CreateCqCdw11.IV);
  if (qid === 0 || qid > c.admin.grantedCqs || c.io.cq(qid)) return INVALID_QUEUE_IDENTIFIER;
  if (size < 2 || size > c.config.mqes + 1) return INVALID_QUEUE_SIZE;
  // CAP.CQR = 1: only physically contiguous queues.
  if (!pc) return INVALID_FIELD;
  if (iv >= c.config.interruptVectors) return INVALID_INTERRUPT_VECTOR;
  if (ccEntrySize(c, Cc.IOCQES) !== CQE_SIZE_LOG2) return INVALID_FIELD;
  const mem = checkQueueMemory(c, req.cmd.prp1, size * CQE_SIZE);
  if (mem) return mem;
  c.io.cqSlot(qid).init(req.cmd.prp1, c.arena.translate(req.cmd.prp1, size * CQE_SIZE), size, ien === 1, iv);
  c.admin.ioQueuesCreated = true;
  return 0;
}

function executeCreateIoSq(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const d11 = req.cmd.cdw11;
  const qid = bitsOf(d10, CreateSqCdw10.QID);
  const size = bitsOf(d10, CreateSqCdw10.QSIZE) + 1;
  const pc = bitsOf(d11, CreateSqCdw11.PC);
  const cqid = bitsOf(d11, CreateSqCdw11.CQID);
  if (qid === 0 || qid > c.admin.grantedSqs || c.io.sq(qid)) return INVALID_QUEUE_IDENTIFIER;
  const cq = cqid === 0 ? undefined : c.io.cq(cqid);
  if (!cq) return COMPLETION_QUEUE_INVALID;
  if (size < 2 || size > c.config.mqes + 1) return INVALID_QUEUE_SIZE;
  if (!pc) return INVALID_FIELD;
  if (ccEntrySize(c, Cc.IOSQES) !== SQE_SIZE_LOG2) return INVALID_FIELD;
  const mem = checkQueueMemory(c, req.cmd.prp1, size * SQE_SIZE);
  if (mem) return mem;
  const sq = c.io.sqSlot(qid).init(req.cmd.prp1, c.arena.translate(req.cmd.prp1, size * SQE_SIZE), size, cqid, bitsOf(d11, CreateSqCdw11.QPRIO));
  sq.generation = c.shared.nextSqGeneration();
  cq.addSq(1);
  c.admin.ioQueuesCreated = true;
  return 0;
}

/**
 * Delete I/O SQ (5.6): commands still executing are aborted with "Command
 * Aborted due to SQ Deletion" and posted before this command completes. Their
 * backend operations are waited for, so none writes host memory afterwards.
 */
function executeDeleteIoSq(c: AdminContext, req: Request): number {
  const qid = bitsOf(req.cmd.cdw10, DeleteQueueCdw10.QID);
  const sq = qid === 0 ? undefined : c.io.sq(qid);
  if (!sq || sq.deleting) return INVALID_QUEUE_IDENTIFIER;
  // From here nothing more is fetched, and whatever finishes completes as aborted.
  sq.deleting = true;
  const remove = (): void => {
    sq.invalidate();
    c.io.cq(sq.cqid)?.addSq(-1);
    // This thread's ring for the queue is idle now; rings in other threads go when they next see a recreated QID (a new generation), close or end.
    c.io.retireRing(qid);
  };
  // Operations of this thread's ring for the queue are cancelled: their commands complete as aborted now.
  c.io.retireRing(qid);
  if (sq.inflight === 0) {
    remove();
    return 0;
  }
  // Commands executing in other threads: wait for the last to post its completion.
  const epoch = c.shared.epoch;
  void (async () => {
    for (let n = sq.inflight; n > 0; n = sq.inflight) await waitAsyncAlive(sq.words, sq.inflightIndex, n);
    // After a reset the queue is gone already and nothing is posted (finish() checks the epoch), but this
    // command must still leave the in-flight count, or the reset's drain would wait for it forever.
    if (c.shared.epoch === epoch) remove();
    c.io.release(req, 0);
  })();
  return HELD;
}

function executeDeleteIoCq(c: AdminContext, req: Request): number {
  const qid = bitsOf(req.cmd.cdw10, DeleteQueueCdw10.QID);
  const cq = qid === 0 ? undefined : c.io.cq(qid);
  if (!cq) return INVALID_QUEUE_IDENTIFIER;
  if (cq.sqCount > 0) return INVALID_QUEUE_DELETION;
  cq.invalidate();
  return 0;
}

// ------------------------------------------------------------------ features

interface FeatureDef {
  get(c: AdminContext, cdw11: number): number;
  default(c: AdminContext, cdw11: number): number;
  /** Get Features: the status for a CDW11 that selects something the feature lacks (0 when fine). */
  check?(cdw11: number): number;
  /** Returns a status; may set the completion's DW0. */
  set(c: AdminContext, cdw11: number, req: Request): number;
}

// Temperature thresholds (5.21.1.4): an over and an under threshold for the Composite Temperature
// (WCTEMP is non-zero) and for Temperature Sensor 1 (the SMART log reports it), kept in
// c.admin.features.temperatureThresholds[sensor * 2 + THSEL] so a reset restores the defaults.
const TMPSEL_ALL = 0xf;
const THSEL_OVER = 0;
const THSEL_UNDER = 1;
const TEMP_SENSORS = [0, 1] as const;

/** Over: WCTEMP for the composite, FFFFh for a sensor; under: 0h. */
function thresholdDefault(tmpsel: number, thsel: number): number {
  return defaultTemperatureThresholds()[tmpsel * 2 + thsel] ?? 0;
}

function threshold(c: AdminContext, tmpsel: number, thsel: number): number {
  return c.admin.features.temperatureThresholds[tmpsel * 2 + thsel]!;
}

function checkTemperatureSelect(cdw11: number, forSet: boolean): number {
  const tmpsel = bitsOf(cdw11, TemperatureThresholdDw.TMPSEL);
  const thsel = bitsOf(cdw11, TemperatureThresholdDw.THSEL);
  if (thsel !== THSEL_OVER && thsel !== THSEL_UNDER) return INVALID_FIELD;
  if (!(TEMP_SENSORS as readonly number[]).includes(tmpsel) && !(forSet && tmpsel === TMPSEL_ALL)) return INVALID_FIELD;
  return 0;
}

/**
 * SMART Critical Warning: bit 1 for the temperature; bits 2 (reliability
 * degraded) and 3 (read only) while a namespace may have lost acknowledged
 * data (it stays so until the engine is opened again).
 */
function criticalWarning(c: AdminContext): number {
  let w = temperatureWarning(c) ? CriticalWarning.TEMPERATURE : 0;
  for (const ns of c.io.namespaces.values()) if (ns.media.lost) w |= CriticalWarning.RELIABILITY_DEGRADED | CriticalWarning.READ_ONLY;
  return w;
}

/** SMART Critical Warning bit 1: a temperature at or above its over threshold, or at or below its under threshold. */
function temperatureWarning(c: AdminContext): boolean {
  // Both sensors report the controller's one temperature (health.ts).
  return TEMP_SENSORS.some((s) => c.config.temperatureKelvin >= threshold(c, s, THSEL_OVER) || c.config.temperatureKelvin <= threshold(c, s, THSEL_UNDER));
}

const featureTable = new Map<number, FeatureDef>([
  [
    FeatureId.ARBITRATION,
    {
      get: (c) => c.admin.features.arbitration,
      default: () => 0,
      set: (c, v) => {
        // Bits 7:3 are reserved.
        c.admin.features.arbitration = (v & 0xffffff07) >>> 0;
        return 0;
      },
    },
  ],
  [
    FeatureId.TEMPERATURE_THRESHOLD,
    {
      get: (c, d) => threshold(c, bitsOf(d, TemperatureThresholdDw.TMPSEL), bitsOf(d, TemperatureThresholdDw.THSEL)),
      default: (_c, d) => thresholdDefault(bitsOf(d, TemperatureThresholdDw.TMPSEL), bitsOf(d, TemperatureThresholdDw.THSEL)),
      check: (d) => checkTemperatureSelect(d, false),
      set: (c, d) => {
        const bad = checkTemperatureSelect(d, true);
        if (bad) return bad;
        const tmpsel = bitsOf(d, TemperatureThresholdDw.TMPSEL);
        const thsel = bitsOf(d, TemperatureThresholdDw.THSEL);
        for (const s of tmpsel === TMPSEL_ALL ? TEMP_SENSORS : [tmpsel]) c.admin.features.temperatureThresholds[s * 2 + thsel] = bitsOf(d, TemperatureThresholdDw.TMPTH);
        // Crossing a threshold raises a SMART / Health event, once (sent when enabled in Asynchronous Event Configuration).
        const warning = temperatureWarning(c);
        if (warning && !c.admin.features.temperatureWarning) c.admin.events.raise(AsyncEventType.SMART_HEALTH, AsyncSmartInfo.TEMPERATURE_THRESHOLD, LogPageId.SMART_HEALTH);
        c.admin.features.temperatureWarning = warning;
        return 0;
      },
    },
  ],
  [
    FeatureId.VOLATILE_WRITE_CACHE,
    {
      get: (c) => c.admin.features.volatileWriteCache,
      default: () => 1,
      set: (c, v) => {
        const on = bitsOf(v, VolatileWriteCacheDw.WCE) === 1;
        c.admin.features.volatileWriteCache = on ? 1 : 0;
        c.shared.setWriteCacheEnabled(on);
        return 0;
      },
    },
  ],
  [
    FeatureId.NUMBER_OF_QUEUES,
    {
      get: (c) => c.admin.features.numberOfQueues,
      default: (c) => numberOfQueuesValue(c.config.maxIoQueues),
      set: (c, v, req) => {
        const nsq = bitsOf(v, NumberOfQueuesDw.NSQ);
        const ncq = bitsOf(v, NumberOfQueuesDw.NCQ);
        if (nsq === 0xffff || ncq === 0xffff) return INVALID_FIELD;
        // Only before any I/O queue exists (5.21.1.7).
        if (c.admin.ioQueuesCreated) return COMMAND_SEQUENCE_ERROR;
        const nsqa = Math.min(nsq, c.config.maxIoQueues - 1);
        const ncqa = Math.min(ncq, c.config.maxIoQueues - 1);
        c.admin.grantedSqs = nsqa + 1;
        c.admin.grantedCqs = ncqa + 1;
        c.admin.features.numberOfQueues = ((ncqa << 16) | nsqa) >>> 0;
        req.dw0 = c.admin.features.numberOfQueues;
        return 0;
      },
    },
  ],
  [
    FeatureId.ASYNC_EVENT_CONFIG,
    {
      get: (c) => c.admin.features.asyncEventConfig,
      default: () => 0,
      set: (c, v) => {
        c.admin.features.asyncEventConfig = v & 0x3ff;
        return 0;
      },
    },
  ],
]);

function executeSetFeatures(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const fid = bitsOf(d10, SetFeaturesCdw10.FID);
  const def = featureTable.get(fid);
  if (!def) return INVALID_FIELD;
  if (bitsOf(d10, SetFeaturesCdw10.SV)) return FEATURE_NOT_SAVEABLE;
  return def.set(c, req.cmd.cdw11, req);
}

function executeGetFeatures(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const fid = bitsOf(d10, GetFeaturesCdw10.FID);
  const def = featureTable.get(fid);
  if (!def) return INVALID_FIELD;
  const d11 = req.cmd.cdw11;
  const bad = def.check?.(d11) ?? 0;
  if (bad) return bad;
  switch (bitsOf(d10, GetFeaturesCdw10.SEL)) {
    case FeatureSelect.CURRENT:
      req.dw0 = def.get(c, d11);
      return 0;
    case FeatureSelect.DEFAULT:
    case FeatureSelect.SAVED:
      // Nothing is saveable, so the saved value is the default (5.21.1).
      req.dw0 = def.default(c, d11);
      return 0;
    case FeatureSelect.SUPPORTED_CAPABILITIES:
      req.dw0 = FeatureCapability.CHANGEABLE;
      return 0;
    default:
      return INVALID_FIELD;
  }
}

// ------------------------------------------------------------------ log pages

function executeGetLogPage(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const lid = bitsOf(d10, GetLogPageCdw10.LID);
  const rae = bitsOf(d10, GetLogPageCdw10.RAE);
  const numd = (bitsOf(req.cmd.cdw11, GetLogPageCdw11.NUMDU) * 0x10000 + bitsOf(d10, GetLogPageCdw10.NUMDL)) + 1;
  const length = numd * 4;
  const offset = req.cmd.cdw12 + req.cmd.cdw13 * 0x1_0000_0000;
  let log: Uint8Array;
  let eventType = -1;
  switch (lid) {
    case LogPageId.ERROR_INFORMATION:
      log = c.errorLog.encode();
      eventType = 0;
      break;
    case LogPageId.SMART_HEALTH:
      // No per-namespace SMART data (LPA bit 0 clear): only the controller-wide page.
      if (req.cmd.nsid !== 0 && req.cmd.nsid !== NSID_BROADCAST) return INVALID_FIELD;
      log = c.health.encodeSmartLog(c.config.temperatureKelvin);
      log[SmartLog.CRITICAL_WARNING.offset]! |= criticalWarning(c);
      eventType = 1;
      break;
    case LogPageId.COMMANDS_SUPPORTED_EFFECTS:
      log = commandsEffectsLog(c);
      break;
    default:
      return INVALID_LOG_PAGE;
  }
  // The offset is in bytes and dword aligned; it must fall inside the page (5.14.1).
  if (offset % 4 !== 0 || offset >= log.length) return INVALID_FIELD;
  const st = c.io.sendToHost(req, log.subarray(offset, offset + length), length);
  if (st === 0 && eventType >= 0 && !rae) c.admin.events.unmask(eventType);
  return st;
}

function commandsEffectsLog(c: AdminContext): Uint8Array {
  const out = new Uint8Array(COMMANDS_EFFECTS_LOG_SIZE);
  const dv = new DataView(out.buffer);
  for (const e of c.commandTable(true).values()) dv.setUint32(e.opcode * 4, CommandEffect.CSUPP | e.effects, true);
  for (const e of c.commandTable(false).values()) dv.setUint32(1024 + e.opcode * 4, CommandEffect.CSUPP | e.effects, true);
  return out;
}

// ------------------------------------------------------------------ Abort, AER

/**
 * Abort (5.1): best effort. A command still executing completes with Command
 * Abort Requested once its backend work stops; a held AER completes at once.
 * DW0 bit 0 is set when nothing was aborted.
 */
function executeAbort(c: AdminContext, req: Request): number {
  const d10 = req.cmd.cdw10;
  const sqid = bitsOf(d10, AbortCdw10.SQID);
  const cid = bitsOf(d10, AbortCdw10.CID);
  req.dw0 = 1;
  if (sqid === 0) {
    const i = c.admin.events.waiting.findIndex((r) => r.cmd.cid === cid);
    if (i >= 0) {
      const aer = c.admin.events.waiting.splice(i, 1)[0]!;
      c.io.postCompletion(aer, ABORT_REQUESTED);
      req.dw0 = 0;
      return 0;
    }
  }
  // Best effort: only commands this thread is executing can be found (those of other threads report "not aborted").
  for (const r of c.io.requestsOf(sqid)) {
    if (r !== req && r.cmd.cid === cid && !r.done) {
      r.forced ||= ABORT_REQUESTED;
      req.dw0 = 0;
      break;
    }
  }
  return 0;
}

function executeAsyncEventRequest(c: AdminContext, req: Request): number {
  if (c.admin.events.waiting.length > c.config.aerl) return AER_LIMIT_EXCEEDED;
  c.io.detach(req);
  c.admin.events.hold(req);
  return HELD;
}

// ------------------------------------------------------------------ helpers



