/**
 * Every status the controller completes commands with, and the one map from
 * a backend's failure to a status. Built from the spec's tables
 * (spec/status.ts); DNR is set where retrying the same command cannot help.
 */
import { CommandSpecificStatus, GenericStatus, MediaStatus, Sct, makeStatus } from '../spec/status.js';
import type { BackendError } from './backends/backend.js';

/** A handler's answer when the command completes later (a held AER, a Delete I/O SQ draining). */
export const HELD = -1;

// Generic Command Status (NVMe 1.4, 4.6.1.2.1).
export const INVALID_OPCODE = makeStatus(Sct.GENERIC, GenericStatus.INVALID_OPCODE, true);
export const INVALID_FIELD = makeStatus(Sct.GENERIC, GenericStatus.INVALID_FIELD, true);
export const COMMAND_SEQUENCE_ERROR = makeStatus(Sct.GENERIC, GenericStatus.COMMAND_SEQUENCE_ERROR, true);
export const DATA_TRANSFER_ERROR = makeStatus(Sct.GENERIC, GenericStatus.DATA_TRANSFER_ERROR, true);
export const INTERNAL_ERROR = makeStatus(Sct.GENERIC, GenericStatus.INTERNAL_ERROR);
export const ABORT_REQUESTED = makeStatus(Sct.GENERIC, GenericStatus.ABORT_REQUESTED);
export const COMMAND_INTERRUPTED = makeStatus(Sct.GENERIC, GenericStatus.COMMAND_INTERRUPTED);
export const ABORTED_SQ_DELETION = makeStatus(Sct.GENERIC, GenericStatus.ABORTED_SQ_DELETION);
export const INVALID_NAMESPACE = makeStatus(Sct.GENERIC, GenericStatus.INVALID_NAMESPACE, true);
export const PRP_OFFSET_INVALID = makeStatus(Sct.GENERIC, GenericStatus.PRP_OFFSET_INVALID, true);
export const LBA_OUT_OF_RANGE = makeStatus(Sct.GENERIC, GenericStatus.LBA_OUT_OF_RANGE, true);
export const CAPACITY_EXCEEDED = makeStatus(Sct.GENERIC, GenericStatus.CAPACITY_EXCEEDED, true);
export const WRITE_PROTECTED = makeStatus(Sct.GENERIC, GenericStatus.NAMESPACE_WRITE_PROTECTED, true);

// Command Specific Status (4.6.1.2.2): every one of them is final for the command.
const commandSpecific = (sc: number): number => makeStatus(Sct.COMMAND_SPECIFIC, sc, true);
export const INVALID_QUEUE_IDENTIFIER = commandSpecific(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER);
export const INVALID_QUEUE_SIZE = commandSpecific(CommandSpecificStatus.INVALID_QUEUE_SIZE);
export const COMPLETION_QUEUE_INVALID = commandSpecific(CommandSpecificStatus.COMPLETION_QUEUE_INVALID);
export const INVALID_INTERRUPT_VECTOR = commandSpecific(CommandSpecificStatus.INVALID_INTERRUPT_VECTOR);
export const INVALID_QUEUE_DELETION = commandSpecific(CommandSpecificStatus.INVALID_QUEUE_DELETION);
export const INVALID_LOG_PAGE = commandSpecific(CommandSpecificStatus.INVALID_LOG_PAGE);
export const AER_LIMIT_EXCEEDED = commandSpecific(CommandSpecificStatus.ASYNC_EVENT_LIMIT_EXCEEDED);
export const FEATURE_NOT_SAVEABLE = commandSpecific(CommandSpecificStatus.FEATURE_NOT_SAVEABLE);

// Media and Data Integrity Errors (4.6.1.2.3).
export const WRITE_FAULT = makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.WRITE_FAULT);
export const UNRECOVERED_READ_ERROR = makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.UNRECOVERED_READ_ERROR);

/** NVMe status for a failed backend operation: read → Unrecovered Read Error, write → Write Fault, no space → Capacity Exceeded. */
export function backendStatus(err: BackendError): number {
  switch (err.kind) {
    case 'read':
      return UNRECOVERED_READ_ERROR;
    case 'write':
      return WRITE_FAULT;
    case 'no-space':
      return CAPACITY_EXCEEDED;
    case 'aborted':
      return ABORTED_SQ_DELETION;
    default:
      return INTERNAL_ERROR;
  }
}
