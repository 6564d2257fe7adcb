/**
 * Layout tests for src/engine/spec: doorbell offsets and the constants the spec
 * defines (register encodings, entry sizes, identifiers).
 *
 * The expectations were written from the NVMe Base Specification 1.4
 * (section numbers and figure titles are given next to each group), in the
 * spec's own notation: byte ranges "hi:lo" and bit ranges "hi:lo" inside a
 * named register / dword. They are not derived from the source tables.
 */
import { describe, it, expect } from 'vitest';
import * as spec from '../../../../src/engine/spec/index.js';
import { Regs, IdNs, sqTailDoorbell, cqHeadDoorbell, pageSizeOf } from '../../../../src/engine/spec/index.js';

describe('doorbells (3.1.24, 3.1.25)', () => {
  // SQyTDBL at 1000h + (2y * (4 << CAP.DSTRD)); CQyHDBL at 1000h + ((2y + 1) * (4 << CAP.DSTRD)).
  const cases: Array<[dstrd: number, qid: number, sqTail: number, cqHead: number]> = [
    [0, 0, 0x1000, 0x1004],
    [0, 1, 0x1008, 0x100c],
    [0, 2, 0x1010, 0x1014],
    [0, 7, 0x1038, 0x103c],
    [0, 65535, 0x1000 + 65535 * 8, 0x1000 + 65535 * 8 + 4],
    [2, 0, 0x1000, 0x1010],
    [2, 1, 0x1020, 0x1030],
    [2, 2, 0x1040, 0x1050],
    [2, 7, 0x10e0, 0x10f0],
  ];
  for (const [dstrd, qid, sq, cq] of cases) {
    it(`DSTRD ${dstrd}, queue ${qid}: SQ tail 0x${sq.toString(16)}, CQ head 0x${cq.toString(16)}`, () => {
      expect(sqTailDoorbell(qid, dstrd)).toBe(sq);
      expect(cqHeadDoorbell(qid, dstrd)).toBe(cq);
    });
  }
  it('the first doorbell follows the register file', () => {
    expect(spec.DOORBELL_BASE).toBe(0x1000);
    expect(sqTailDoorbell(0, 0)).toBe(Regs.$size);
  });
});

describe('register constants', () => {
  it('CC.SHN and CSTS.SHST encodings (3.1.5, 3.1.6)', () => {
    expect(spec.ShutdownNotification).toEqual({ NONE: 0b00, NORMAL: 0b01, ABRUPT: 0b10 });
    expect(spec.ShutdownStatus).toEqual({ NORMAL: 0b00, PROCESSING: 0b01, COMPLETE: 0b10 });
  });
  it('NSSR reset value is "NVMe" (3.1.7)', () => {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, spec.NSSR_RESET_VALUE, false);
    expect(String.fromCharCode(...new Uint8Array(dv.buffer))).toBe('NVMe');
    expect(spec.NSSR_RESET_VALUE).toBe(0x4e564d65);
  });
  it('NVM command set: CC.CSS 000b, CAP.CSS bit 0', () => {
    expect(spec.CC_CSS_NVM).toBe(0);
    expect(spec.CAP_CSS_NVM).toBe(1 << 0);
  });
  it('memory page size is 2 ^ (12 + MPS)', () => {
    expect(pageSizeOf(0)).toBe(4096);
    expect(pageSizeOf(1)).toBe(8192);
    expect(pageSizeOf(4)).toBe(65536);
    expect(pageSizeOf(15)).toBe(2 ** 27);
  });
  it('CAP.TO unit is 500 ms', () => {
    expect(spec.CAP_TO_UNIT_MS).toBe(500);
  });
});

describe('other spec constants', () => {
  it('queue entry sizes (4.2, 4.6) and their log2 for CC.IOSQES / IOCQES', () => {
    expect(spec.SQE_SIZE).toBe(64);
    expect(spec.CQE_SIZE).toBe(16);
    expect(2 ** spec.SQE_SIZE_LOG2).toBe(64);
    expect(2 ** spec.CQE_SIZE_LOG2).toBe(16);
  });
  it('identify (5.15)', () => {
    expect(spec.IDENTIFY_DATA_SIZE).toBe(4096);
    expect(spec.Cns).toEqual({ NAMESPACE: 0x00, CONTROLLER: 0x01, ACTIVE_NAMESPACE_LIST: 0x02, NS_DESCRIPTOR_LIST: 0x03 });
    // Namespace Identifier Types and lengths (5.15.2.3, Figure 250).
    expect(spec.Nidt).toEqual({ EUI64: 1, NGUID: 2, UUID: 3, CSI: 4 });
    expect(spec.NIDT_LENGTH).toEqual({ 1: 8, 2: 16, 3: 16, 4: 1 });
    expect(spec.NS_ID_DESCRIPTOR_HEADER_SIZE).toBe(4);
    expect(spec.KAS_UNIT_MS).toBe(100);
    expect(spec.LBAF_ENTRY_SIZE).toBe(4);
    expect(spec.MAX_LBA_FORMATS).toBe(16);
    // LBAF15 is the last format and ends at byte 191.
    expect(IdNs.LBAF0.offset + spec.MAX_LBA_FORMATS * spec.LBAF_ENTRY_SIZE - 1).toBe(191);
    expect(spec.ACTIVE_NS_LIST_ENTRIES * 4).toBe(4096);
    expect(spec.NSID_BROADCAST).toBe(0xffffffff);
  });
  it('feature identifiers (5.21.1, Figure 271)', () => {
    expect(spec.FeatureId).toEqual({
      ARBITRATION: 0x01,
      POWER_MANAGEMENT: 0x02,
      LBA_RANGE_TYPE: 0x03,
      TEMPERATURE_THRESHOLD: 0x04,
      ERROR_RECOVERY: 0x05,
      VOLATILE_WRITE_CACHE: 0x06,
      NUMBER_OF_QUEUES: 0x07,
      INTERRUPT_COALESCING: 0x08,
      INTERRUPT_VECTOR_CONFIG: 0x09,
      WRITE_ATOMICITY: 0x0a,
      ASYNC_EVENT_CONFIG: 0x0b,
      KEEP_ALIVE_TIMER: 0x0f,
      HOST_IDENTIFIER: 0x81,
    });
    expect(spec.HOST_ID_SIZE).toBe(16);
    expect(spec.featureName(0x07)).toBe('Number of Queues (0x07)');
    expect(spec.featureName(0xc0)).toBe('Unknown feature (0xc0)');
  });
  it('Get Features select values and capability bits (5.9)', () => {
    expect(spec.FeatureSelect).toEqual({ CURRENT: 0b000, DEFAULT: 0b001, SAVED: 0b010, SUPPORTED_CAPABILITIES: 0b011 });
    expect(spec.FeatureCapability).toEqual({ SAVEABLE: 1 << 0, NAMESPACE_SPECIFIC: 1 << 1, CHANGEABLE: 1 << 2 });
  });
  it('log page identifiers (5.14)', () => {
    expect(spec.LogPageId).toEqual({
      ERROR_INFORMATION: 0x01,
      SMART_HEALTH: 0x02,
      FIRMWARE_SLOT: 0x03,
      CHANGED_NAMESPACES: 0x04,
      COMMANDS_SUPPORTED_EFFECTS: 0x05,
    });
    expect(spec.ERROR_LOG_ENTRY_SIZE).toBe(64);
    expect(spec.SMART_LOG_SIZE).toBe(512);
    expect(spec.COMMANDS_EFFECTS_LOG_SIZE).toBe(4096);
  });
  it('commands supported and effects bits (5.14.1.5)', () => {
    expect(spec.CommandEffect).toEqual({ CSUPP: 1 << 0, LBCC: 1 << 1, NCC: 1 << 2, NIC: 1 << 3, CCC: 1 << 4 });
  });
  it('asynchronous event types and error information (5.2)', () => {
    expect(spec.AsyncEventType).toEqual({ ERROR: 0b000, SMART_HEALTH: 0b001, NOTICE: 0b010, IO_COMMAND_SET: 0b110, VENDOR: 0b111 });
    expect(spec.AsyncErrorInfo).toEqual({
      INVALID_DOORBELL_REGISTER: 0x00,
      INVALID_DOORBELL_VALUE: 0x01,
      DIAGNOSTIC_FAILURE: 0x02,
      PERSISTENT_INTERNAL_ERROR: 0x03,
      TRANSIENT_INTERNAL_ERROR: 0x04,
      FIRMWARE_IMAGE_LOAD_ERROR: 0x05,
    });
  });
  it('dataset management limits (6.7) and PRP entry size (4.3)', () => {
    expect(spec.DSM_RANGE_SIZE).toBe(16);
    expect(spec.DSM_MAX_RANGES).toBe(256);
    expect(spec.PRP_ENTRY_SIZE).toBe(8);
  });
});

describe('NVMe over Fabrics constants (NVMe over Fabrics 1.1, NVMe/TCP 1.0)', () => {
  it('Fabrics opcode and command types', () => {
    expect(spec.FABRICS_OPCODE).toBe(0x7f);
    expect(spec.FabricsType).toEqual({ PROPERTY_SET: 0x00, CONNECT: 0x01, PROPERTY_GET: 0x04, AUTHENTICATION_SEND: 0x05, AUTHENTICATION_RECEIVE: 0x06, DISCONNECT: 0x08 });
    expect(spec.fabricsCommandName(0x01)).toBe('Connect (FCTYPE 0x01)');
    expect(spec.fabricsCommandName(0x04)).toBe('Property Get (FCTYPE 0x04)');
    expect(spec.fabricsCommandName(0x02)).toBe('Unknown Fabrics command (FCTYPE 0x02)');
  });
  it('Connect: data size, record format, controller IDs, IATTR', () => {
    expect(spec.CONNECT_DATA_SIZE).toBe(1024);
    expect(spec.CONNECT_RECFMT).toBe(0);
    expect(spec.CNTLID_DYNAMIC).toBe(0xffff);
    expect(spec.CNTLID_STATIC_ANY).toBe(0xfffe);
    expect(spec.CNTLID_MIN).toBe(0x0001);
    expect(spec.CNTLID_MAX).toBe(0xffef);
    expect(spec.ConnectIattr).toEqual({ SQE: 0, DATA: 1 });
    // AUTHREQ (DW0 31:16): ATR is DW0 bit 17, ASCR bit 18.
    expect(spec.AuthReq.ATR << 16).toBe(1 << 17);
    expect(spec.AuthReq.ASCR << 16).toBe(1 << 18);
  });
  it('properties are the controller registers at their offsets', () => {
    expect(spec.Property).toEqual({
      CAP: { offset: 0x00, size: 8 },
      VS: { offset: 0x08, size: 4 },
      CC: { offset: 0x14, size: 4 },
      CSTS: { offset: 0x1c, size: 4 },
      NSSR: { offset: 0x20, size: 4 },
    });
    expect(spec.PropertySize).toEqual({ FOUR_BYTES: 0, EIGHT_BYTES: 1 });
  });
  it('SGL descriptor types, subtypes and the identifiers NVMe/TCP uses (4.4, Figures 115, 116)', () => {
    expect(spec.SGL_DESCRIPTOR_SIZE).toBe(16);
    expect(spec.SglType).toEqual({ DATA_BLOCK: 0, BIT_BUCKET: 1, SEGMENT: 2, LAST_SEGMENT: 3, KEYED_DATA_BLOCK: 4, TRANSPORT_DATA_BLOCK: 5 });
    expect(spec.SglSubtype).toEqual({ ADDRESS: 0, OFFSET: 1, TRANSPORT_SPECIFIC: 0xa });
    expect(spec.SGL_ID_IN_CAPSULE).toBe(0x01);
    expect(spec.SGL_ID_TRANSPORT).toBe(0x5a);
    expect(spec.SglSupport).toEqual({ SUPPORTED: 1, KEYED_DATA_BLOCK: 1 << 2, BIT_BUCKET: 1 << 16, OFFSET: 1 << 20, TRANSPORT_DATA_BLOCK: 1 << 21 });
  });
  it('controller types (Identify CNTRLTYPE)', () => {
    expect(spec.ControllerType).toEqual({ IO: 1, DISCOVERY: 2, ADMIN: 3 });
  });
  it('discovery (section 5): LID, NQN, sizes, field values', () => {
    expect(spec.DISCOVERY_LOG_PAGE_ID).toBe(0x70);
    expect(spec.DISCOVERY_NQN).toBe('nqn.2014-08.org.nvmexpress.discovery');
    expect(spec.NQN_FIELD_SIZE).toBe(256);
    expect(spec.NQN_MAX_LENGTH).toBe(223);
    expect(spec.DISCOVERY_LOG_HEADER_SIZE).toBe(1024);
    expect(spec.DISCOVERY_LOG_ENTRY_SIZE).toBe(1024);
    expect(spec.Trtype).toEqual({ RDMA: 1, FC: 2, TCP: 3, INTRA_HOST: 254 });
    expect(spec.Adrfam).toEqual({ IPV4: 1, IPV6: 2, IB: 3, FC: 4, INTRA_HOST: 254 });
    expect(spec.DiscoverySubtype).toEqual({ REFERRAL: 1, NVM: 2, CURRENT_DISCOVERY: 3 });
    expect(spec.Treq).toEqual({ SECURE_NOT_SPECIFIED: 0, SECURE_REQUIRED: 1, SECURE_NOT_REQUIRED: 2, SQFC_DISABLE_SUPPORTED: 4 });
    expect(spec.TcpSectype).toEqual({ NONE: 0, TLS12: 1, TLS13: 2 });
  });
});
