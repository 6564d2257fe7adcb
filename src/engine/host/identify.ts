/**
 * Parsing what the controller reports: Identify data, SMART / Health and
 * Error Information log pages.
 */
import { IdCtrl, IdNs, LbaFormat, LBAF_ENTRY_SIZE, MAX_LBA_FORMATS } from '../spec/identify.js';
import { ErrorLogEntry, ERROR_LOG_ENTRY_SIZE, SmartLog } from '../spec/log-pages.js';
import { readAscii, readField, readU128 } from '../spec/layout.js';
import { pageSizeOf } from '../spec/registers.js';

export interface ControllerInfo {
  vid: number;
  ssvid: number;
  serial: string;
  model: string;
  firmware: string;
  /** Version as "1.4.0". */
  version: string;
  cntlid: number;
  mdts: number;
  /** MDTS in bytes, Infinity when unlimited. */
  maxTransferBytes: number;
  /** Largest NSID (NN). */
  nn: number;
  oncs: number;
  vwc: number;
  sqes: number;
  cqes: number;
  aerl: number;
  acl: number;
  elpe: number;
  lpa: number;
  maxcmd: number;
  subnqn: string;
  /** VER as reported (MJR << 16 | MNR << 8 | TER). */
  ver: number;
  rab: number;
  /** IEEE OUI, as nvme id-ctrl prints it (hex, most significant byte first). */
  ieee: string;
  cmic: number;
  oaes: number;
  ctratt: number;
  cntrltype: number;
  oacs: number;
  frmw: number;
  npss: number;
  wctemp: number;
  cctemp: number;
  fna: number;
  awun: number;
  awupf: number;
  sgls: number;
}

export function parseIdentifyController(data: Uint8Array, mpsMin: number): ControllerInfo {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const ver = readField(dv, 0, IdCtrl.VER);
  const mdts = readField(dv, 0, IdCtrl.MDTS);
  return {
    vid: readField(dv, 0, IdCtrl.VID),
    ssvid: readField(dv, 0, IdCtrl.SSVID),
    serial: readAscii(dv, 0, IdCtrl.SN),
    model: readAscii(dv, 0, IdCtrl.MN),
    firmware: readAscii(dv, 0, IdCtrl.FR),
    version: `${ver >>> 16}.${(ver >>> 8) & 0xff}.${ver & 0xff}`,
    cntlid: readField(dv, 0, IdCtrl.CNTLID),
    mdts,
    maxTransferBytes: mdts === 0 ? Infinity : 2 ** mdts * pageSizeOf(mpsMin),
    nn: readField(dv, 0, IdCtrl.NN),
    oncs: readField(dv, 0, IdCtrl.ONCS),
    vwc: readField(dv, 0, IdCtrl.VWC),
    sqes: readField(dv, 0, IdCtrl.SQES),
    cqes: readField(dv, 0, IdCtrl.CQES),
    aerl: readField(dv, 0, IdCtrl.AERL),
    acl: readField(dv, 0, IdCtrl.ACL),
    elpe: readField(dv, 0, IdCtrl.ELPE),
    lpa: readField(dv, 0, IdCtrl.LPA),
    maxcmd: readField(dv, 0, IdCtrl.MAXCMD),
    subnqn: readAscii(dv, 0, IdCtrl.SUBNQN).replace(/\0.*$/, ''),
    ver,
    rab: readField(dv, 0, IdCtrl.RAB),
    ieee: hex(data.slice(IdCtrl.IEEE.offset, IdCtrl.IEEE.offset + IdCtrl.IEEE.size).reverse()),
    cmic: readField(dv, 0, IdCtrl.CMIC),
    oaes: readField(dv, 0, IdCtrl.OAES),
    ctratt: readField(dv, 0, IdCtrl.CTRATT),
    cntrltype: readField(dv, 0, IdCtrl.CNTRLTYPE),
    oacs: readField(dv, 0, IdCtrl.OACS),
    frmw: readField(dv, 0, IdCtrl.FRMW),
    npss: readField(dv, 0, IdCtrl.NPSS),
    wctemp: readField(dv, 0, IdCtrl.WCTEMP),
    cctemp: readField(dv, 0, IdCtrl.CCTEMP),
    fna: readField(dv, 0, IdCtrl.FNA),
    awun: readField(dv, 0, IdCtrl.AWUN),
    awupf: readField(dv, 0, IdCtrl.AWUPF),
    sgls: readField(dv, 0, IdCtrl.SGLS),
  };
}

export interface NamespaceInfo {
  nsid: number;
  /** NSZE, in logical blocks. */
  blocks: number;
  ncap: number;
  nuse: number;
  lbaSize: number;
  flbas: number;
  nlbaf: number;
  dlfeat: number;
  eui64: string;
  nguid: string;
  nsfeat: number;
  mc: number;
  dpc: number;
  dps: number;
  nmic: number;
  /** LBA formats 0..NLBAF: metadata size, LBA data size (log2) and relative performance. */
  lbaFormats: Array<{ ms: number; lbads: number; rp: number }>;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function parseIdentifyNamespace(nsid: number, data: Uint8Array): NamespaceInfo {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const flbas = readField(dv, 0, IdNs.FLBAS);
  const fmt = IdNs.LBAF0.offset + (flbas & 0xf) * LBAF_ENTRY_SIZE;
  return {
    nsid,
    blocks: readField(dv, 0, IdNs.NSZE),
    ncap: readField(dv, 0, IdNs.NCAP),
    nuse: readField(dv, 0, IdNs.NUSE),
    lbaSize: 2 ** readField(dv, fmt, LbaFormat.LBADS),
    flbas,
    nlbaf: readField(dv, 0, IdNs.NLBAF),
    dlfeat: readField(dv, 0, IdNs.DLFEAT),
    eui64: hex(data.subarray(IdNs.EUI64.offset, IdNs.EUI64.offset + IdNs.EUI64.size)),
    nguid: hex(data.subarray(IdNs.NGUID.offset, IdNs.NGUID.offset + IdNs.NGUID.size)),
    nsfeat: readField(dv, 0, IdNs.NSFEAT),
    mc: readField(dv, 0, IdNs.MC),
    dpc: readField(dv, 0, IdNs.DPC),
    dps: readField(dv, 0, IdNs.DPS),
    nmic: readField(dv, 0, IdNs.NMIC),
    lbaFormats: Array.from({ length: Math.min(readField(dv, 0, IdNs.NLBAF), MAX_LBA_FORMATS - 1) + 1 }, (_, i) => {
      const at = IdNs.LBAF0.offset + i * LBAF_ENTRY_SIZE;
      return { ms: readField(dv, at, LbaFormat.MS), lbads: readField(dv, at, LbaFormat.LBADS), rp: readField(dv, at, LbaFormat.RP) };
    }),
  };
}

export interface SmartHealth {
  criticalWarning: number;
  temperatureKelvin: number;
  availableSpare: number;
  availableSpareThreshold: number;
  percentageUsed: number;
  dataUnitsRead: number;
  dataUnitsWritten: number;
  hostReadCommands: number;
  hostWriteCommands: number;
  controllerBusyTimeMinutes: number;
  powerCycles: number;
  powerOnHours: number;
  unsafeShutdowns: number;
  mediaErrors: number;
  errorLogEntries: number;
}

export function parseSmartLog(data: Uint8Array): SmartHealth {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const u128 = (f: typeof SmartLog.DATA_UNITS_READ): number => readU128(dv, f.offset);
  return {
    criticalWarning: readField(dv, 0, SmartLog.CRITICAL_WARNING),
    temperatureKelvin: readField(dv, 0, SmartLog.COMPOSITE_TEMPERATURE),
    availableSpare: readField(dv, 0, SmartLog.AVAILABLE_SPARE),
    availableSpareThreshold: readField(dv, 0, SmartLog.AVAILABLE_SPARE_THRESHOLD),
    percentageUsed: readField(dv, 0, SmartLog.PERCENTAGE_USED),
    dataUnitsRead: u128(SmartLog.DATA_UNITS_READ),
    dataUnitsWritten: u128(SmartLog.DATA_UNITS_WRITTEN),
    hostReadCommands: u128(SmartLog.HOST_READ_COMMANDS),
    hostWriteCommands: u128(SmartLog.HOST_WRITE_COMMANDS),
    controllerBusyTimeMinutes: u128(SmartLog.CONTROLLER_BUSY_TIME),
    powerCycles: u128(SmartLog.POWER_CYCLES),
    powerOnHours: u128(SmartLog.POWER_ON_HOURS),
    unsafeShutdowns: u128(SmartLog.UNSAFE_SHUTDOWNS),
    mediaErrors: u128(SmartLog.MEDIA_ERRORS),
    errorLogEntries: u128(SmartLog.NUM_ERROR_LOG_ENTRIES),
  };
}

export interface ErrorLogRecord {
  errorCount: number;
  sqid: number;
  cid: number;
  /** Status field without the phase tag. */
  status: number;
  paramErrorLocation: number;
  lba: number;
  nsid: number;
}

/** Entries with a non-zero error count, newest first. */
export function parseErrorLog(data: Uint8Array): ErrorLogRecord[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: ErrorLogRecord[] = [];
  for (let base = 0; base + ERROR_LOG_ENTRY_SIZE <= data.length; base += ERROR_LOG_ENTRY_SIZE) {
    const errorCount = readField(dv, base, ErrorLogEntry.ERROR_COUNT);
    if (errorCount === 0) continue;
    out.push({
      errorCount,
      sqid: readField(dv, base, ErrorLogEntry.SQID),
      cid: readField(dv, base, ErrorLogEntry.CID),
      status: readField(dv, base, ErrorLogEntry.STATUS) >>> 1,
      paramErrorLocation: readField(dv, base, ErrorLogEntry.PARAM_ERROR_LOCATION),
      lba: readField(dv, base, ErrorLogEntry.LBA),
      nsid: readField(dv, base, ErrorLogEntry.NSID),
    });
  }
  return out;
}
