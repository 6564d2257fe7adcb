/**
 * Identify data structures (NVMe 1.4, section 5.15.2): CNS 00h namespace,
 * 01h controller, 02h active namespace ID list, 03h namespace identification
 * descriptor list. Each is 4096 bytes.
 */
import { struct } from './layout.js';

export const IDENTIFY_DATA_SIZE = 4096;

export const Cns = {
  NAMESPACE: 0x00,
  CONTROLLER: 0x01,
  ACTIVE_NAMESPACE_LIST: 0x02,
  NS_DESCRIPTOR_LIST: 0x03,
} as const;

/** Identify command CDW10 fields (Figure 244). */
export const IdentifyCdw10 = struct('Identify.CDW10', 4, {
  CNS: [0, 4, 0, 8],
  CNTID: [0, 4, 16, 16],
});

/** Identify Controller data structure (Figure 247). */
export const IdCtrl = struct('IdentifyController', IDENTIFY_DATA_SIZE, {
  VID: [0, 2],
  SSVID: [2, 2],
  SN: [4, 20],
  MN: [24, 40],
  FR: [64, 8],
  RAB: [72, 1],
  IEEE: [73, 3],
  CMIC: [76, 1],
  /** Maximum Data Transfer Size: 2^MDTS units of CAP.MPSMIN; 0 = no limit. */
  MDTS: [77, 1],
  CNTLID: [78, 2],
  VER: [80, 4],
  RTD3R: [84, 4],
  RTD3E: [88, 4],
  OAES: [92, 4],
  CTRATT: [96, 4],
  RRLS: [100, 2],
  /** Command Retry Delay Times, 100 ms units. */
  CRDT1: [128, 2],
  CRDT2: [130, 2],
  CRDT3: [132, 2],
  /** Controller Type: 1 I/O, 2 discovery, 3 administrative. */
  CNTRLTYPE: [111, 1],
  FGUID: [112, 16],
  OACS: [256, 2],
  /** Abort Command Limit, 0's based. */
  ACL: [258, 1],
  /** Asynchronous Event Request Limit, 0's based. */
  AERL: [259, 1],
  FRMW: [260, 1],
  /** Log Page Attributes: bit 0 SMART per namespace, bit 1 Commands Supported and Effects, bit 2 extended data. */
  LPA: [261, 1],
  /** Error Log Page Entries, 0's based. */
  ELPE: [262, 1],
  NPSS: [263, 1],
  AVSCC: [264, 1],
  APSTA: [265, 1],
  WCTEMP: [266, 2],
  CCTEMP: [268, 2],
  MTFA: [270, 2],
  HMPRE: [272, 4],
  HMMIN: [276, 4],
  TNVMCAP: [280, 16],
  UNVMCAP: [296, 16],
  RPMBS: [312, 4],
  EDSTT: [316, 2],
  DSTO: [318, 1],
  FWUG: [319, 1],
  KAS: [320, 2],
  HCTMA: [322, 2],
  MNTMT: [324, 2],
  MXTMT: [326, 2],
  SANICAP: [328, 4],
  /** Submission Queue Entry Size: bits 3:0 required (log2), 7:4 maximum. */
  SQES: [512, 1],
  CQES: [513, 1],
  MAXCMD: [514, 2],
  /** Number of Namespaces: the largest valid NSID. */
  NN: [516, 4],
  /** Optional NVM Command Support: bit 2 DSM, bit 3 Write Zeroes, bit 4 Save/Select in features. */
  ONCS: [520, 2],
  FUSES: [522, 2],
  FNA: [524, 1],
  /** Volatile Write Cache: bit 0 present, bits 2:1 flush with NSID FFFFFFFFh behaviour. */
  VWC: [525, 1],
  AWUN: [526, 2],
  AWUPF: [528, 2],
  NVSCC: [530, 1],
  NWPC: [531, 1],
  ACWU: [532, 2],
  SGLS: [536, 4],
  MNAN: [540, 4],
  SUBNQN: [768, 256],
  // NVMe over Fabrics attributes (bytes 2047:1792).
  /** I/O Queue Command Capsule Supported Size, 16-byte units: the SQE plus the in-capsule data a capsule may carry. */
  IOCCSZ: [1792, 4],
  /** I/O Queue Response Capsule Supported Size, 16-byte units. */
  IORCSZ: [1796, 4],
  /** In Capsule Data Offset, 16-byte units after the SQE; NVMe/TCP requires 0. */
  ICDOFF: [1800, 2],
  /** Fabrics Controller Attributes: bit 0 set = static controller model. */
  FCATT: [1802, 1],
  /** Maximum SGL Data Block Descriptors a command may carry. */
  MSDBD: [1803, 1],
  /** Optional Fabric Commands Support: bit 0 Disconnect. */
  OFCS: [1804, 2],
  PSD0: [2048, 32],
});

/** OACS, CTRATT, CMIC bits the Fabrics target reasons about (Figure 247). */
export const CtrlAttr = { HOST_ID_128_BIT: 1 << 0, TRAFFIC_BASED_KEEP_ALIVE: 1 << 6 } as const;
export const Cmic = { MULTI_PORT: 1 << 0, MULTI_CONTROLLER: 1 << 1, SRIOV: 1 << 2, ANA: 1 << 3 } as const;
/** ONCS bits (Figure 247). */
export const Oncs = { COMPARE: 1 << 0, WRITE_UNCORRECTABLE: 1 << 1, DSM: 1 << 2, WRITE_ZEROES: 1 << 3, SAVE_SELECT: 1 << 4, RESERVATIONS: 1 << 5, TIMESTAMP: 1 << 6, VERIFY: 1 << 7 } as const;
/** LPA bits (Figure 247). */
export const Lpa = { SMART_PER_NAMESPACE: 1 << 0, COMMANDS_EFFECTS: 1 << 1, EXTENDED_DATA: 1 << 2, TELEMETRY: 1 << 3 } as const;
/** KAS granularity: 100 ms units (Figure 247 bytes 321:320). */
export const KAS_UNIT_MS = 100;

/** A Namespace Identification Descriptor's header (Figure 249); NIDL bytes of identifier follow. */
export const NsIdDescriptor = struct('NamespaceIdDescriptor', 4, {
  NIDT: [0, 1],
  NIDL: [1, 1],
});
export const NS_ID_DESCRIPTOR_HEADER_SIZE = 4;
/** Namespace Identifier Types (Figure 250) and the length each has. */
export const Nidt = { EUI64: 1, NGUID: 2, UUID: 3, CSI: 4 } as const;
export const NIDT_LENGTH: Readonly<Record<number, number>> = { 1: 8, 2: 16, 3: 16, 4: 1 };
/** Command Set Identifier of the NVM command set. */
export const CSI_NVM = 0;

/** Identify Namespace data structure (Figure 245). */
export const IdNs = struct('IdentifyNamespace', IDENTIFY_DATA_SIZE, {
  NSZE: [0, 8],
  NCAP: [8, 8],
  NUSE: [16, 8],
  /** bit 0 thin provisioning, bit 2 DAE: deallocated or unwritten block error. */
  NSFEAT: [24, 1],
  /** Number of LBA formats, 0's based. */
  NLBAF: [25, 1],
  /** Formatted LBA Size: bits 3:0 select the LBA format. */
  FLBAS: [26, 1],
  MC: [27, 1],
  DPC: [28, 1],
  DPS: [29, 1],
  NMIC: [30, 1],
  RESCAP: [31, 1],
  FPI: [32, 1],
  /** Deallocate Logical Block Features: bits 2:0 read value of deallocated blocks (001b = zeroes), bit 3 DEAC in Write Zeroes. */
  DLFEAT: [33, 1],
  NAWUN: [34, 2],
  NAWUPF: [36, 2],
  NACWU: [38, 2],
  NABSN: [40, 2],
  NABO: [42, 2],
  NABSPF: [44, 2],
  NOIOB: [46, 2],
  NVMCAP: [48, 16],
  NPWG: [64, 2],
  NPWA: [66, 2],
  NPDG: [68, 2],
  NPDA: [70, 2],
  NOWS: [72, 2],
  ANAGRPID: [92, 4],
  NSATTR: [99, 1],
  NVMSETID: [100, 2],
  ENDGID: [102, 2],
  NGUID: [104, 16],
  EUI64: [120, 8],
  LBAF0: [128, 4],
});

/** One LBA Format entry (Figure 246), 4 bytes each from IdNs.LBAF0. */
export const LbaFormat = struct('LBAFormat', 4, {
  MS: [0, 4, 0, 16],
  LBADS: [0, 4, 16, 8],
  RP: [0, 4, 24, 2],
});
export const LBAF_ENTRY_SIZE = 4;
export const MAX_LBA_FORMATS = 16;

/** Active Namespace ID list: up to 1024 NSIDs, ascending, zero-terminated. */
export const ACTIVE_NS_LIST_ENTRIES = 1024;

/** NSID meaning "every namespace" (broadcast). */
export const NSID_BROADCAST = 0xffffffff;
