/**
 * Opcodes (NVMe 1.4 Figure 139 for admin, Figure 346 for the NVM command set)
 * and their names, so no log line or error shows a bare number.
 */

export const AdminOpcode = {
  DELETE_IO_SQ: 0x00,
  CREATE_IO_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_IO_CQ: 0x04,
  CREATE_IO_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT_REQUEST: 0x0c,
  NAMESPACE_MANAGEMENT: 0x0d,
  FIRMWARE_COMMIT: 0x10,
  FIRMWARE_IMAGE_DOWNLOAD: 0x11,
  DEVICE_SELF_TEST: 0x14,
  NAMESPACE_ATTACHMENT: 0x15,
  KEEP_ALIVE: 0x18,
  DIRECTIVE_SEND: 0x19,
  DIRECTIVE_RECEIVE: 0x1a,
  DOORBELL_BUFFER_CONFIG: 0x7c,
  FORMAT_NVM: 0x80,
  SECURITY_SEND: 0x81,
  SECURITY_RECEIVE: 0x82,
  SANITIZE: 0x84,
} as const;

export const NvmOpcode = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_UNCORRECTABLE: 0x04,
  COMPARE: 0x05,
  WRITE_ZEROES: 0x08,
  DATASET_MANAGEMENT: 0x09,
  VERIFY: 0x0c,
} as const;

const adminNames = new Map<number, string>([
  [0x00, 'Delete I/O Submission Queue'],
  [0x01, 'Create I/O Submission Queue'],
  [0x02, 'Get Log Page'],
  [0x04, 'Delete I/O Completion Queue'],
  [0x05, 'Create I/O Completion Queue'],
  [0x06, 'Identify'],
  [0x08, 'Abort'],
  [0x09, 'Set Features'],
  [0x0a, 'Get Features'],
  [0x0c, 'Asynchronous Event Request'],
  [0x0d, 'Namespace Management'],
  [0x10, 'Firmware Commit'],
  [0x11, 'Firmware Image Download'],
  [0x14, 'Device Self-test'],
  [0x15, 'Namespace Attachment'],
  [0x18, 'Keep Alive'],
  [0x19, 'Directive Send'],
  [0x1a, 'Directive Receive'],
  [0x7c, 'Doorbell Buffer Config'],
  [0x80, 'Format NVM'],
  [0x81, 'Security Send'],
  [0x82, 'Security Receive'],
  [0x84, 'Sanitize'],
]);

const nvmNames = new Map<number, string>([
  [0x00, 'Flush'],
  [0x01, 'Write'],
  [0x02, 'Read'],
  [0x04, 'Write Uncorrectable'],
  [0x05, 'Compare'],
  [0x08, 'Write Zeroes'],
  [0x09, 'Dataset Management'],
  [0x0c, 'Verify'],
]);

function hex2(n: number): string {
  return '0x' + n.toString(16).padStart(2, '0');
}

/** "Write (0x01)"; the admin table when qid is 0, the NVM table otherwise. */
export function opcodeName(opcode: number, admin: boolean): string {
  const name = (admin ? adminNames : nvmNames).get(opcode) ?? (admin ? 'Unknown admin command' : 'Unknown I/O command');
  return `${name} (${hex2(opcode)})`;
}
