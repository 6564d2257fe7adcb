/**
 * NVMe over Fabrics structures (NVMe over Fabrics 1.1: the Fabrics command set and the
 * discovery service; NVMe/TCP Transport Specification 1.0 for the TCP-specific values):
 * Fabrics command capsules (Connect, Property Get / Set, Disconnect), the
 * Connect data, SGL descriptors as NVMe/TCP uses them, and the Discovery Log
 * Page (Log Identifier 70h).
 *
 * Property offsets and register layouts are the controller registers of
 * `registers.ts` (Fabrics 1.1: "properties" are the registers of a
 * memory-based controller, read and written with commands).
 */
import { struct } from './layout.js';
import { Regs } from './registers.js';

/** Every Fabrics command uses opcode 7Fh; FCTYPE in byte 4 says which (Fabrics 1.1, Fabrics command set). */
export const FABRICS_OPCODE = 0x7f;

/** Fabrics Command Type values (Fabrics 1.1, Fabrics command set). */
export const FabricsType = {
  PROPERTY_SET: 0x00,
  CONNECT: 0x01,
  PROPERTY_GET: 0x04,
  AUTHENTICATION_SEND: 0x05,
  AUTHENTICATION_RECEIVE: 0x06,
  DISCONNECT: 0x08,
} as const;

const fabricsNames = new Map<number, string>([
  [0x00, 'Property Set'],
  [0x01, 'Connect'],
  [0x04, 'Property Get'],
  [0x05, 'Authentication Send'],
  [0x06, 'Authentication Receive'],
  [0x08, 'Disconnect'],
]);

/** "Connect (FCTYPE 0x01)". */
export function fabricsCommandName(fctype: number): string {
  return `${fabricsNames.get(fctype) ?? 'Unknown Fabrics command'} (FCTYPE 0x${fctype.toString(16).padStart(2, '0')})`;
}

/** The fields every Fabrics command capsule shares (Fabrics 1.1, Fabrics command capsule). SGL1 is the data pointer. */
export const FabricsSqe = struct('FabricsCommand', 64, {
  OPC: [0, 1],
  PSDT: [1, 1, 6, 2],
  CID: [2, 2],
  FCTYPE: [4, 1],
  SGL1: [24, 16],
});

/** Connect command (Fabrics 1.1). SQSIZE is 0's based. KATO is in milliseconds. */
export const ConnectSqe = struct('Connect', 64, {
  RECFMT: [40, 2],
  QID: [42, 2],
  SQSIZE: [44, 2],
  CATTR: [46, 1],
  KATO: [48, 4],
});

/** Connect Attributes (CATTR): bits 1:0 priority class of an I/O queue, bit 2 disable SQ flow control. */
export const ConnectCattr = struct('Connect.CATTR', 1, {
  PRIORITY_CLASS: [0, 1, 0, 2],
  SQFC_DISABLE: [0, 1, 2, 1],
});

/** The 1024-byte Connect data (Fabrics 1.1), carried as in-capsule data. NQNs are NUL-terminated UTF-8. */
export const ConnectData = struct('ConnectData', 1024, {
  HOSTID: [0, 16],
  CNTLID: [16, 2],
  SUBNQN: [256, 256],
  HOSTNQN: [512, 256],
});
export const CONNECT_DATA_SIZE = 1024;
/** The only Connect record format defined (Fabrics 1.1, Connect command). */
export const CONNECT_RECFMT = 0;

/** Connect response DW0 on success (Fabrics 1.1): the controller ID (bytes 1:0) and AUTHREQ (bytes 3:2). */
export const ConnectResponseDw0 = struct('ConnectResponse.DW0', 4, {
  CNTLID: [0, 4, 0, 16],
  AUTHREQ: [0, 4, 16, 16],
});
/** AUTHREQ bits: an authentication transaction is required (ATR), with a secure channel (ASCR). Bit 0 is reserved. */
export const AuthReq = { ATR: 1 << 1, ASCR: 1 << 2 } as const;

/** Connect response DW0 with Connect Invalid Parameters (Fabrics 1.1, Connect response): where the bad value is. */
export const ConnectInvalidDw0 = struct('ConnectInvalidParameters.DW0', 4, {
  /** Invalid Parameter Offset: byte offset in the SQE or in the Connect data. */
  IPO: [0, 4, 0, 16],
  /** Invalid Attributes: bit 0 clear = the parameter is in the SQE, set = in the Connect data. */
  IATTR: [0, 4, 16, 8],
});
export const ConnectIattr = { SQE: 0, DATA: 1 } as const;

/**
 * Controller IDs (Fabrics 1.1, dynamic controller model): FFFFh in an admin Connect asks the
 * dynamic controller model for a new controller; FFFEh asks for any static
 * one; a controller's own ID is 0 to FFEFh (this target hands out 1 to FFEFh).
 */
export const CNTLID_DYNAMIC = 0xffff;
export const CNTLID_STATIC_ANY = 0xfffe;
export const CNTLID_MIN = 0x0001;
export const CNTLID_MAX = 0xffef;

/** Property Get / Set (Fabrics 1.1). ATTRIB bits 2:0 give the size. */
export const PropertySqe = struct('PropertyCommand', 64, {
  ATTRIB: [40, 1],
  OFST: [44, 4],
  VALUE: [48, 8],
});
export const PropertyAttrib = struct('Property.ATTRIB', 1, {
  SIZE: [0, 1, 0, 3],
});
/** ATTRIB.SIZE: 0 = 4-byte property, 1 = 8-byte property. */
export const PropertySize = { FOUR_BYTES: 0, EIGHT_BYTES: 1 } as const;

/** The properties a Fabrics controller defines (Fabrics 1.1): the registers of `registers.ts`. */
export const Property = {
  CAP: { offset: Regs.CAP.offset, size: 8 },
  VS: { offset: Regs.VS.offset, size: 4 },
  CC: { offset: Regs.CC.offset, size: 4 },
  CSTS: { offset: Regs.CSTS.offset, size: 4 },
  NSSR: { offset: Regs.NSSR.offset, size: 4 },
} as const;

/** Disconnect (Fabrics 1.1): deletes the I/O queue it is sent on. */
export const DisconnectSqe = struct('Disconnect', 64, {
  RECFMT: [40, 2],
});

/**
 * SGL descriptor (NVMe 1.4 section 4.4): 16 bytes, the SGL
 * Identifier in byte 15 (type bits 7:4, subtype bits 3:0).
 */
export const SglDescriptor = struct('SGLDescriptor', 16, {
  ADDRESS: [0, 8],
  LENGTH: [8, 4],
  SGL_ID: [15, 1],
  SUBTYPE: [15, 1, 0, 4],
  TYPE: [15, 1, 4, 4],
});
export const SGL_DESCRIPTOR_SIZE = 16;
/** SGL descriptor types (NVMe 1.4 section 4.4). */
export const SglType = {
  DATA_BLOCK: 0x0,
  BIT_BUCKET: 0x1,
  SEGMENT: 0x2,
  LAST_SEGMENT: 0x3,
  KEYED_DATA_BLOCK: 0x4,
  TRANSPORT_DATA_BLOCK: 0x5,
} as const;
/** SGL descriptor subtypes (NVMe 1.4 section 4.4). */
export const SglSubtype = { ADDRESS: 0x0, OFFSET: 0x1, TRANSPORT_SPECIFIC: 0xa } as const;
/**
 * The two SGL Identifiers NVMe/TCP uses (NVMe/TCP 1.0): data in
 * the command capsule is an SGL Data Block with subtype Offset (ADDRESS is
 * the offset from the start of the in-capsule data); data moved by R2T / H2CData
 * / C2HData PDUs is a Transport SGL Data Block, transport-specific subtype.
 */
export const SGL_ID_IN_CAPSULE = (SglType.DATA_BLOCK << 4) | SglSubtype.OFFSET;
export const SGL_ID_TRANSPORT = (SglType.TRANSPORT_DATA_BLOCK << 4) | SglSubtype.TRANSPORT_SPECIFIC;

/** Identify Controller SGLS bits (NVMe 1.4 Figure 247, bytes 539:536). Bits 1:0 = 01b: SGLs supported, no alignment rule. */
export const SglSupport = {
  SUPPORTED: 0x1,
  KEYED_DATA_BLOCK: 1 << 2,
  BIT_BUCKET: 1 << 16,
  /** Bit 20: the ADDRESS of an SGL Data Block may be an offset (Offset subtype). */
  OFFSET: 1 << 20,
  /** Bit 21: Transport SGL Data Block descriptors. */
  TRANSPORT_DATA_BLOCK: 1 << 21,
} as const;

/** Identify Controller CNTRLTYPE (NVMe 1.4 Figure 247, byte 111). */
export const ControllerType = { IO: 1, DISCOVERY: 2, ADMIN: 3 } as const;

/** The Discovery Log Page's Log Identifier (Fabrics 1.1, Discovery Log Page). */
export const DISCOVERY_LOG_PAGE_ID = 0x70;
/** The well-known NQN of a discovery subsystem (Fabrics 1.1, discovery service). */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
/** Bytes of an NQN field, NUL terminator included (NVMe 1.4 section 7.9: at most 223 bytes of name). */
export const NQN_FIELD_SIZE = 256;
/** The longest NQN, in bytes of UTF-8. */
export const NQN_MAX_LENGTH = 223;

/** Discovery Log Page header (Fabrics 1.1, Discovery Log Page header); the entries follow from byte 1024. */
export const DiscoveryLogHeader = struct('DiscoveryLogHeader', 1024, {
  GENCTR: [0, 8],
  NUMREC: [8, 8],
  RECFMT: [16, 2],
});
/** One Discovery Log Page entry (Fabrics 1.1). TRSVCID, TRADDR are ASCII; SUBNQN is an NQN. */
export const DiscoveryLogEntry = struct('DiscoveryLogEntry', 1024, {
  TRTYPE: [0, 1],
  ADRFAM: [1, 1],
  SUBTYPE: [2, 1],
  TREQ: [3, 1],
  PORTID: [4, 2],
  CNTLID: [6, 2],
  ASQSZ: [8, 2],
  TRSVCID: [32, 32],
  SUBNQN: [256, 256],
  TRADDR: [512, 256],
  TSAS: [768, 256],
  /** TCP's Transport Specific Address Subtype: byte 0 is SECTYPE (NVMe/TCP 1.0). */
  TSAS_SECTYPE: [768, 1],
});
export const DISCOVERY_LOG_ENTRY_SIZE = 1024;
export const DISCOVERY_LOG_HEADER_SIZE = 1024;

/** Transport types (TRTYPE, Fabrics 1.1 Discovery Log Page entry). */
export const Trtype = { RDMA: 1, FC: 2, TCP: 3, INTRA_HOST: 254 } as const;
/** Address families (ADRFAM). */
export const Adrfam = { IPV4: 1, IPV6: 2, IB: 3, FC: 4, INTRA_HOST: 254 } as const;
/** Subsystem types (SUBTYPE): a referral to another discovery subsystem, an NVM subsystem, the discovery subsystem answering. */
export const DiscoverySubtype = { REFERRAL: 1, NVM: 2, CURRENT_DISCOVERY: 3 } as const;
/** Transport requirements (TREQ): bits 1:0 secure channel, bit 2 the controller can run with SQ flow control disabled. */
export const Treq = { SECURE_NOT_SPECIFIED: 0, SECURE_REQUIRED: 1, SECURE_NOT_REQUIRED: 2, SQFC_DISABLE_SUPPORTED: 1 << 2 } as const;
/** NVMe/TCP security types (TSAS.SECTYPE). */
export const TcpSectype = { NONE: 0, TLS12: 1, TLS13: 2 } as const;
/** Discovery controllers keep-alive default when the Connect gives KATO 0: Linux's nvmet uses 120 s to reap stale associations. */
export const DISCOVERY_DEFAULT_KATO_MS = 120_000;
