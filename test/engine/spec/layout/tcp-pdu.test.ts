/**
 * Layout tests for the NVMe/TCP constants in src/engine/spec/tcp-pdu.ts: PDU
 * type codes, flag bits, fixed header lengths, digest sizes, ICReq / ICResp
 * encodings and fatal error status values.
 *
 * The expectations were written from the NVM Express TCP Transport
 * Specification 1.0 (the transport binding of NVMe-oF 1.1, TP 8000), in its
 * own notation. They are not derived from the source tables; the field
 * positions are in fields.test.ts, the sizes in sizes.test.ts.
 */
import { describe, it, expect } from 'vitest';
import * as spec from '../../../../src/engine/spec/index.js';

describe('NVMe/TCP PDU types ("PDU Types")', () => {
  it('type codes', () => {
    expect(spec.PduType).toEqual({
      IC_REQ: 0x00,
      IC_RESP: 0x01,
      H2C_TERM_REQ: 0x02,
      C2H_TERM_REQ: 0x03,
      CAPSULE_CMD: 0x04,
      CAPSULE_RESP: 0x05,
      H2C_DATA: 0x06,
      C2H_DATA: 0x07,
      R2T: 0x09,
    });
  });
  it('names, and host-to-controller types are even', () => {
    const names: Array<[number, string, 'h2c' | 'c2h']> = [
      [0x00, 'ICReq', 'h2c'],
      [0x01, 'ICResp', 'c2h'],
      [0x02, 'H2CTermReq', 'h2c'],
      [0x03, 'C2HTermReq', 'c2h'],
      [0x04, 'CapsuleCmd', 'h2c'],
      [0x05, 'CapsuleResp', 'c2h'],
      [0x06, 'H2CData', 'h2c'],
      [0x07, 'C2HData', 'c2h'],
      [0x09, 'R2T', 'c2h'],
    ];
    for (const [code, name, dir] of names) {
      expect(spec.pduTypeName(code)).toBe(`${name} (0x0${code})`);
      expect((code & spec.PDU_TYPE_C2H_BIT) !== 0 ? 'c2h' : 'h2c').toBe(dir);
    }
    expect(spec.pduTypeName(0x08)).toBe('Unknown PDU type (0x08)');
    expect(spec.pduTypeName(0xff)).toBe('Unknown PDU type (0xff)');
  });
  it('fixed HLEN of each type', () => {
    expect(spec.PDU_HLEN).toEqual({ 0x00: 128, 0x01: 128, 0x02: 24, 0x03: 24, 0x04: 72, 0x05: 24, 0x06: 24, 0x07: 24, 0x09: 24 });
  });
});

describe('NVMe/TCP common header and digests', () => {
  it('CH.FLAGS bits: HDGSTF bit 0, DDGSTF bit 1, LAST_PDU bit 2, SUCCESS bit 3', () => {
    expect(spec.PduFlag).toEqual({ HDGSTF: 0b0001, DDGSTF: 0b0010, LAST_PDU: 0b0100, SUCCESS: 0b1000 });
  });
  it('header and data digests are 4 bytes (CRC32C)', () => {
    expect(spec.HDGST_SIZE).toBe(4);
    expect(spec.DDGST_SIZE).toBe(4);
  });
});

describe('NVMe/TCP connection initialization (ICReq / ICResp)', () => {
  it('PFV 0, PDA up to 31 in dwords 0s based, MAXH2CDATA at least 4096', () => {
    expect(spec.TCP_PFV_1_0).toBe(0);
    expect(spec.MAX_PDA).toBe(31);
    expect(spec.pdaBytes(0)).toBe(4);
    expect(spec.pdaBytes(1)).toBe(8);
    expect(spec.pdaBytes(31)).toBe(128);
    expect(spec.MIN_MAXH2CDATA).toBe(4096);
    expect(spec.MAXH2CDATA_MULTIPLE).toBe(4);
  });
  it('PLEN is 32 bits', () => {
    expect(spec.MAX_PLEN).toBe(2 ** 32 - 1);
  });
});

describe('NVMe/TCP termination requests', () => {
  it('fatal error status values', () => {
    expect(spec.Fes).toEqual({
      INVALID_HEADER_FIELD: 0x01,
      PDU_SEQUENCE_ERROR: 0x02,
      HEADER_DIGEST_ERROR: 0x03,
      DATA_TRANSFER_OUT_OF_RANGE: 0x04,
      DATA_TRANSFER_LIMIT_EXCEEDED: 0x05,
      UNSUPPORTED_PARAMETER: 0x06,
    });
    expect(spec.fesName(0x03)).toBe('Header Digest Error (0x03)');
    expect(spec.fesName(0x06)).toBe('Unsupported Parameter (0x06)');
    expect(spec.fesName(0x07)).toBe('Unknown fatal error status (0x07)');
  });
  it('error data is at most 128 bytes, PLEN at most 152', () => {
    expect(spec.TERM_REQ_MAX_ERROR_DATA).toBe(128);
    expect(spec.TERM_REQ_MAX_PLEN).toBe(152);
  });
});
