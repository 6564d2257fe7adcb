/**
 * The fields of received NVMe/TCP PDU headers, decoded from a `Pdu` the
 * reader returned (src/engine/target/pdu.ts). The same shapes are what the
 * encoders (pdu-encode.ts) take, so a field read here is one written there.
 */
import { readField } from '../spec/layout.js';
import { C2HDataPdu, CapsuleCmdPdu, CapsuleRespPdu, H2CDataPdu, IcReqPdu, IcRespPdu, PduFlag, PduType, R2TPdu, TermReqPdu } from '../spec/tcp-pdu.js';
import type { Pdu } from './pdu.js';

/** ICReq fields. */
export interface IcReqFields {
  pfv: number;
  hpda: number;
  hdgst: boolean;
  ddgst: boolean;
  /** 0's based. */
  maxr2t: number;
}

export interface IcRespFields {
  pfv: number;
  cpda: number;
  hdgst: boolean;
  ddgst: boolean;
  maxh2cdata: number;
}

export interface TermReqFields {
  fes: number;
  fei: number;
  /** The header of the PDU in error, as the peer sent it (a view, like `Pdu.data`). */
  errorData: Uint8Array;
}

/** H2CData / C2HData fields; `ttag` is 0 for C2HData, `success` false for H2CData. */
export interface DataPduFields {
  cccid: number;
  ttag: number;
  datao: number;
  datal: number;
  last: boolean;
  success: boolean;
}

export interface R2TFields {
  cccid: number;
  ttag: number;
  r2to: number;
  r2tl: number;
}

function expectType(pdu: Pdu, ...types: number[]): void {
  if (!types.includes(pdu.type)) throw new TypeError(`PDU type 0x${pdu.type.toString(16)} is not ${types.map((t) => `0x${t.toString(16)}`).join(' or ')}`);
}

export function decodeIcReq(pdu: Pdu): IcReqFields {
  expectType(pdu, PduType.IC_REQ);
  const v = pdu.view;
  return {
    pfv: readField(v, 0, IcReqPdu.PFV),
    hpda: readField(v, 0, IcReqPdu.HPDA),
    hdgst: readField(v, 0, IcReqPdu.HDGST_ENABLE) === 1,
    ddgst: readField(v, 0, IcReqPdu.DDGST_ENABLE) === 1,
    maxr2t: readField(v, 0, IcReqPdu.MAXR2T),
  };
}

export function decodeIcResp(pdu: Pdu): IcRespFields {
  expectType(pdu, PduType.IC_RESP);
  const v = pdu.view;
  return {
    pfv: readField(v, 0, IcRespPdu.PFV),
    cpda: readField(v, 0, IcRespPdu.CPDA),
    hdgst: readField(v, 0, IcRespPdu.HDGST_ENABLE) === 1,
    ddgst: readField(v, 0, IcRespPdu.DDGST_ENABLE) === 1,
    maxh2cdata: readField(v, 0, IcRespPdu.MAXH2CDATA),
  };
}

export function decodeTermReq(pdu: Pdu): TermReqFields {
  expectType(pdu, PduType.H2C_TERM_REQ, PduType.C2H_TERM_REQ);
  return { fes: readField(pdu.view, 0, TermReqPdu.FES), fei: readField(pdu.view, 0, TermReqPdu.FEI), errorData: pdu.data };
}

export function decodeDataPdu(pdu: Pdu): DataPduFields {
  expectType(pdu, PduType.H2C_DATA, PduType.C2H_DATA);
  const v = pdu.view;
  const h2c = pdu.type === PduType.H2C_DATA;
  return {
    cccid: readField(v, 0, h2c ? H2CDataPdu.CCCID : C2HDataPdu.CCCID),
    ttag: h2c ? readField(v, 0, H2CDataPdu.TTAG) : 0,
    datao: readField(v, 0, h2c ? H2CDataPdu.DATAO : C2HDataPdu.DATAO),
    datal: readField(v, 0, h2c ? H2CDataPdu.DATAL : C2HDataPdu.DATAL),
    last: (pdu.flags & PduFlag.LAST_PDU) !== 0,
    success: (pdu.flags & PduFlag.SUCCESS) !== 0,
  };
}

export function decodeR2T(pdu: Pdu): R2TFields {
  expectType(pdu, PduType.R2T);
  const v = pdu.view;
  return { cccid: readField(v, 0, R2TPdu.CCCID), ttag: readField(v, 0, R2TPdu.TTAG), r2to: readField(v, 0, R2TPdu.R2TO), r2tl: readField(v, 0, R2TPdu.R2TL) };
}

/** The 64-byte SQE of a CapsuleCmd or the 16-byte CQE of a CapsuleResp: a view of the header. */
export function capsuleEntry(pdu: Pdu): Uint8Array {
  expectType(pdu, PduType.CAPSULE_CMD, PduType.CAPSULE_RESP);
  const f = pdu.type === PduType.CAPSULE_CMD ? CapsuleCmdPdu.SQE : CapsuleRespPdu.CQE;
  return pdu.header.subarray(f.offset, f.offset + f.size);
}
