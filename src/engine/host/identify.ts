/**
 * Parsing what the controller reports: Identify data, SMART / Health and
 * Error Information log pages.
 */
import { IdCtrl, IdNs, LbaFormat, LBAF_ENTRY_SIZE } from '../spec/identify.js';
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
