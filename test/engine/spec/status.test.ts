/**
 * Status field helpers, status names and opcode names.
 *
 * The status field without its phase tag (NVMe 1.4, 4.6.1, Figure 125) is:
 *   bit 14 DNR | bit 13 M | bits 12:11 CRD | bits 10:8 SCT | bits 7:0 SC
 */
import { describe, it, expect } from 'vitest';
import {
  AdminOpcode,
  CommandSpecificStatus,
  DNR,
  FabricsStatus,
  GenericStatus,
  MORE,
  MediaStatus,
  PathStatus,
  NvmOpcode,
  SUCCESS,
  Sct,
  allStatuses,
  describeStatus,
  formatStatus,
  makeStatus,
  opcodeName,
  statusCode,
  statusDnr,
  statusMore,
  statusSc,
  statusSct,
} from '../../../src/engine/spec/index.js';

describe('status field bits', () => {
  it('DNR is bit 14 and More is bit 13 of the phase-less status', () => {
    expect(DNR).toBe(0x4000);
    expect(MORE).toBe(0x2000);
  });

  it('makeStatus puts SCT in bits 10:8 and SC in bits 7:0', () => {
    expect(makeStatus(0, 0)).toBe(0);
    expect(makeStatus(0, 0x80)).toBe(0x080);
    expect(makeStatus(1, 0x02)).toBe(0x102);
    expect(makeStatus(2, 0x81)).toBe(0x281);
    expect(makeStatus(7, 0xff)).toBe(0x7ff);
    expect(SUCCESS).toBe(makeStatus(Sct.GENERIC, GenericStatus.SUCCESS));
  });

  it('makeStatus sets DNR only when asked', () => {
    expect(makeStatus(0, 0x80, true)).toBe(0x4080);
    expect(makeStatus(0, 0x80, false)).toBe(0x0080);
    expect(statusDnr(makeStatus(1, 1, true))).toBe(true);
    expect(statusDnr(makeStatus(1, 1))).toBe(false);
  });

  it('makeStatus masks out-of-range SCT and SC instead of spilling into other fields', () => {
    const s = makeStatus(0xf, 0x1ff);
    expect(s).toBe(0x7ff);
    expect(statusDnr(s)).toBe(false);
    expect(statusMore(s)).toBe(false);
  });

  it('statusSct / statusSc / statusDnr / statusMore take each field apart', () => {
    const s = DNR | MORE | (0b11 << 11) | (2 << 8) | 0x85;
    expect(statusSct(s)).toBe(2);
    expect(statusSc(s)).toBe(0x85);
    expect(statusDnr(s)).toBe(true);
    expect(statusMore(s)).toBe(true);
    expect(statusDnr(s & ~DNR)).toBe(false);
    expect(statusMore(s & ~MORE)).toBe(false);
    expect(statusSct(s & ~DNR & ~MORE)).toBe(2);
  });

  it('statusCode drops DNR, More and CRD but keeps SCT and SC', () => {
    const base = makeStatus(1, 0x0c);
    expect(statusCode(base | DNR | MORE | (0b11 << 11))).toBe(base);
    expect(statusCode(base | (0b01 << 11))).toBe(base);
    expect(statusCode(makeStatus(7, 0xff, true))).toBe(0x7ff);
  });

  it('status type values (Figure 125: SCT)', () => {
    expect(Sct).toEqual({ GENERIC: 0, COMMAND_SPECIFIC: 1, MEDIA_DATA_INTEGRITY: 2, PATH: 3, VENDOR: 7 });
  });
});

describe('status code values match NVMe 1.4 (Figures 126, 127, 128)', () => {
  it('generic command status', () => {
    expect(GenericStatus.SUCCESS).toBe(0x00);
    expect(GenericStatus.INVALID_OPCODE).toBe(0x01);
    expect(GenericStatus.INVALID_FIELD).toBe(0x02);
    expect(GenericStatus.CID_CONFLICT).toBe(0x03);
    expect(GenericStatus.DATA_TRANSFER_ERROR).toBe(0x04);
    expect(GenericStatus.INTERNAL_ERROR).toBe(0x06);
    expect(GenericStatus.ABORT_REQUESTED).toBe(0x07);
    expect(GenericStatus.ABORTED_SQ_DELETION).toBe(0x08);
    expect(GenericStatus.INVALID_NAMESPACE).toBe(0x0b);
    expect(GenericStatus.COMMAND_SEQUENCE_ERROR).toBe(0x0c);
    expect(GenericStatus.PRP_OFFSET_INVALID).toBe(0x13);
    expect(GenericStatus.HOST_ID_INCONSISTENT).toBe(0x18);
    expect(GenericStatus.NAMESPACE_WRITE_PROTECTED).toBe(0x20);
    expect(GenericStatus.TRANSIENT_TRANSPORT_ERROR).toBe(0x22);
    expect(GenericStatus.LBA_OUT_OF_RANGE).toBe(0x80);
    expect(GenericStatus.CAPACITY_EXCEEDED).toBe(0x81);
    expect(GenericStatus.NAMESPACE_NOT_READY).toBe(0x82);
    expect(GenericStatus.RESERVATION_CONFLICT).toBe(0x83);
    expect(GenericStatus.FORMAT_IN_PROGRESS).toBe(0x84);
  });
  it('command specific status', () => {
    expect(CommandSpecificStatus.COMPLETION_QUEUE_INVALID).toBe(0x00);
    expect(CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER).toBe(0x01);
    expect(CommandSpecificStatus.INVALID_QUEUE_SIZE).toBe(0x02);
    expect(CommandSpecificStatus.ABORT_LIMIT_EXCEEDED).toBe(0x03);
    expect(CommandSpecificStatus.ASYNC_EVENT_LIMIT_EXCEEDED).toBe(0x05);
    expect(CommandSpecificStatus.INVALID_INTERRUPT_VECTOR).toBe(0x08);
    expect(CommandSpecificStatus.INVALID_LOG_PAGE).toBe(0x09);
    expect(CommandSpecificStatus.INVALID_FORMAT).toBe(0x0a);
    expect(CommandSpecificStatus.INVALID_QUEUE_DELETION).toBe(0x0c);
    expect(CommandSpecificStatus.FEATURE_NOT_SAVEABLE).toBe(0x0d);
    expect(CommandSpecificStatus.FEATURE_NOT_CHANGEABLE).toBe(0x0e);
    expect(CommandSpecificStatus.FEATURE_NOT_NAMESPACE_SPECIFIC).toBe(0x0f);
    expect(CommandSpecificStatus.CONFLICTING_ATTRIBUTES).toBe(0x80);
    expect(CommandSpecificStatus.INVALID_PROTECTION_INFO).toBe(0x81);
    expect(CommandSpecificStatus.WRITE_TO_READ_ONLY_RANGE).toBe(0x82);
  });
  it('media and data integrity errors', () => {
    expect(MediaStatus).toEqual({
      WRITE_FAULT: 0x80,
      UNRECOVERED_READ_ERROR: 0x81,
      GUARD_CHECK_ERROR: 0x82,
      APP_TAG_CHECK_ERROR: 0x83,
      REF_TAG_CHECK_ERROR: 0x84,
      COMPARE_FAILURE: 0x85,
      ACCESS_DENIED: 0x86,
      DEALLOCATED_OR_UNWRITTEN: 0x87,
    });
  });
});

describe('describeStatus', () => {
  it('names a generic status', () => {
    expect(describeStatus(makeStatus(0, 0x80, true))).toEqual({
      sct: 0,
      sc: 0x80,
      dnr: true,
      more: false,
      name: 'LBA Out of Range',
      code: 'NVMQ_LBA_OUT_OF_RANGE',
      sctName: 'Generic Command Status',
    });
  });

  it('names a command specific status', () => {
    const d = describeStatus(makeStatus(Sct.COMMAND_SPECIFIC, CommandSpecificStatus.INVALID_QUEUE_IDENTIFIER));
    expect(d.name).toBe('Invalid Queue Identifier');
    expect(d.code).toBe('NVMQ_INVALID_QUEUE_IDENTIFIER');
    expect(d.sctName).toBe('Command Specific Status');
    expect(d.dnr).toBe(false);
  });

  it('names a media error', () => {
    const d = describeStatus(makeStatus(Sct.MEDIA_DATA_INTEGRITY, MediaStatus.UNRECOVERED_READ_ERROR) | MORE);
    expect(d.name).toBe('Unrecovered Read Error');
    expect(d.code).toBe('NVMQ_UNRECOVERED_READ_ERROR');
    expect(d.sctName).toBe('Media and Data Integrity Errors');
    expect(d.more).toBe(true);
  });

  it('tells the same SC apart under different SCTs', () => {
    // SC 80h means LBA Out of Range (generic), Conflicting Attributes (command specific), Write Fault (media).
    expect(describeStatus(makeStatus(0, 0x80)).code).toBe('NVMQ_LBA_OUT_OF_RANGE');
    expect(describeStatus(makeStatus(1, 0x80)).code).toBe('NVMQ_CONFLICTING_ATTRIBUTES');
    expect(describeStatus(makeStatus(2, 0x80)).code).toBe('NVMQ_WRITE_FAULT');
  });

  it('ignores CRD, DNR and More when looking the status up', () => {
    const d = describeStatus(makeStatus(0, 0x02) | DNR | MORE | (0b10 << 11));
    expect(d.code).toBe('NVMQ_INVALID_FIELD');
    expect(d.dnr).toBe(true);
    expect(d.more).toBe(true);
  });

  it('gives NVMQ_UNKNOWN_STATUS for statuses it does not know', () => {
    for (const s of [makeStatus(0, 0x17), makeStatus(1, 0x04), makeStatus(2, 0x00), makeStatus(3, 0x42), makeStatus(7, 0xc0), makeStatus(5, 0x01)]) {
      const d = describeStatus(s);
      expect(d.code).toBe('NVMQ_UNKNOWN_STATUS');
      expect(d.name).toMatch(/^Unknown status/);
      expect(d.sct).toBe(statusSct(s));
      expect(d.sc).toBe(statusSc(s));
    }
    // The codes appear once, from formatStatus, not repeated inside the name.
    expect(formatStatus(makeStatus(3, 0x42))).toBe('Unknown status (SCT 3, SC 0x42)');
  });

  it('names every status code type', () => {
    expect(describeStatus(makeStatus(3, 0x00)).sctName).toBe('Path Related Status');
    expect(describeStatus(makeStatus(4, 0x00)).sctName).toBe('Reserved');
    expect(describeStatus(makeStatus(6, 0x00)).sctName).toBe('Reserved');
    expect(describeStatus(makeStatus(7, 0x00)).sctName).toBe('Vendor Specific');
  });
});

describe('Fabrics command statuses (NVMe over Fabrics 1.1)', () => {
  it('command specific values', () => {
    expect(FabricsStatus).toEqual({
      INCOMPATIBLE_FORMAT: 0x80,
      CONTROLLER_BUSY: 0x81,
      CONNECT_INVALID_PARAMETERS: 0x82,
      CONNECT_RESTART_DISCOVERY: 0x83,
      CONNECT_INVALID_HOST: 0x84,
      INVALID_QUEUE_TYPE: 0x85,
      DISCOVER_RESTART: 0x90,
      AUTHENTICATION_REQUIRED: 0x91,
    });
  });
  it('the same SCT 1 value names a Fabrics status only in the Fabrics context', () => {
    expect(describeStatus(makeStatus(1, 0x82)).code).toBe('NVMQ_WRITE_TO_READ_ONLY_RANGE');
    expect(describeStatus(makeStatus(1, 0x82, true), 'fabrics').code).toBe('NVMQ_CONNECT_INVALID_PARAMETERS');
    expect(formatStatus(makeStatus(1, 0x84, true), 'fabrics')).toBe('Connect Invalid Host (SCT 1, SC 0x84), DNR');
    // A generic status reads the same in both.
    expect(describeStatus(makeStatus(0, 0x0c), 'fabrics').code).toBe('NVMQ_COMMAND_SEQUENCE_ERROR');
    // A Fabrics-only value is unknown outside the Fabrics context.
    expect(describeStatus(makeStatus(1, 0x90)).code).toBe('NVMQ_UNKNOWN_STATUS');
  });
});

describe('formatStatus', () => {
  it('LBA Out of Range with DNR', () => {
    expect(formatStatus(makeStatus(0, 0x80, true))).toBe('LBA Out of Range (SCT 0, SC 0x80), DNR');
  });
  it('success without flags', () => {
    expect(formatStatus(SUCCESS)).toBe('Successful Completion (SCT 0, SC 0x00)');
  });
  it('pads a one-digit SC to two hex digits', () => {
    expect(formatStatus(makeStatus(1, 0x02))).toBe('Invalid Queue Size (SCT 1, SC 0x02)');
  });
  it('adds More after DNR', () => {
    expect(formatStatus(makeStatus(2, 0x85, true) | MORE)).toBe('Compare Failure (SCT 2, SC 0x85), DNR, More');
    expect(formatStatus(makeStatus(2, 0x81) | MORE)).toBe('Unrecovered Read Error (SCT 2, SC 0x81), More');
  });
  it('formats an unknown status with its SCT and SC', () => {
    const text = formatStatus(makeStatus(3, 0x42, true));
    expect(text).toMatch(/^Unknown status/);
    expect(text).toContain('SCT 3, SC 0x42');
    expect(text).toMatch(/, DNR$/);
  });
});

describe('allStatuses', () => {
  const all = allStatuses();

  it('is not empty and includes success', () => {
    expect(all.length).toBeGreaterThan(50);
    expect(all.some((s) => s.sct === 0 && s.sc === 0 && s.code === 'NVMQ_SUCCESS')).toBe(true);
  });

  it('every (SCT, SC) pair is unique within its context (NVM commands, Fabrics commands)', () => {
    const keys = all.map((s) => `${s.context}/${s.sct}/${s.sc}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('every code is unique and starts with NVMQ_', () => {
    const codes = all.map((s) => s.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^NVMQ_[A-Z0-9_]+$/);
    expect(codes).not.toContain('NVMQ_UNKNOWN_STATUS');
  });

  it('every name is unique within its status code type and describeStatus agrees', () => {
    for (const s of all) {
      expect(s.sct).toBeGreaterThanOrEqual(0);
      expect(s.sct).toBeLessThanOrEqual(7);
      expect(s.sc).toBeGreaterThanOrEqual(0);
      expect(s.sc).toBeLessThanOrEqual(0xff);
      const d = describeStatus(makeStatus(s.sct, s.sc), s.context);
      expect(d.code).toBe(s.code);
      expect(d.name).toBe(s.name);
    }
    for (const sct of [0, 1, 2, 3]) {
      const names = all.filter((s) => s.sct === sct).map((s) => s.name);
      expect(new Set(names).size).toBe(names.length);
    }
  });

  it('holds exactly the named constants, each with code NVMQ_<constant name>', () => {
    const groups: Array<[number, Record<string, number>, 'nvm' | 'fabrics']> = [
      [Sct.GENERIC, GenericStatus, 'nvm'],
      [Sct.COMMAND_SPECIFIC, CommandSpecificStatus, 'nvm'],
      [Sct.MEDIA_DATA_INTEGRITY, MediaStatus, 'nvm'],
      [Sct.PATH, PathStatus, 'nvm'],
      [Sct.COMMAND_SPECIFIC, FabricsStatus, 'fabrics'],
    ];
    let n = 0;
    for (const [sct, group, context] of groups) {
      for (const [key, sc] of Object.entries(group)) {
        n++;
        expect(describeStatus(makeStatus(sct, sc), context).code, `${key}`).toBe(`NVMQ_${key}`);
      }
    }
    expect(all.length).toBe(n);
  });
});

describe('opcodes (Figure 139 admin, Figure 346 NVM)', () => {
  it('admin opcode values', () => {
    expect(AdminOpcode.DELETE_IO_SQ).toBe(0x00);
    expect(AdminOpcode.CREATE_IO_SQ).toBe(0x01);
    expect(AdminOpcode.GET_LOG_PAGE).toBe(0x02);
    expect(AdminOpcode.DELETE_IO_CQ).toBe(0x04);
    expect(AdminOpcode.CREATE_IO_CQ).toBe(0x05);
    expect(AdminOpcode.IDENTIFY).toBe(0x06);
    expect(AdminOpcode.ABORT).toBe(0x08);
    expect(AdminOpcode.SET_FEATURES).toBe(0x09);
    expect(AdminOpcode.GET_FEATURES).toBe(0x0a);
    expect(AdminOpcode.ASYNC_EVENT_REQUEST).toBe(0x0c);
    expect(AdminOpcode.KEEP_ALIVE).toBe(0x18);
    expect(AdminOpcode.DOORBELL_BUFFER_CONFIG).toBe(0x7c);
    expect(AdminOpcode.FORMAT_NVM).toBe(0x80);
    expect(AdminOpcode.SANITIZE).toBe(0x84);
  });
  it('NVM opcode values', () => {
    expect(NvmOpcode).toEqual({
      FLUSH: 0x00,
      WRITE: 0x01,
      READ: 0x02,
      WRITE_UNCORRECTABLE: 0x04,
      COMPARE: 0x05,
      WRITE_ZEROES: 0x08,
      DATASET_MANAGEMENT: 0x09,
      VERIFY: 0x0c,
    });
  });

  it('opcodeName uses the admin table for admin commands', () => {
    expect(opcodeName(0x06, true)).toBe('Identify (0x06)');
    expect(opcodeName(0x02, true)).toBe('Get Log Page (0x02)');
    expect(opcodeName(0x00, true)).toBe('Delete I/O Submission Queue (0x00)');
    expect(opcodeName(0x05, true)).toBe('Create I/O Completion Queue (0x05)');
    expect(opcodeName(0x80, true)).toBe('Format NVM (0x80)');
  });

  it('opcodeName uses the NVM table for I/O commands', () => {
    expect(opcodeName(0x02, false)).toBe('Read (0x02)');
    expect(opcodeName(0x01, false)).toBe('Write (0x01)');
    expect(opcodeName(0x00, false)).toBe('Flush (0x00)');
    expect(opcodeName(0x09, false)).toBe('Dataset Management (0x09)');
    expect(opcodeName(0x0c, false)).toBe('Verify (0x0c)');
  });

  it('opcodeName names unknown opcodes by table', () => {
    expect(opcodeName(0xff, true)).toBe('Unknown admin command (0xff)');
    expect(opcodeName(0x03, true)).toBe('Unknown admin command (0x03)');
    expect(opcodeName(0x7f, false)).toBe('Unknown I/O command (0x7f)');
    // Identify is admin only.
    expect(opcodeName(0x06, false)).toBe('Unknown I/O command (0x06)');
  });

  it('every named opcode has a name that is not "Unknown"', () => {
    for (const op of Object.values(AdminOpcode)) expect(opcodeName(op, true)).not.toMatch(/^Unknown/);
    for (const op of Object.values(NvmOpcode)) expect(opcodeName(op, false)).not.toMatch(/^Unknown/);
  });
});
