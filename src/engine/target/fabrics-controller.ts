/**
 * An I/O controller of the NVM subsystem, one per host association: a
 * virtual controller over the one local controller the engine drives.
 *
 * What it answers itself (the rest of ControllerCore besides): Identify
 * Controller (the local one's, patched: identify-patch.ts), the Namespace
 * Identification Descriptor list, Number of Queues (per controller), the
 * Changed Namespace List (empty: namespaces never change under a host).
 * What it forwards through the main thread's admin queue
 * (`NvmeDriver.adminPassthru`): Identify Namespace and the Active Namespace
 * list, Get Log Page Error Information / SMART / Firmware Slot, Get Features
 * of the device-wide features. What it refuses: every command that would
 * change the device for all hosts (Format, Namespace Management, Firmware,
 * Sanitize, Set Features of device-wide features...) and the queue commands
 * a fabric has no use for (Create / Delete I/O SQ / CQ, Doorbell Buffer
 * Config: Fabrics 1.1 excludes them from the admin commands a fabric carries) with Invalid
 * Command Opcode.
 *
 * The transport hands every admin-queue capsule to `execute(sqe, data)`
 * (ControllerCore) and sends back the `FabricsResponse` it resolves to.
 */
import type { Completion } from '../spec/command.js';
import { Sqe } from '../spec/command.js';
import { bitsOf, readField } from '../spec/layout.js';
import { AdminOpcode } from '../spec/opcodes.js';
import { GenericStatus, CommandSpecificStatus, Sct } from '../spec/status.js';
import { Cns, IdentifyCdw10, IDENTIFY_DATA_SIZE } from '../spec/identify.js';
import { FeatureId, NumberOfQueuesDw, SetFeaturesCdw10, GetFeaturesCdw10 } from '../spec/features.js';
import { GetLogPageCdw10, GetLogPageCdw11, LogPageId } from '../spec/log-pages.js';
import { withBits } from '../spec/layout.js';
import type { CommandFields, DataSpec } from '../host/queue-pair.js';
import { ControllerCore, TARGET_AERL, type ControllerIdentity } from './controller-core.js';
import { commandSequenceError, fail, failGeneric, invalidField, invalidOpcode, ok, viewOf, type FabricsResponse, type QueueLink } from './capsule.js';
import { namespaceDescriptors, patchIdentifyController, patchIdentifyNamespace } from './identify-patch.js';

/** The narrow view of the local driver a controller needs: one raw admin command, and the largest transfer. */
export interface LocalAdmin {
  adminPassthru(cmd: CommandFields, data?: DataSpec): Promise<Completion>;
  readonly maxTransferBytes: number;
}

export interface FabricsControllerOptions extends ControllerIdentity {
  local: LocalAdmin;
  /** I/O queues a host may have (Number of Queues grants at most this). */
  maxIoQueues: number;
  inCapsuleDataBytes: number;
}

/** Device-wide features a host may read but not change (others' I/O depends on them). */
const READABLE_FEATURES: ReadonlySet<number> = new Set([
  FeatureId.ARBITRATION,
  FeatureId.POWER_MANAGEMENT,
  FeatureId.TEMPERATURE_THRESHOLD,
  FeatureId.ERROR_RECOVERY,
  FeatureId.VOLATILE_WRITE_CACHE,
  FeatureId.WRITE_ATOMICITY,
]);

/** KAS: keep-alive granularity of 100 ms (one unit); timers here are millisecond timers. */
const KAS_UNITS = 1;

export class FabricsController extends ControllerCore {
  readonly kind = 'io' as const;
  private readonly local: LocalAdmin;
  private readonly maxIoQueues: number;
  private readonly inCapsuleDataBytes: number;
  /** I/O queues granted by Set Features Number of Queues; undefined until the host asks (then maxIoQueues applies). */
  private granted: number | undefined;

  constructor(opts: FabricsControllerOptions, adminLink: QueueLink) {
    super(opts, adminLink);
    this.local = opts.local;
    this.maxIoQueues = opts.maxIoQueues;
    this.inCapsuleDataBytes = opts.inCapsuleDataBytes;
  }

  /** I/O queues the host may connect: QIDs 1..this. */
  get ioQueueLimit(): number {
    return this.granted ?? this.maxIoQueues;
  }

  /** Entries of I/O queue `qid` as connected (SQSIZE + 1), or 0 when it is not connected. */
  queueEntries(qid: number): number {
    return this.queue(qid)?.entries ?? 0;
  }

  protected override onReset(): void {
    this.granted = undefined;
  }

  protected async adminCommand(sqe: Uint8Array, _data: Uint8Array | undefined): Promise<FabricsResponse> {
    const dv = viewOf(sqe);
    switch (readField(dv, 0, Sqe.OPC)) {
      case AdminOpcode.IDENTIFY:
        return this.identify(dv);
      case AdminOpcode.GET_LOG_PAGE:
        return this.getLogPage(dv);
      case AdminOpcode.SET_FEATURES:
        return this.setFeatures(dv);
      case AdminOpcode.GET_FEATURES:
        return this.getFeatures(dv);
      default:
        return invalidOpcode();
    }
  }

  private async identify(dv: DataView): Promise<FabricsResponse> {
    const cns = bitsOf(readField(dv, 0, Sqe.CDW10), IdentifyCdw10.CNS);
    const nsid = readField(dv, 0, Sqe.NSID);
    switch (cns) {
      case Cns.CONTROLLER: {
        const r = await this.forward({ opcode: AdminOpcode.IDENTIFY, cdw10: Cns.CONTROLLER }, IDENTIFY_DATA_SIZE);
        if (r.status === 0 && r.data) {
          patchIdentifyController(r.data, {
            cntlid: this.cntlid,
            subnqn: this.subnqn,
            version: this.vs,
            inCapsuleDataBytes: this.inCapsuleDataBytes,
            maxQueueEntries: this.maxQueueEntries,
            kas: KAS_UNITS,
            aerl: TARGET_AERL,
          });
        }
        return r;
      }
      case Cns.NAMESPACE: {
        const r = await this.forward({ opcode: AdminOpcode.IDENTIFY, nsid, cdw10: Cns.NAMESPACE }, IDENTIFY_DATA_SIZE);
        if (r.status === 0 && r.data) patchIdentifyNamespace(r.data);
        return r;
      }
      case Cns.ACTIVE_NAMESPACE_LIST:
        return this.forward({ opcode: AdminOpcode.IDENTIFY, nsid, cdw10: Cns.ACTIVE_NAMESPACE_LIST }, IDENTIFY_DATA_SIZE);
      case Cns.NS_DESCRIPTOR_LIST: {
        const r = await this.forward({ opcode: AdminOpcode.IDENTIFY, nsid, cdw10: Cns.NAMESPACE }, IDENTIFY_DATA_SIZE);
        if (r.status !== 0 || !r.data) return r;
        return ok(0, namespaceDescriptors(r.data));
      }
      default:
        // Controller lists, allocated namespaces, command-set specific data: not offered to remote hosts.
        return invalidField();
    }
  }

  private async getLogPage(dv: DataView): Promise<FabricsResponse> {
    const cdw10 = readField(dv, 0, Sqe.CDW10);
    const cdw11 = readField(dv, 0, Sqe.CDW11);
    const lid = bitsOf(cdw10, GetLogPageCdw10.LID);
    const dwords = bitsOf(cdw10, GetLogPageCdw10.NUMDL) + bitsOf(cdw11, GetLogPageCdw11.NUMDU) * 0x10000 + 1;
    const length = dwords * 4;
    switch (lid) {
      case LogPageId.ERROR_INFORMATION:
      case LogPageId.SMART_HEALTH:
      case LogPageId.FIRMWARE_SLOT:
        if (length > this.local.maxTransferBytes) return invalidField();
        return this.forward(
          { opcode: AdminOpcode.GET_LOG_PAGE, nsid: readField(dv, 0, Sqe.NSID), cdw10, cdw11, cdw12: readField(dv, 0, Sqe.CDW12), cdw13: readField(dv, 0, Sqe.CDW13), cdw14: readField(dv, 0, Sqe.CDW14) },
          length,
        );
      case LogPageId.CHANGED_NAMESPACES:
        // Namespaces never change under a connected host: the list is empty (NVMe 1.4 section 5.14.1.4).
        if (length > 1 << 20) return invalidField();
        return ok(0, new Uint8Array(length));
      default:
        return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.INVALID_LOG_PAGE);
    }
  }

  private setFeatures(dv: DataView): FabricsResponse {
    const cdw10 = readField(dv, 0, Sqe.CDW10);
    const fid = bitsOf(cdw10, SetFeaturesCdw10.FID);
    if (fid === FeatureId.NUMBER_OF_QUEUES) {
      if (bitsOf(cdw10, SetFeaturesCdw10.SV)) return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.FEATURE_NOT_SAVEABLE);
      // Only before any I/O queue exists (NVMe 1.4 section 5.21.1.7).
      if (this.ioQueueCount > 0) return commandSequenceError();
      const cdw11 = readField(dv, 0, Sqe.CDW11);
      const nsqr = bitsOf(cdw11, NumberOfQueuesDw.NSQ);
      const ncqr = bitsOf(cdw11, NumberOfQueuesDw.NCQ);
      // 65535 (0's based 65536) is invalid for either count.
      if (nsqr === 0xffff || ncqr === 0xffff) return invalidField();
      // A Fabrics I/O queue is one SQ and its CQ: one count for both.
      this.granted = Math.min(Math.min(nsqr, ncqr) + 1, this.maxIoQueues);
      return ok(this.numberOfQueuesDw0(this.granted));
    }
    // Device-wide settings are the engine's to choose, not one host's (others' I/O depends on them).
    if (READABLE_FEATURES.has(fid) || fid === FeatureId.INTERRUPT_COALESCING || fid === FeatureId.INTERRUPT_VECTOR_CONFIG) {
      return fail(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.FEATURE_NOT_CHANGEABLE);
    }
    return invalidField();
  }

  private async getFeatures(dv: DataView): Promise<FabricsResponse> {
    const cdw10 = readField(dv, 0, Sqe.CDW10);
    const fid = bitsOf(cdw10, GetFeaturesCdw10.FID);
    if (fid === FeatureId.NUMBER_OF_QUEUES) return ok(this.numberOfQueuesDw0(this.ioQueueLimit));
    if (!READABLE_FEATURES.has(fid)) return invalidField();
    const r = await this.forward({ opcode: AdminOpcode.GET_FEATURES, nsid: readField(dv, 0, Sqe.NSID), cdw10, cdw11: readField(dv, 0, Sqe.CDW11) }, 0);
    return r;
  }

  private numberOfQueuesDw0(n: number): number {
    return withBits(withBits(0, NumberOfQueuesDw.NSQ, n - 1), NumberOfQueuesDw.NCQ, n - 1);
  }

  /** One command through the local admin queue; the local status comes back as is, a failure to send as Internal Error. */
  private async forward(cmd: CommandFields, length: number): Promise<FabricsResponse> {
    const buffer = length > 0 ? new Uint8Array(length) : undefined;
    try {
      const c = await this.local.adminPassthru(cmd, buffer ? { buffer, direction: 'from-device' } : undefined);
      if (c.status !== 0) return { status: c.status, dw0: c.dw0, dw1: c.dw1 };
      return buffer ? ok(c.dw0, buffer, c.dw1) : ok(c.dw0, undefined, c.dw1);
    } catch {
      return failGeneric(GenericStatus.INTERNAL_ERROR);
    }
  }
}
