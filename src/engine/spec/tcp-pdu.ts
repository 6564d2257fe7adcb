/**
 * NVMe/TCP PDUs (NVM Express TCP Transport Specification 1.0, the binding
 * first defined by NVMe-oF 1.1 TP 8000): the PDU types, the common header,
 * each PDU's header as a field table, and the constants of connection
 * initialization and error reporting.
 *
 * Every PDU is: a header of HLEN bytes (the 8-byte common header, then the
 * type's own fields), the header digest (HDGST, when negotiated), padding up
 * to PDO, the data, and the data digest (DDGST) over the data. PLEN counts
 * all of it. Multi-byte fields are little endian, as everywhere in NVMe.
 */
import { struct } from './layout.js';

/** CH.PDU-TYPE values ("PDU Types"). Even types travel host to controller, odd ones controller to host. */
export const PduType = {
  IC_REQ: 0x00,
  IC_RESP: 0x01,
  H2C_TERM_REQ: 0x02,
  C2H_TERM_REQ: 0x03,
  CAPSULE_CMD: 0x04,
  CAPSULE_RESP: 0x05,
  H2C_DATA: 0x06,
  C2H_DATA: 0x07,
  R2T: 0x09,
} as const;
export type PduTypeValue = (typeof PduType)[keyof typeof PduType];

/** The spec's name for each PDU type. */
export const PDU_TYPE_NAMES: Readonly<Record<number, string>> = {
  [PduType.IC_REQ]: 'ICReq',
  [PduType.IC_RESP]: 'ICResp',
  [PduType.H2C_TERM_REQ]: 'H2CTermReq',
  [PduType.C2H_TERM_REQ]: 'C2HTermReq',
  [PduType.CAPSULE_CMD]: 'CapsuleCmd',
  [PduType.CAPSULE_RESP]: 'CapsuleResp',
  [PduType.H2C_DATA]: 'H2CData',
  [PduType.C2H_DATA]: 'C2HData',
  [PduType.R2T]: 'R2T',
};

/** "CapsuleCmd (0x04)", "Unknown PDU type (0x08)". */
export function pduTypeName(type: number): string {
  const hex = `0x${type.toString(16).padStart(2, '0')}`;
  const name = PDU_TYPE_NAMES[type];
  return name !== undefined ? `${name} (${hex})` : `Unknown PDU type (${hex})`;
}

/** Bit 0 of PDU-TYPE is the direction: 0 host to controller (H2C), 1 controller to host (C2H). */
export const PDU_TYPE_C2H_BIT = 0x01;

/** Common header (CH), the first 8 bytes of every PDU. */
export const TcpCommonHeader = struct('CH', 8, {
  PDU_TYPE: [0, 1],
  FLAGS: [1, 1],
  /** Header digest present. */
  HDGSTF: [1, 1, 0, 1],
  /** Data digest present. */
  DDGSTF: [1, 1, 1, 1],
  /** H2CData / C2HData: the last data PDU of the transfer. */
  LAST_PDU: [1, 1, 2, 1],
  /** C2HData: the command succeeded; no CapsuleResp follows (requires LAST_PDU). */
  SUCCESS: [1, 1, 3, 1],
  /** Header length, without the header digest. */
  HLEN: [2, 1],
  /** PDU data offset from the start of the PDU: 0 when the PDU has no data. */
  PDO: [3, 1],
  /** Total PDU length: header, digests, padding and data. */
  PLEN: [4, 4],
});

/** CH.FLAGS bits, as masks. */
export const PduFlag = {
  HDGSTF: 1 << 0,
  DDGSTF: 1 << 1,
  LAST_PDU: 1 << 2,
  SUCCESS: 1 << 3,
} as const;

/** Header digest and data digest: each a CRC32C, 4 bytes, little endian. */
export const HDGST_SIZE = 4;
export const DDGST_SIZE = 4;

/** ICReq: connection initialization request, host to controller. */
export const IcReqPdu = struct('ICReq', 128, {
  CH: [0, 8],
  /** PDU format version: 0 for this version of the binding. */
  PFV: [8, 2],
  /** Host PDU data alignment, in dwords, 0's based: C2H data starts at a multiple of (HPDA + 1) * 4. */
  HPDA: [10, 1],
  DGST: [11, 1],
  HDGST_ENABLE: [11, 1, 0, 1],
  DDGST_ENABLE: [11, 1, 1, 1],
  /** Maximum number of outstanding R2Ts per command, 0's based. */
  MAXR2T: [12, 4],
});

/** ICResp: connection initialization response, controller to host. */
export const IcRespPdu = struct('ICResp', 128, {
  CH: [0, 8],
  PFV: [8, 2],
  /** Controller PDU data alignment, in dwords, 0's based: H2C data starts at a multiple of (CPDA + 1) * 4. */
  CPDA: [10, 1],
  DGST: [11, 1],
  HDGST_ENABLE: [11, 1, 0, 1],
  DDGST_ENABLE: [11, 1, 1, 1],
  /** Maximum data bytes in one H2CData PDU. */
  MAXH2CDATA: [12, 4],
});

/** H2CTermReq and C2HTermReq share one header; the error data (the offending PDU header) follows it. */
export const TermReqPdu = struct('TermReq', 24, {
  CH: [0, 8],
  /** Fatal error status (`Fes`). */
  FES: [8, 2],
  /** Fatal error information: what FES says it is (a byte offset, a digest). */
  FEI: [10, 4],
});

/** CapsuleCmd: the 64-byte SQE; in-capsule data, if any, at PDO. */
export const CapsuleCmdPdu = struct('CapsuleCmd', 72, {
  CH: [0, 8],
  SQE: [8, 64],
});

/** CapsuleResp: the 16-byte CQE. */
export const CapsuleRespPdu = struct('CapsuleResp', 24, {
  CH: [0, 8],
  CQE: [8, 16],
});

/** H2CData: host to controller data for a command, in answer to an R2T. */
export const H2CDataPdu = struct('H2CData', 24, {
  CH: [0, 8],
  /** Command capsule CID. */
  CCCID: [8, 2],
  /** Transfer tag, from the R2T. */
  TTAG: [10, 2],
  /** Offset of this PDU's data in the command's data. */
  DATAO: [12, 4],
  /** Bytes of data in this PDU. */
  DATAL: [16, 4],
});

/** C2HData: controller to host data for a command. */
export const C2HDataPdu = struct('C2HData', 24, {
  CH: [0, 8],
  CCCID: [8, 2],
  DATAO: [12, 4],
  DATAL: [16, 4],
});

/** R2T: the controller asks the host for R2TL bytes of a command's data from offset R2TO. */
export const R2TPdu = struct('R2T', 24, {
  CH: [0, 8],
  CCCID: [8, 2],
  TTAG: [10, 2],
  R2TO: [12, 4],
  R2TL: [16, 4],
});

/** HLEN of each PDU type: fixed, a PDU with any other HLEN is malformed. */
export const PDU_HLEN: Readonly<Record<PduTypeValue, number>> = {
  [PduType.IC_REQ]: IcReqPdu.$size,
  [PduType.IC_RESP]: IcRespPdu.$size,
  [PduType.H2C_TERM_REQ]: TermReqPdu.$size,
  [PduType.C2H_TERM_REQ]: TermReqPdu.$size,
  [PduType.CAPSULE_CMD]: CapsuleCmdPdu.$size,
  [PduType.CAPSULE_RESP]: CapsuleRespPdu.$size,
  [PduType.H2C_DATA]: H2CDataPdu.$size,
  [PduType.C2H_DATA]: C2HDataPdu.$size,
  [PduType.R2T]: R2TPdu.$size,
};

/** ICReq / ICResp PFV: the only PDU format version defined. */
export const TCP_PFV_1_0 = 0;
/** HPDA and CPDA are 5-bit values: at most 31, an alignment of 128 bytes. */
export const MAX_PDA = 31;
/** The data alignment in bytes of an HPDA / CPDA value. */
export function pdaBytes(pda: number): number {
  return (pda + 1) * 4;
}
/** ICResp.MAXH2CDATA: at least 4096 bytes, a multiple of 4 (whole dwords). */
export const MIN_MAXH2CDATA = 4096;
export const MAXH2CDATA_MULTIPLE = 4;
/** The port NVMe/TCP listens on by default (IANA), for I/O controllers and discovery alike. */
export const NVME_TCP_PORT = 4420;

/** PLEN is a 32-bit count: no PDU is longer. */
export const MAX_PLEN = 0xffffffff;

/** TermReq.FES values ("Fatal Error Status"). */
export const Fes = {
  INVALID_HEADER_FIELD: 0x01,
  PDU_SEQUENCE_ERROR: 0x02,
  HEADER_DIGEST_ERROR: 0x03,
  DATA_TRANSFER_OUT_OF_RANGE: 0x04,
  /** Also used for "R2T limit exceeded". */
  DATA_TRANSFER_LIMIT_EXCEEDED: 0x05,
  UNSUPPORTED_PARAMETER: 0x06,
} as const;

export const FES_NAMES: Readonly<Record<number, string>> = {
  [Fes.INVALID_HEADER_FIELD]: 'Invalid Header Field',
  [Fes.PDU_SEQUENCE_ERROR]: 'PDU Sequence Error',
  [Fes.HEADER_DIGEST_ERROR]: 'Header Digest Error',
  [Fes.DATA_TRANSFER_OUT_OF_RANGE]: 'Data Transfer Out of Range',
  [Fes.DATA_TRANSFER_LIMIT_EXCEEDED]: 'Data Transfer Limit Exceeded',
  [Fes.UNSUPPORTED_PARAMETER]: 'Unsupported Parameter',
};

/** "Header Digest Error (0x03)". */
export function fesName(fes: number): string {
  const hex = `0x${fes.toString(16).padStart(2, '0')}`;
  return `${FES_NAMES[fes] ?? 'Unknown fatal error status'} (${hex})`;
}

/**
 * A TermReq carries at most 128 bytes of error data (the header of the PDU in
 * error, cut there), so its PLEN is at most 24 + 128 = 152. A TermReq
 * carries no header or data digest, whatever was negotiated.
 */
export const TERM_REQ_MAX_ERROR_DATA = 128;
export const TERM_REQ_MAX_PLEN = TermReqPdu.$size + TERM_REQ_MAX_ERROR_DATA;
