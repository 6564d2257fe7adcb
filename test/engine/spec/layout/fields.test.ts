/**
 * Layout tests for every field table in src/engine/spec: field positions.
 *
 * The expectations below were written from the NVMe Base Specification 1.4
 * (section numbers and figure titles are given next to each group), in the
 * spec's own notation: byte ranges "hi:lo" and bit ranges "hi:lo" inside a
 * named register / dword. They are not derived from the source tables.
 *
 * A bit field is checked by behaviour, not by comparing the source's
 * (offset, shift) pair: all-ones is written through `writeField()` into a
 * zeroed structure, and exactly the spec's bits of the spec's register must
 * come out set (and the reverse with all-zeroes into an all-ones structure).
 */
import { describe, it, expect } from 'vitest';
import {
  readField,
  writeField,
  type Field,
  Regs,
  Cap,
  Vs,
  Cc,
  Csts,
  Aqa,
  Sqe,
  Cqe,
  IdCtrl,
  IdNs,
  LbaFormat,
  IdentifyCdw10,
  SetFeaturesCdw10,
  GetFeaturesCdw10,
  ArbitrationDw,
  TemperatureThresholdDw,
  VolatileWriteCacheDw,
  NumberOfQueuesDw,
  AsyncEventConfigDw,
  GetLogPageCdw10,
  GetLogPageCdw11,
  ErrorLogEntry,
  SmartLog,
  CommandsEffectsLog,
  AsyncEventDw0,
  CreateCqCdw10,
  CreateCqCdw11,
  CreateSqCdw10,
  CreateSqCdw11,
  DeleteQueueCdw10,
  AbortCdw10,
  RwCdw12,
  DsmCdw10,
  DsmCdw11,
  DsmRange,
  TcpCommonHeader,
  IcReqPdu,
  IcRespPdu,
  TermReqPdu,
  CapsuleCmdPdu,
  CapsuleRespPdu,
  H2CDataPdu,
  C2HDataPdu,
  R2TPdu,
  NsIdDescriptor,
  HostIdentifierCdw11,
  FabricsSqe,
  ConnectSqe,
  ConnectCattr,
  ConnectData,
  ConnectResponseDw0,
  ConnectInvalidDw0,
  PropertySqe,
  PropertyAttrib,
  DisconnectSqe,
  SglDescriptor,
  DiscoveryLogHeader,
  DiscoveryLogEntry,
} from '../../../../src/engine/spec/index.js';
import { type AnyStruct, exportedStructs } from './helpers.js';

// ---------------------------------------------------------------------------
// The independent table.
// ---------------------------------------------------------------------------

interface ByteRow {
  kind: 'bytes';
  s: AnyStruct;
  f: Field;
  hi: number;
  lo: number;
}
interface BitRow {
  kind: 'bits';
  s: AnyStruct;
  f: Field;
  /** Byte offset and width of the register / dword the spec names. */
  reg: number;
  regBytes: number;
  hi: number;
  lo: number;
}
type Row = ByteRow | BitRow;

/** Spec "Bytes hi:lo" (inclusive). */
const B = (s: AnyStruct, f: Field, hi: number, lo: number = hi): ByteRow => ({ kind: 'bytes', s, f, hi, lo });
/** Spec "bits hi:lo" of the `regBytes`-byte register / dword starting at byte `reg`. */
const b = (s: AnyStruct, f: Field, reg: number, regBytes: number, hi: number, lo: number = hi): BitRow => ({ kind: 'bits', s, f, reg, regBytes, hi, lo });
/** Bits of the one dword that forms a CDWn / DW0 structure. */
const d = (s: AnyStruct, f: Field, hi: number, lo: number = hi): BitRow => b(s, f, 0, 4, hi, lo);

const ROWS: Row[] = [
  // 3.1 Register definition (Figure 68 "Controller Registers").
  B(Regs, Regs.CAP, 0x07, 0x00),
  B(Regs, Regs.CAP_LO, 0x03, 0x00),
  B(Regs, Regs.CAP_HI, 0x07, 0x04),
  B(Regs, Regs.VS, 0x0b, 0x08),
  B(Regs, Regs.INTMS, 0x0f, 0x0c),
  B(Regs, Regs.INTMC, 0x13, 0x10),
  B(Regs, Regs.CC, 0x17, 0x14),
  // 18h..1Bh is reserved.
  B(Regs, Regs.CSTS, 0x1f, 0x1c),
  B(Regs, Regs.NSSR, 0x23, 0x20),
  B(Regs, Regs.AQA, 0x27, 0x24),
  B(Regs, Regs.ASQ, 0x2f, 0x28),
  B(Regs, Regs.ACQ, 0x37, 0x30),

  // 3.1.1 Offset 0h: CAP - Controller Capabilities (64 bits).
  b(Cap, Cap.MQES, 0, 8, 15, 0),
  b(Cap, Cap.CQR, 0, 8, 16),
  b(Cap, Cap.AMS, 0, 8, 18, 17),
  b(Cap, Cap.TO, 0, 8, 31, 24),
  b(Cap, Cap.DSTRD, 0, 8, 35, 32),
  b(Cap, Cap.NSSRS, 0, 8, 36),
  b(Cap, Cap.CSS, 0, 8, 44, 37),
  b(Cap, Cap.BPS, 0, 8, 45),
  b(Cap, Cap.MPSMIN, 0, 8, 51, 48),
  b(Cap, Cap.MPSMAX, 0, 8, 55, 52),

  // 3.1.2 Offset 8h: VS - Version.
  d(Vs, Vs.TER, 7, 0),
  d(Vs, Vs.MNR, 15, 8),
  d(Vs, Vs.MJR, 31, 16),

  // 3.1.5 Offset 14h: CC - Controller Configuration.
  d(Cc, Cc.EN, 0),
  d(Cc, Cc.CSS, 6, 4),
  d(Cc, Cc.MPS, 10, 7),
  d(Cc, Cc.AMS, 13, 11),
  d(Cc, Cc.SHN, 15, 14),
  d(Cc, Cc.IOSQES, 19, 16),
  d(Cc, Cc.IOCQES, 23, 20),

  // 3.1.6 Offset 1Ch: CSTS - Controller Status.
  d(Csts, Csts.RDY, 0),
  d(Csts, Csts.CFS, 1),
  d(Csts, Csts.SHST, 3, 2),
  d(Csts, Csts.NSSRO, 4),
  d(Csts, Csts.PP, 5),

  // 3.1.8 Offset 24h: AQA - Admin Queue Attributes.
  d(Aqa, Aqa.ASQS, 11, 0),
  d(Aqa, Aqa.ACQS, 27, 16),

  // 4.2 Submission Queue Entry - Command Format (Figure 105 / 106, CDW0 Figure 104).
  B(Sqe, Sqe.CDW0, 3, 0),
  b(Sqe, Sqe.OPC, 0, 4, 7, 0),
  b(Sqe, Sqe.FUSE, 0, 4, 9, 8),
  b(Sqe, Sqe.PSDT, 0, 4, 15, 14),
  b(Sqe, Sqe.CID, 0, 4, 31, 16),
  B(Sqe, Sqe.OPC, 0, 0),
  B(Sqe, Sqe.CID, 3, 2),
  B(Sqe, Sqe.NSID, 7, 4),
  B(Sqe, Sqe.CDW2, 11, 8),
  B(Sqe, Sqe.CDW3, 15, 12),
  B(Sqe, Sqe.MPTR, 23, 16),
  // DPTR 39:24: PRP entry 1 is 31:24, PRP entry 2 is 39:32.
  B(Sqe, Sqe.PRP1, 31, 24),
  B(Sqe, Sqe.PRP2, 39, 32),
  B(Sqe, Sqe.CDW10, 43, 40),
  B(Sqe, Sqe.CDW11, 47, 44),
  B(Sqe, Sqe.CDW12, 51, 48),
  B(Sqe, Sqe.CDW13, 55, 52),
  B(Sqe, Sqe.CDW14, 59, 56),
  B(Sqe, Sqe.CDW15, 63, 60),

  // 4.6 Completion Queue Entry (Figures 121 - 125): DW0, DW1, DW2 = SQID:SQHD, DW3 = Status:P:CID.
  B(Cqe, Cqe.DW0, 3, 0),
  B(Cqe, Cqe.DW1, 7, 4),
  b(Cqe, Cqe.SQHD, 8, 4, 15, 0),
  b(Cqe, Cqe.SQID, 8, 4, 31, 16),
  B(Cqe, Cqe.SQHD, 9, 8),
  B(Cqe, Cqe.SQID, 11, 10),
  b(Cqe, Cqe.CID, 12, 4, 15, 0),
  B(Cqe, Cqe.CID, 13, 12),
  b(Cqe, Cqe.STATUS, 12, 4, 31, 16),
  B(Cqe, Cqe.STATUS, 15, 14),
  b(Cqe, Cqe.P, 12, 4, 16),
  b(Cqe, Cqe.SF, 12, 4, 31, 17),

  // 5.15.2.2 Identify Controller Data Structure (Figure 247).
  B(IdCtrl, IdCtrl.VID, 1, 0),
  B(IdCtrl, IdCtrl.SSVID, 3, 2),
  B(IdCtrl, IdCtrl.SN, 23, 4),
  B(IdCtrl, IdCtrl.MN, 63, 24),
  B(IdCtrl, IdCtrl.FR, 71, 64),
  B(IdCtrl, IdCtrl.RAB, 72),
  B(IdCtrl, IdCtrl.IEEE, 75, 73),
  B(IdCtrl, IdCtrl.CMIC, 76),
  B(IdCtrl, IdCtrl.MDTS, 77),
  B(IdCtrl, IdCtrl.CNTLID, 79, 78),
  B(IdCtrl, IdCtrl.VER, 83, 80),
  B(IdCtrl, IdCtrl.RTD3R, 87, 84),
  B(IdCtrl, IdCtrl.RTD3E, 91, 88),
  B(IdCtrl, IdCtrl.OAES, 95, 92),
  B(IdCtrl, IdCtrl.CTRATT, 99, 96),
  B(IdCtrl, IdCtrl.RRLS, 101, 100),
  B(IdCtrl, IdCtrl.CRDT1, 129, 128),
  B(IdCtrl, IdCtrl.CRDT2, 131, 130),
  B(IdCtrl, IdCtrl.CRDT3, 133, 132),
  B(IdCtrl, IdCtrl.CNTRLTYPE, 111),
  B(IdCtrl, IdCtrl.FGUID, 127, 112),
  B(IdCtrl, IdCtrl.OACS, 257, 256),
  B(IdCtrl, IdCtrl.ACL, 258),
  B(IdCtrl, IdCtrl.AERL, 259),
  B(IdCtrl, IdCtrl.FRMW, 260),
  B(IdCtrl, IdCtrl.LPA, 261),
  B(IdCtrl, IdCtrl.ELPE, 262),
  B(IdCtrl, IdCtrl.NPSS, 263),
  B(IdCtrl, IdCtrl.AVSCC, 264),
  B(IdCtrl, IdCtrl.APSTA, 265),
  B(IdCtrl, IdCtrl.WCTEMP, 267, 266),
  B(IdCtrl, IdCtrl.CCTEMP, 269, 268),
  B(IdCtrl, IdCtrl.MTFA, 271, 270),
  B(IdCtrl, IdCtrl.HMPRE, 275, 272),
  B(IdCtrl, IdCtrl.HMMIN, 279, 276),
  B(IdCtrl, IdCtrl.TNVMCAP, 295, 280),
  B(IdCtrl, IdCtrl.UNVMCAP, 311, 296),
  B(IdCtrl, IdCtrl.RPMBS, 315, 312),
  B(IdCtrl, IdCtrl.EDSTT, 317, 316),
  B(IdCtrl, IdCtrl.DSTO, 318),
  B(IdCtrl, IdCtrl.FWUG, 319),
  B(IdCtrl, IdCtrl.KAS, 321, 320),
  B(IdCtrl, IdCtrl.HCTMA, 323, 322),
  B(IdCtrl, IdCtrl.MNTMT, 325, 324),
  B(IdCtrl, IdCtrl.MXTMT, 327, 326),
  B(IdCtrl, IdCtrl.SANICAP, 331, 328),
  B(IdCtrl, IdCtrl.SQES, 512),
  B(IdCtrl, IdCtrl.CQES, 513),
  B(IdCtrl, IdCtrl.MAXCMD, 515, 514),
  B(IdCtrl, IdCtrl.NN, 519, 516),
  B(IdCtrl, IdCtrl.ONCS, 521, 520),
  B(IdCtrl, IdCtrl.FUSES, 523, 522),
  B(IdCtrl, IdCtrl.FNA, 524),
  B(IdCtrl, IdCtrl.VWC, 525),
  B(IdCtrl, IdCtrl.AWUN, 527, 526),
  B(IdCtrl, IdCtrl.AWUPF, 529, 528),
  B(IdCtrl, IdCtrl.NVSCC, 530),
  B(IdCtrl, IdCtrl.NWPC, 531),
  B(IdCtrl, IdCtrl.ACWU, 533, 532),
  // 535:534 reserved.
  B(IdCtrl, IdCtrl.SGLS, 539, 536),
  B(IdCtrl, IdCtrl.MNAN, 543, 540),
  B(IdCtrl, IdCtrl.SUBNQN, 1023, 768),
  // NVMe over Fabrics attributes, bytes 2047:1792.
  B(IdCtrl, IdCtrl.IOCCSZ, 1795, 1792),
  B(IdCtrl, IdCtrl.IORCSZ, 1799, 1796),
  B(IdCtrl, IdCtrl.ICDOFF, 1801, 1800),
  B(IdCtrl, IdCtrl.FCATT, 1802),
  B(IdCtrl, IdCtrl.MSDBD, 1803),
  B(IdCtrl, IdCtrl.OFCS, 1805, 1804),
  // Power State 0 Descriptor, 32 bytes.
  B(IdCtrl, IdCtrl.PSD0, 2079, 2048),

  // 5.15.2.1 Identify Namespace Data Structure, NVM Command Set Specific (Figure 245).
  B(IdNs, IdNs.NSZE, 7, 0),
  B(IdNs, IdNs.NCAP, 15, 8),
  B(IdNs, IdNs.NUSE, 23, 16),
  B(IdNs, IdNs.NSFEAT, 24),
  B(IdNs, IdNs.NLBAF, 25),
  B(IdNs, IdNs.FLBAS, 26),
  B(IdNs, IdNs.MC, 27),
  B(IdNs, IdNs.DPC, 28),
  B(IdNs, IdNs.DPS, 29),
  B(IdNs, IdNs.NMIC, 30),
  B(IdNs, IdNs.RESCAP, 31),
  B(IdNs, IdNs.FPI, 32),
  B(IdNs, IdNs.DLFEAT, 33),
  B(IdNs, IdNs.NAWUN, 35, 34),
  B(IdNs, IdNs.NAWUPF, 37, 36),
  B(IdNs, IdNs.NACWU, 39, 38),
  B(IdNs, IdNs.NABSN, 41, 40),
  B(IdNs, IdNs.NABO, 43, 42),
  B(IdNs, IdNs.NABSPF, 45, 44),
  B(IdNs, IdNs.NOIOB, 47, 46),
  B(IdNs, IdNs.NVMCAP, 63, 48),
  B(IdNs, IdNs.NPWG, 65, 64),
  B(IdNs, IdNs.NPWA, 67, 66),
  B(IdNs, IdNs.NPDG, 69, 68),
  B(IdNs, IdNs.NPDA, 71, 70),
  B(IdNs, IdNs.NOWS, 73, 72),
  B(IdNs, IdNs.ANAGRPID, 95, 92),
  B(IdNs, IdNs.NSATTR, 99),
  B(IdNs, IdNs.NVMSETID, 101, 100),
  B(IdNs, IdNs.ENDGID, 103, 102),
  B(IdNs, IdNs.NGUID, 119, 104),
  B(IdNs, IdNs.EUI64, 127, 120),
  B(IdNs, IdNs.LBAF0, 131, 128),

  // LBA Format Data Structure, NVM Command Set Specific (Figure 246).
  d(LbaFormat, LbaFormat.MS, 15, 0),
  d(LbaFormat, LbaFormat.LBADS, 23, 16),
  d(LbaFormat, LbaFormat.RP, 25, 24),

  // 5.15.1 Identify command CDW10.
  d(IdentifyCdw10, IdentifyCdw10.CNS, 7, 0),
  d(IdentifyCdw10, IdentifyCdw10.CNTID, 31, 16),

  // 5.21 Set Features CDW10 / 5.9 Get Features CDW10.
  d(SetFeaturesCdw10, SetFeaturesCdw10.FID, 7, 0),
  d(SetFeaturesCdw10, SetFeaturesCdw10.SV, 31),
  d(GetFeaturesCdw10, GetFeaturesCdw10.FID, 7, 0),
  d(GetFeaturesCdw10, GetFeaturesCdw10.SEL, 10, 8),
  // 5.21.1.1 Arbitration.
  d(ArbitrationDw, ArbitrationDw.AB, 2, 0),
  d(ArbitrationDw, ArbitrationDw.LPW, 15, 8),
  d(ArbitrationDw, ArbitrationDw.MPW, 23, 16),
  d(ArbitrationDw, ArbitrationDw.HPW, 31, 24),
  // 5.21.1.4 Temperature Threshold.
  d(TemperatureThresholdDw, TemperatureThresholdDw.TMPTH, 15, 0),
  d(TemperatureThresholdDw, TemperatureThresholdDw.TMPSEL, 19, 16),
  d(TemperatureThresholdDw, TemperatureThresholdDw.THSEL, 21, 20),
  // 5.21.1.6 Volatile Write Cache.
  d(VolatileWriteCacheDw, VolatileWriteCacheDw.WCE, 0),
  // 5.21.1.7 Number of Queues (NSQR / NCQR, and NSQA / NCQA in DW0).
  d(NumberOfQueuesDw, NumberOfQueuesDw.NSQ, 15, 0),
  d(NumberOfQueuesDw, NumberOfQueuesDw.NCQ, 31, 16),
  // 5.21.1.11 Asynchronous Event Configuration.
  d(AsyncEventConfigDw, AsyncEventConfigDw.SMART_WARNINGS, 7, 0),
  d(AsyncEventConfigDw, AsyncEventConfigDw.NS_ATTR_NOTICES, 8),
  d(AsyncEventConfigDw, AsyncEventConfigDw.FW_ACTIVATION_NOTICES, 9),

  // 5.14 Get Log Page CDW10 / CDW11.
  d(GetLogPageCdw10, GetLogPageCdw10.LID, 7, 0),
  d(GetLogPageCdw10, GetLogPageCdw10.LSP, 11, 8),
  d(GetLogPageCdw10, GetLogPageCdw10.RAE, 15),
  d(GetLogPageCdw10, GetLogPageCdw10.NUMDL, 31, 16),
  d(GetLogPageCdw11, GetLogPageCdw11.NUMDU, 15, 0),
  d(GetLogPageCdw11, GetLogPageCdw11.LSI, 31, 16),

  // 5.14.1.1 Error Information log entry.
  B(ErrorLogEntry, ErrorLogEntry.ERROR_COUNT, 7, 0),
  B(ErrorLogEntry, ErrorLogEntry.SQID, 9, 8),
  B(ErrorLogEntry, ErrorLogEntry.CID, 11, 10),
  B(ErrorLogEntry, ErrorLogEntry.STATUS, 13, 12),
  B(ErrorLogEntry, ErrorLogEntry.PARAM_ERROR_LOCATION, 15, 14),
  B(ErrorLogEntry, ErrorLogEntry.LBA, 23, 16),
  B(ErrorLogEntry, ErrorLogEntry.NSID, 27, 24),
  B(ErrorLogEntry, ErrorLogEntry.VS, 28),
  B(ErrorLogEntry, ErrorLogEntry.TRTYPE, 29),
  B(ErrorLogEntry, ErrorLogEntry.CSI, 39, 32),
  B(ErrorLogEntry, ErrorLogEntry.TRTYPE_SPECIFIC, 41, 40),

  // 5.14.1.2 SMART / Health Information.
  B(SmartLog, SmartLog.CRITICAL_WARNING, 0),
  B(SmartLog, SmartLog.COMPOSITE_TEMPERATURE, 2, 1),
  B(SmartLog, SmartLog.AVAILABLE_SPARE, 3),
  B(SmartLog, SmartLog.AVAILABLE_SPARE_THRESHOLD, 4),
  B(SmartLog, SmartLog.PERCENTAGE_USED, 5),
  B(SmartLog, SmartLog.ENDURANCE_GROUP_CRITICAL_WARNING, 6),
  B(SmartLog, SmartLog.DATA_UNITS_READ, 47, 32),
  B(SmartLog, SmartLog.DATA_UNITS_WRITTEN, 63, 48),
  B(SmartLog, SmartLog.HOST_READ_COMMANDS, 79, 64),
  B(SmartLog, SmartLog.HOST_WRITE_COMMANDS, 95, 80),
  B(SmartLog, SmartLog.CONTROLLER_BUSY_TIME, 111, 96),
  B(SmartLog, SmartLog.POWER_CYCLES, 127, 112),
  B(SmartLog, SmartLog.POWER_ON_HOURS, 143, 128),
  B(SmartLog, SmartLog.UNSAFE_SHUTDOWNS, 159, 144),
  B(SmartLog, SmartLog.MEDIA_ERRORS, 175, 160),
  B(SmartLog, SmartLog.NUM_ERROR_LOG_ENTRIES, 191, 176),
  B(SmartLog, SmartLog.WARNING_TEMP_TIME, 195, 192),
  B(SmartLog, SmartLog.CRITICAL_TEMP_TIME, 199, 196),
  B(SmartLog, SmartLog.TEMP_SENSOR_1, 201, 200),

  // 5.14.1.5 Commands Supported and Effects: ACS0 at 3:0, IOCS0 at 1027:1024.
  B(CommandsEffectsLog, CommandsEffectsLog.ACS0, 3, 0),
  B(CommandsEffectsLog, CommandsEffectsLog.IOCS0, 1027, 1024),

  // 5.2 Asynchronous Event Request completion queue entry DW0.
  d(AsyncEventDw0, AsyncEventDw0.TYPE, 2, 0),
  d(AsyncEventDw0, AsyncEventDw0.INFO, 15, 8),
  d(AsyncEventDw0, AsyncEventDw0.LID, 23, 16),

  // 5.3 Create I/O Completion Queue CDW10 / CDW11.
  d(CreateCqCdw10, CreateCqCdw10.QID, 15, 0),
  d(CreateCqCdw10, CreateCqCdw10.QSIZE, 31, 16),
  d(CreateCqCdw11, CreateCqCdw11.PC, 0),
  d(CreateCqCdw11, CreateCqCdw11.IEN, 1),
  d(CreateCqCdw11, CreateCqCdw11.IV, 31, 16),
  // 5.4 Create I/O Submission Queue CDW10 / CDW11.
  d(CreateSqCdw10, CreateSqCdw10.QID, 15, 0),
  d(CreateSqCdw10, CreateSqCdw10.QSIZE, 31, 16),
  d(CreateSqCdw11, CreateSqCdw11.PC, 0),
  d(CreateSqCdw11, CreateSqCdw11.QPRIO, 2, 1),
  d(CreateSqCdw11, CreateSqCdw11.CQID, 31, 16),
  // 5.5 / 5.6 Delete I/O CQ / SQ CDW10.
  d(DeleteQueueCdw10, DeleteQueueCdw10.QID, 15, 0),
  // 5.1 Abort CDW10.
  d(AbortCdw10, AbortCdw10.SQID, 15, 0),
  d(AbortCdw10, AbortCdw10.CID, 31, 16),

  // 6.9 Read / 6.15 Write / 6.16 Write Zeroes CDW12.
  d(RwCdw12, RwCdw12.NLB, 15, 0),
  d(RwCdw12, RwCdw12.DTYPE, 23, 20),
  d(RwCdw12, RwCdw12.DEAC, 25),
  d(RwCdw12, RwCdw12.PRINFO, 29, 26),
  d(RwCdw12, RwCdw12.FUA, 30),
  d(RwCdw12, RwCdw12.LR, 31),

  // 6.7 Dataset Management CDW10 / CDW11 and Range (Figure 366).
  d(DsmCdw10, DsmCdw10.NR, 7, 0),
  d(DsmCdw11, DsmCdw11.IDR, 0),
  d(DsmCdw11, DsmCdw11.IDW, 1),
  d(DsmCdw11, DsmCdw11.AD, 2),
  B(DsmRange, DsmRange.CONTEXT_ATTRIBUTES, 3, 0),
  B(DsmRange, DsmRange.NLB, 7, 4),
  B(DsmRange, DsmRange.SLBA, 15, 8),

  // NVMe/TCP transport (TCP Transport Specification 1.0; NVMe-oF 1.1 section 7.4), PDU formats.
  // Common header: byte 0 PDU-TYPE, byte 1 FLAGS, byte 2 HLEN, byte 3 PDO, bytes 7:4 PLEN.
  B(TcpCommonHeader, TcpCommonHeader.PDU_TYPE, 0),
  B(TcpCommonHeader, TcpCommonHeader.FLAGS, 1),
  b(TcpCommonHeader, TcpCommonHeader.HDGSTF, 1, 1, 0),
  b(TcpCommonHeader, TcpCommonHeader.DDGSTF, 1, 1, 1),
  b(TcpCommonHeader, TcpCommonHeader.LAST_PDU, 1, 1, 2),
  b(TcpCommonHeader, TcpCommonHeader.SUCCESS, 1, 1, 3),
  B(TcpCommonHeader, TcpCommonHeader.HLEN, 2),
  B(TcpCommonHeader, TcpCommonHeader.PDO, 3),
  B(TcpCommonHeader, TcpCommonHeader.PLEN, 7, 4),
  // ICReq: CH 7:0, PFV 9:8, HPDA 10, DGST 11 (bit 0 HDGST_ENABLE, bit 1 DDGST_ENABLE), MAXR2T 15:12, reserved 127:16.
  B(IcReqPdu, IcReqPdu.CH, 7, 0),
  B(IcReqPdu, IcReqPdu.PFV, 9, 8),
  B(IcReqPdu, IcReqPdu.HPDA, 10),
  B(IcReqPdu, IcReqPdu.DGST, 11),
  b(IcReqPdu, IcReqPdu.HDGST_ENABLE, 11, 1, 0),
  b(IcReqPdu, IcReqPdu.DDGST_ENABLE, 11, 1, 1),
  B(IcReqPdu, IcReqPdu.MAXR2T, 15, 12),
  // ICResp: CH 7:0, PFV 9:8, CPDA 10, DGST 11, MAXH2CDATA 15:12, reserved 127:16.
  B(IcRespPdu, IcRespPdu.CH, 7, 0),
  B(IcRespPdu, IcRespPdu.PFV, 9, 8),
  B(IcRespPdu, IcRespPdu.CPDA, 10),
  B(IcRespPdu, IcRespPdu.DGST, 11),
  b(IcRespPdu, IcRespPdu.HDGST_ENABLE, 11, 1, 0),
  b(IcRespPdu, IcRespPdu.DDGST_ENABLE, 11, 1, 1),
  B(IcRespPdu, IcRespPdu.MAXH2CDATA, 15, 12),
  // H2CTermReq / C2HTermReq: CH 7:0, FES 9:8, FEI 13:10, reserved 23:14.
  B(TermReqPdu, TermReqPdu.CH, 7, 0),
  B(TermReqPdu, TermReqPdu.FES, 9, 8),
  B(TermReqPdu, TermReqPdu.FEI, 13, 10),
  // CapsuleCmd: CH 7:0, SQE 71:8.
  B(CapsuleCmdPdu, CapsuleCmdPdu.CH, 7, 0),
  B(CapsuleCmdPdu, CapsuleCmdPdu.SQE, 71, 8),
  // CapsuleResp: CH 7:0, CQE 23:8.
  B(CapsuleRespPdu, CapsuleRespPdu.CH, 7, 0),
  B(CapsuleRespPdu, CapsuleRespPdu.CQE, 23, 8),
  // H2CData: CH 7:0, CCCID 9:8, TTAG 11:10, DATAO 15:12, DATAL 19:16, reserved 23:20.
  B(H2CDataPdu, H2CDataPdu.CH, 7, 0),
  B(H2CDataPdu, H2CDataPdu.CCCID, 9, 8),
  B(H2CDataPdu, H2CDataPdu.TTAG, 11, 10),
  B(H2CDataPdu, H2CDataPdu.DATAO, 15, 12),
  B(H2CDataPdu, H2CDataPdu.DATAL, 19, 16),
  // C2HData: CH 7:0, CCCID 9:8, reserved 11:10, DATAO 15:12, DATAL 19:16, reserved 23:20.
  B(C2HDataPdu, C2HDataPdu.CH, 7, 0),
  B(C2HDataPdu, C2HDataPdu.CCCID, 9, 8),
  B(C2HDataPdu, C2HDataPdu.DATAO, 15, 12),
  B(C2HDataPdu, C2HDataPdu.DATAL, 19, 16),
  // R2T: CH 7:0, CCCID 9:8, TTAG 11:10, R2TO 15:12, R2TL 19:16, reserved 23:20.
  B(R2TPdu, R2TPdu.CH, 7, 0),
  B(R2TPdu, R2TPdu.CCCID, 9, 8),
  B(R2TPdu, R2TPdu.TTAG, 11, 10),
  B(R2TPdu, R2TPdu.R2TO, 15, 12),
  B(R2TPdu, R2TPdu.R2TL, 19, 16),
  // 5.15.2.3 Namespace Identification Descriptor (Figure 249): NIDT byte 0, NIDL byte 1, 3:2 reserved.
  B(NsIdDescriptor, NsIdDescriptor.NIDT, 0),
  B(NsIdDescriptor, NsIdDescriptor.NIDL, 1),
  // 5.21.1.19 Host Identifier, CDW11 bit 0 EXHID.
  d(HostIdentifierCdw11, HostIdentifierCdw11.EXHID, 0),

  // NVMe over Fabrics 1.1, Fabrics command capsule: OPC 00, CID 03:02, FCTYPE 04, SGL1 39:24.
  B(FabricsSqe, FabricsSqe.OPC, 0),
  b(FabricsSqe, FabricsSqe.PSDT, 1, 1, 7, 6),
  B(FabricsSqe, FabricsSqe.CID, 3, 2),
  B(FabricsSqe, FabricsSqe.FCTYPE, 4),
  B(FabricsSqe, FabricsSqe.SGL1, 39, 24),
  // Connect command.
  B(ConnectSqe, ConnectSqe.RECFMT, 41, 40),
  B(ConnectSqe, ConnectSqe.QID, 43, 42),
  B(ConnectSqe, ConnectSqe.SQSIZE, 45, 44),
  B(ConnectSqe, ConnectSqe.CATTR, 46),
  B(ConnectSqe, ConnectSqe.KATO, 51, 48),
  // CATTR: bits 1:0 priority class, bit 2 disable SQ flow control.
  b(ConnectCattr, ConnectCattr.PRIORITY_CLASS, 0, 1, 1, 0),
  b(ConnectCattr, ConnectCattr.SQFC_DISABLE, 0, 1, 2),
  // Connect data.
  B(ConnectData, ConnectData.HOSTID, 15, 0),
  B(ConnectData, ConnectData.CNTLID, 17, 16),
  B(ConnectData, ConnectData.SUBNQN, 511, 256),
  B(ConnectData, ConnectData.HOSTNQN, 767, 512),
  // Connect response DW0, success and Connect Invalid Parameters.
  d(ConnectResponseDw0, ConnectResponseDw0.CNTLID, 15, 0),
  d(ConnectResponseDw0, ConnectResponseDw0.AUTHREQ, 31, 16),
  d(ConnectInvalidDw0, ConnectInvalidDw0.IPO, 15, 0),
  d(ConnectInvalidDw0, ConnectInvalidDw0.IATTR, 23, 16),
  // Property Get / Set: ATTRIB 40, OFST 47:44, VALUE 55:48.
  B(PropertySqe, PropertySqe.ATTRIB, 40),
  B(PropertySqe, PropertySqe.OFST, 47, 44),
  B(PropertySqe, PropertySqe.VALUE, 55, 48),
  b(PropertyAttrib, PropertyAttrib.SIZE, 0, 1, 2, 0),
  // Disconnect: RECFMT 41:40.
  B(DisconnectSqe, DisconnectSqe.RECFMT, 41, 40),
  // NVMe 1.4 section 4.4: SGL descriptor; SGL Identifier byte 15, type 7:4, subtype 3:0.
  B(SglDescriptor, SglDescriptor.ADDRESS, 7, 0),
  B(SglDescriptor, SglDescriptor.LENGTH, 11, 8),
  B(SglDescriptor, SglDescriptor.SGL_ID, 15),
  b(SglDescriptor, SglDescriptor.SUBTYPE, 15, 1, 3, 0),
  b(SglDescriptor, SglDescriptor.TYPE, 15, 1, 7, 4),
  // Fabrics 1.1 Discovery Log Page header.
  B(DiscoveryLogHeader, DiscoveryLogHeader.GENCTR, 7, 0),
  B(DiscoveryLogHeader, DiscoveryLogHeader.NUMREC, 15, 8),
  B(DiscoveryLogHeader, DiscoveryLogHeader.RECFMT, 17, 16),
  // Figure 32: Discovery Log Page entry; TSAS 1023:768, whose byte 0 is the TCP SECTYPE (NVMe/TCP 1.0).
  B(DiscoveryLogEntry, DiscoveryLogEntry.TRTYPE, 0),
  B(DiscoveryLogEntry, DiscoveryLogEntry.ADRFAM, 1),
  B(DiscoveryLogEntry, DiscoveryLogEntry.SUBTYPE, 2),
  B(DiscoveryLogEntry, DiscoveryLogEntry.TREQ, 3),
  B(DiscoveryLogEntry, DiscoveryLogEntry.PORTID, 5, 4),
  B(DiscoveryLogEntry, DiscoveryLogEntry.CNTLID, 7, 6),
  B(DiscoveryLogEntry, DiscoveryLogEntry.ASQSZ, 9, 8),
  B(DiscoveryLogEntry, DiscoveryLogEntry.TRSVCID, 63, 32),
  B(DiscoveryLogEntry, DiscoveryLogEntry.SUBNQN, 511, 256),
  B(DiscoveryLogEntry, DiscoveryLogEntry.TRADDR, 767, 512),
  B(DiscoveryLogEntry, DiscoveryLogEntry.TSAS, 1023, 768),
  B(DiscoveryLogEntry, DiscoveryLogEntry.TSAS_SECTYPE, 768),
];

function regValue(bytes: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

function label(r: Row): string {
  return r.kind === 'bytes' ? `${r.s.$name}.${r.f.name} = bytes ${r.hi}:${r.lo}` : `${r.s.$name}.${r.f.name} = bits ${r.hi}:${r.lo} of the ${r.regBytes * 8}-bit word at byte ${r.reg}`;
}

/** A value with bits set in every byte lane, distinct per byte, truncated to `width` bits. */
function pattern(width: number): bigint {
  let v = 0n;
  for (let i = 0; i < Math.ceil(width / 8); i++) v |= BigInt(0x81 + 0x13 * i) << BigInt(8 * i);
  return v & ((1n << BigInt(width)) - 1n);
}

describe('field positions match the NVMe 1.4 specification', () => {
  it('the table covers every field of every exported structure', () => {
    const covered = new Set(ROWS.map((r) => r.f));
    const missing: string[] = [];
    for (const [, s] of exportedStructs) for (const f of s.$fields) if (!covered.has(f)) missing.push(`${s.$name}.${f.name}`);
    expect(missing).toEqual([]);
  });

  for (const r of ROWS) {
    if (r.kind === 'bytes') {
      it(label(r), () => {
        expect(r.f.bits, 'a whole field, not a bit field').toBe(0);
        expect(r.f.offset).toBe(r.lo);
        expect(r.f.size).toBe(r.hi - r.lo + 1);
        // Numbers of 1, 2, 4 and 8 bytes are written little endian in exactly those bytes.
        if ([1, 2, 4, 8].includes(r.f.size)) {
          const buf = new Uint8Array(r.s.$size);
          const dv = new DataView(buf.buffer);
          const width = r.f.size * 8;
          const v = r.f.size === 8 ? pattern(48) : pattern(width);
          writeField(dv, 0, r.f, Number(v));
          expect(regValue(buf, r.lo, r.hi - r.lo + 1)).toBe(v);
          expect(buf.reduce((n, x) => n + x, 0)).toBe(buf.subarray(r.lo, r.hi + 1).reduce((n, x) => n + x, 0));
          expect(readField(dv, 0, r.f)).toBe(Number(v));
        }
      });
    } else {
      it(label(r), () => {
        const width = r.hi - r.lo + 1;
        const ones = (1n << BigInt(width)) - 1n;
        const mask = ones << BigInt(r.lo);
        const allRegBits = (1n << BigInt(r.regBytes * 8)) - 1n;

        // all ones into zeroes: exactly the spec's bits, nothing outside the register.
        const buf = new Uint8Array(r.s.$size);
        const dv = new DataView(buf.buffer);
        writeField(dv, 0, r.f, Number(ones));
        expect(regValue(buf, r.reg, r.regBytes)).toBe(mask);
        const outside = [...buf.subarray(0, r.reg), ...buf.subarray(r.reg + r.regBytes)];
        expect(outside.every((x) => x === 0)).toBe(true);
        expect(readField(dv, 0, r.f)).toBe(Number(ones));

        // all zeroes into ones: exactly the spec's bits cleared.
        buf.fill(0xff);
        writeField(dv, 0, r.f, 0);
        expect(regValue(buf, r.reg, r.regBytes)).toBe(allRegBits ^ mask);
        expect(readField(dv, 0, r.f)).toBe(0);

        // a non-uniform value lands in bit order.
        buf.fill(0);
        const p = pattern(width);
        writeField(dv, 0, r.f, Number(p));
        expect(regValue(buf, r.reg, r.regBytes)).toBe(p << BigInt(r.lo));
        expect(readField(dv, 0, r.f)).toBe(Number(p));
      });
    }
  }
});
