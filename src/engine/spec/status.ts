/**
 * Status codes (NVMe 1.4, section 4.6.1.2): the status field of a CQE without
 * its phase tag, as a 15-bit number:
 *
 *   bit 14 DNR | bit 13 M | bits 12:11 CRD | bits 10:8 SCT | bits 7:0 SC
 *
 * Handlers return these numbers; `describeStatus()` names them and the host's
 * `statusToError()` turns them into typed errors.
 */

export const Sct = {
  GENERIC: 0,
  COMMAND_SPECIFIC: 1,
  MEDIA_DATA_INTEGRITY: 2,
  PATH: 3,
  VENDOR: 7,
} as const;

export const DNR = 1 << 14;
export const MORE = 1 << 13;

export function makeStatus(sct: number, sc: number, dnr = false): number {
  return ((sct & 0x7) << 8) | (sc & 0xff) | (dnr ? DNR : 0);
}
export function statusSct(status: number): number {
  return (status >>> 8) & 0x7;
}
export function statusSc(status: number): number {
  return status & 0xff;
}
export function statusDnr(status: number): boolean {
  return (status & DNR) !== 0;
}
export function statusMore(status: number): boolean {
  return (status & MORE) !== 0;
}
/** The status without DNR / More / CRD: what identifies the condition. */
export function statusCode(status: number): number {
  return status & 0x7ff;
}

interface StatusInfo {
  readonly sct: number;
  readonly sc: number;
  readonly name: string;
  /** Stable error code for the public API. */
  readonly code: string;
  /**
   * 'fabrics' for the command specific values of Fabrics commands (NVMe over
   * Fabrics 1.1): they reuse SC 80h.. of SCT 1, which the NVM command set gives
   * other meanings, so they are looked up only with `describeStatus(s, 'fabrics')`.
   */
  readonly context: 'nvm' | 'fabrics';
}

// Generic command status (Figure 126 and the NVM command set values 80h-84h).
export const GenericStatus = {
  SUCCESS: 0x00,
  INVALID_OPCODE: 0x01,
  INVALID_FIELD: 0x02,
  CID_CONFLICT: 0x03,
  DATA_TRANSFER_ERROR: 0x04,
  ABORTED_POWER_LOSS: 0x05,
  INTERNAL_ERROR: 0x06,
  ABORT_REQUESTED: 0x07,
  ABORTED_SQ_DELETION: 0x08,
  ABORTED_FAILED_FUSED: 0x09,
  ABORTED_MISSING_FUSED: 0x0a,
  INVALID_NAMESPACE: 0x0b,
  COMMAND_SEQUENCE_ERROR: 0x0c,
  INVALID_SGL_SEGMENT: 0x0d,
  INVALID_SGL_COUNT: 0x0e,
  DATA_SGL_LENGTH_INVALID: 0x0f,
  METADATA_SGL_LENGTH_INVALID: 0x10,
  SGL_TYPE_INVALID: 0x11,
  INVALID_CMB_USE: 0x12,
  PRP_OFFSET_INVALID: 0x13,
  ATOMIC_WRITE_UNIT_EXCEEDED: 0x14,
  OPERATION_DENIED: 0x15,
  SGL_OFFSET_INVALID: 0x16,
  HOST_ID_INCONSISTENT: 0x18,
  KEEP_ALIVE_EXPIRED: 0x19,
  KEEP_ALIVE_INVALID: 0x1a,
  ABORTED_PREEMPT: 0x1b,
  SANITIZE_FAILED: 0x1c,
  SANITIZE_IN_PROGRESS: 0x1d,
  SGL_GRANULARITY_INVALID: 0x1e,
  NOT_SUPPORTED_FOR_CMB_QUEUE: 0x1f,
  NAMESPACE_WRITE_PROTECTED: 0x20,
  COMMAND_INTERRUPTED: 0x21,
  TRANSIENT_TRANSPORT_ERROR: 0x22,
  LBA_OUT_OF_RANGE: 0x80,
  CAPACITY_EXCEEDED: 0x81,
  NAMESPACE_NOT_READY: 0x82,
  RESERVATION_CONFLICT: 0x83,
  FORMAT_IN_PROGRESS: 0x84,
} as const;

// Command specific status (Figure 127 and the NVM command set values 80h-82h).
export const CommandSpecificStatus = {
  COMPLETION_QUEUE_INVALID: 0x00,
  INVALID_QUEUE_IDENTIFIER: 0x01,
  INVALID_QUEUE_SIZE: 0x02,
  ABORT_LIMIT_EXCEEDED: 0x03,
  ASYNC_EVENT_LIMIT_EXCEEDED: 0x05,
  INVALID_FIRMWARE_SLOT: 0x06,
  INVALID_FIRMWARE_IMAGE: 0x07,
  INVALID_INTERRUPT_VECTOR: 0x08,
  INVALID_LOG_PAGE: 0x09,
  INVALID_FORMAT: 0x0a,
  FIRMWARE_NEEDS_RESET: 0x0b,
  INVALID_QUEUE_DELETION: 0x0c,
  FEATURE_NOT_SAVEABLE: 0x0d,
  FEATURE_NOT_CHANGEABLE: 0x0e,
  FEATURE_NOT_NAMESPACE_SPECIFIC: 0x0f,
  CONFLICTING_ATTRIBUTES: 0x80,
  INVALID_PROTECTION_INFO: 0x81,
  WRITE_TO_READ_ONLY_RANGE: 0x82,
} as const;

/** Command specific status of Fabrics commands (Fabrics 1.1), SCT 1. */
export const FabricsStatus = {
  INCOMPATIBLE_FORMAT: 0x80,
  CONTROLLER_BUSY: 0x81,
  CONNECT_INVALID_PARAMETERS: 0x82,
  CONNECT_RESTART_DISCOVERY: 0x83,
  CONNECT_INVALID_HOST: 0x84,
  INVALID_QUEUE_TYPE: 0x85,
  DISCOVER_RESTART: 0x90,
  AUTHENTICATION_REQUIRED: 0x91,
} as const;

/** Path related status (NVMe 1.4, Figure 130), SCT 3. */
export const PathStatus = {
  INTERNAL_PATH_ERROR: 0x00,
  CONTROLLER_PATHING_ERROR: 0x60,
  HOST_PATHING_ERROR: 0x70,
  ABORTED_BY_HOST: 0x71,
} as const;

// Media and data integrity errors (Figure 128).
export const MediaStatus = {
  WRITE_FAULT: 0x80,
  UNRECOVERED_READ_ERROR: 0x81,
  GUARD_CHECK_ERROR: 0x82,
  APP_TAG_CHECK_ERROR: 0x83,
  REF_TAG_CHECK_ERROR: 0x84,
  COMPARE_FAILURE: 0x85,
  ACCESS_DENIED: 0x86,
  DEALLOCATED_OR_UNWRITTEN: 0x87,
} as const;

const table: StatusInfo[] = [];
function add(sct: number, sc: number, name: string, code: string, context: 'nvm' | 'fabrics' = 'nvm'): void {
  table.push({ sct, sc, name, code, context });
}
add(0, 0x00, 'Successful Completion', 'NVMQ_SUCCESS');
add(0, 0x01, 'Invalid Command Opcode', 'NVMQ_INVALID_OPCODE');
add(0, 0x02, 'Invalid Field in Command', 'NVMQ_INVALID_FIELD');
add(0, 0x03, 'Command ID Conflict', 'NVMQ_CID_CONFLICT');
add(0, 0x04, 'Data Transfer Error', 'NVMQ_DATA_TRANSFER_ERROR');
add(0, 0x05, 'Commands Aborted due to Power Loss Notification', 'NVMQ_ABORTED_POWER_LOSS');
add(0, 0x06, 'Internal Error', 'NVMQ_INTERNAL_ERROR');
add(0, 0x07, 'Command Abort Requested', 'NVMQ_ABORT_REQUESTED');
add(0, 0x08, 'Command Aborted due to SQ Deletion', 'NVMQ_ABORTED_SQ_DELETION');
add(0, 0x09, 'Command Aborted due to Failed Fused Command', 'NVMQ_ABORTED_FAILED_FUSED');
add(0, 0x0a, 'Command Aborted due to Missing Fused Command', 'NVMQ_ABORTED_MISSING_FUSED');
add(0, 0x0b, 'Invalid Namespace or Format', 'NVMQ_INVALID_NAMESPACE');
add(0, 0x0c, 'Command Sequence Error', 'NVMQ_COMMAND_SEQUENCE_ERROR');
add(0, 0x0d, 'Invalid SGL Segment Descriptor', 'NVMQ_INVALID_SGL_SEGMENT');
add(0, 0x0e, 'Invalid Number of SGL Descriptors', 'NVMQ_INVALID_SGL_COUNT');
add(0, 0x0f, 'Data SGL Length Invalid', 'NVMQ_DATA_SGL_LENGTH_INVALID');
add(0, 0x10, 'Metadata SGL Length Invalid', 'NVMQ_METADATA_SGL_LENGTH_INVALID');
add(0, 0x11, 'SGL Descriptor Type Invalid', 'NVMQ_SGL_TYPE_INVALID');
add(0, 0x12, 'Invalid Use of Controller Memory Buffer', 'NVMQ_INVALID_CMB_USE');
add(0, 0x13, 'PRP Offset Invalid', 'NVMQ_PRP_OFFSET_INVALID');
add(0, 0x14, 'Atomic Write Unit Exceeded', 'NVMQ_ATOMIC_WRITE_UNIT_EXCEEDED');
add(0, 0x15, 'Operation Denied', 'NVMQ_OPERATION_DENIED');
add(0, 0x16, 'SGL Offset Invalid', 'NVMQ_SGL_OFFSET_INVALID');
add(0, 0x18, 'Host Identifier Inconsistent Format', 'NVMQ_HOST_ID_INCONSISTENT');
add(0, 0x19, 'Keep Alive Timer Expired', 'NVMQ_KEEP_ALIVE_EXPIRED');
add(0, 0x1a, 'Keep Alive Timeout Invalid', 'NVMQ_KEEP_ALIVE_INVALID');
add(0, 0x1b, 'Command Aborted due to Preempt and Abort', 'NVMQ_ABORTED_PREEMPT');
add(0, 0x1c, 'Sanitize Failed', 'NVMQ_SANITIZE_FAILED');
add(0, 0x1d, 'Sanitize In Progress', 'NVMQ_SANITIZE_IN_PROGRESS');
add(0, 0x1e, 'SGL Data Block Granularity Invalid', 'NVMQ_SGL_GRANULARITY_INVALID');
add(0, 0x1f, 'Command Not Supported for Queue in CMB', 'NVMQ_NOT_SUPPORTED_FOR_CMB_QUEUE');
add(0, 0x20, 'Namespace is Write Protected', 'NVMQ_NAMESPACE_WRITE_PROTECTED');
add(0, 0x21, 'Command Interrupted', 'NVMQ_COMMAND_INTERRUPTED');
add(0, 0x22, 'Transient Transport Error', 'NVMQ_TRANSIENT_TRANSPORT_ERROR');
add(0, 0x80, 'LBA Out of Range', 'NVMQ_LBA_OUT_OF_RANGE');
add(0, 0x81, 'Capacity Exceeded', 'NVMQ_CAPACITY_EXCEEDED');
add(0, 0x82, 'Namespace Not Ready', 'NVMQ_NAMESPACE_NOT_READY');
add(0, 0x83, 'Reservation Conflict', 'NVMQ_RESERVATION_CONFLICT');
add(0, 0x84, 'Format In Progress', 'NVMQ_FORMAT_IN_PROGRESS');
add(1, 0x00, 'Completion Queue Invalid', 'NVMQ_COMPLETION_QUEUE_INVALID');
add(1, 0x01, 'Invalid Queue Identifier', 'NVMQ_INVALID_QUEUE_IDENTIFIER');
add(1, 0x02, 'Invalid Queue Size', 'NVMQ_INVALID_QUEUE_SIZE');
add(1, 0x03, 'Abort Command Limit Exceeded', 'NVMQ_ABORT_LIMIT_EXCEEDED');
add(1, 0x05, 'Asynchronous Event Request Limit Exceeded', 'NVMQ_ASYNC_EVENT_LIMIT_EXCEEDED');
add(1, 0x06, 'Invalid Firmware Slot', 'NVMQ_INVALID_FIRMWARE_SLOT');
add(1, 0x07, 'Invalid Firmware Image', 'NVMQ_INVALID_FIRMWARE_IMAGE');
add(1, 0x08, 'Invalid Interrupt Vector', 'NVMQ_INVALID_INTERRUPT_VECTOR');
add(1, 0x09, 'Invalid Log Page', 'NVMQ_INVALID_LOG_PAGE');
add(1, 0x0a, 'Invalid Format', 'NVMQ_INVALID_FORMAT');
add(1, 0x0b, 'Firmware Activation Requires Conventional Reset', 'NVMQ_FIRMWARE_NEEDS_RESET');
add(1, 0x0c, 'Invalid Queue Deletion', 'NVMQ_INVALID_QUEUE_DELETION');
add(1, 0x0d, 'Feature Identifier Not Saveable', 'NVMQ_FEATURE_NOT_SAVEABLE');
add(1, 0x0e, 'Feature Not Changeable', 'NVMQ_FEATURE_NOT_CHANGEABLE');
add(1, 0x0f, 'Feature Not Namespace Specific', 'NVMQ_FEATURE_NOT_NAMESPACE_SPECIFIC');
add(1, 0x80, 'Conflicting Attributes', 'NVMQ_CONFLICTING_ATTRIBUTES');
add(1, 0x81, 'Invalid Protection Information', 'NVMQ_INVALID_PROTECTION_INFO');
add(1, 0x82, 'Attempted Write to Read Only Range', 'NVMQ_WRITE_TO_READ_ONLY_RANGE');
add(1, 0x80, 'Incompatible Format', 'NVMQ_INCOMPATIBLE_FORMAT', 'fabrics');
add(1, 0x81, 'Controller Busy', 'NVMQ_CONTROLLER_BUSY', 'fabrics');
add(1, 0x82, 'Connect Invalid Parameters', 'NVMQ_CONNECT_INVALID_PARAMETERS', 'fabrics');
add(1, 0x83, 'Connect Restart Discovery', 'NVMQ_CONNECT_RESTART_DISCOVERY', 'fabrics');
add(1, 0x84, 'Connect Invalid Host', 'NVMQ_CONNECT_INVALID_HOST', 'fabrics');
add(1, 0x85, 'Invalid Queue Type', 'NVMQ_INVALID_QUEUE_TYPE', 'fabrics');
add(1, 0x90, 'Discover Restart', 'NVMQ_DISCOVER_RESTART', 'fabrics');
add(1, 0x91, 'Authentication Required', 'NVMQ_AUTHENTICATION_REQUIRED', 'fabrics');
add(3, 0x00, 'Internal Path Error', 'NVMQ_INTERNAL_PATH_ERROR');
add(3, 0x60, 'Controller Pathing Error', 'NVMQ_CONTROLLER_PATHING_ERROR');
add(3, 0x70, 'Host Pathing Error', 'NVMQ_HOST_PATHING_ERROR');
add(3, 0x71, 'Command Aborted By Host', 'NVMQ_ABORTED_BY_HOST');
add(2, 0x80, 'Write Fault', 'NVMQ_WRITE_FAULT');
add(2, 0x81, 'Unrecovered Read Error', 'NVMQ_UNRECOVERED_READ_ERROR');
add(2, 0x82, 'End-to-end Guard Check Error', 'NVMQ_GUARD_CHECK_ERROR');
add(2, 0x83, 'End-to-end Application Tag Check Error', 'NVMQ_APP_TAG_CHECK_ERROR');
add(2, 0x84, 'End-to-end Reference Tag Check Error', 'NVMQ_REF_TAG_CHECK_ERROR');
add(2, 0x85, 'Compare Failure', 'NVMQ_COMPARE_FAILURE');
add(2, 0x86, 'Access Denied', 'NVMQ_ACCESS_DENIED');
add(2, 0x87, 'Deallocated or Unwritten Logical Block', 'NVMQ_DEALLOCATED_OR_UNWRITTEN');

const byKey = new Map<number, StatusInfo>(table.filter((s) => s.context === 'nvm').map((s) => [(s.sct << 8) | s.sc, s]));
const fabricsByKey = new Map<number, StatusInfo>(table.filter((s) => s.context === 'fabrics').map((s) => [(s.sct << 8) | s.sc, s]));

const SCT_NAMES = ['Generic Command Status', 'Command Specific Status', 'Media and Data Integrity Errors', 'Path Related Status', 'Reserved', 'Reserved', 'Reserved', 'Vendor Specific'];

export interface StatusDescription {
  sct: number;
  sc: number;
  dnr: boolean;
  more: boolean;
  name: string;
  code: string;
  sctName: string;
}

/** `context` 'fabrics': the status of a Fabrics command (Connect, Property Get / Set...), whose SCT 1 values differ. */
export function describeStatus(status: number, context: 'nvm' | 'fabrics' = 'nvm'): StatusDescription {
  const sct = statusSct(status);
  const sc = statusSc(status);
  const key = (sct << 8) | sc;
  const info = (context === 'fabrics' ? fabricsByKey.get(key) : undefined) ?? byKey.get(key);
  return {
    sct,
    sc,
    dnr: statusDnr(status),
    more: statusMore(status),
    name: info?.name ?? 'Unknown status',
    code: info?.code ?? 'NVMQ_UNKNOWN_STATUS',
    sctName: SCT_NAMES[sct] ?? 'Reserved',
  };
}

/** "LBA Out of Range (SCT 0, SC 0x80), DNR" */
export function formatStatus(status: number, context: 'nvm' | 'fabrics' = 'nvm'): string {
  const d = describeStatus(status, context);
  return `${d.name} (SCT ${d.sct}, SC 0x${d.sc.toString(16).padStart(2, '0')})${d.dnr ? ', DNR' : ''}${d.more ? ', More' : ''}`;
}

/** Every named status, for tests and documentation. */
export function allStatuses(): readonly StatusInfo[] {
  return table;
}

export const SUCCESS = 0;
