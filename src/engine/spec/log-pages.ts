/**
 * Get Log Page (NVMe 1.4, section 5.14): the command's dwords and the log pages
 * this controller implements: Error Information, SMART / Health Information
 * and Commands Supported and Effects.
 */
import { struct } from './layout.js';

export const LogPageId = {
  ERROR_INFORMATION: 0x01,
  SMART_HEALTH: 0x02,
  FIRMWARE_SLOT: 0x03,
  CHANGED_NAMESPACES: 0x04,
  COMMANDS_SUPPORTED_EFFECTS: 0x05,
} as const;

/** Get Log Page CDW10 (Figure 190); NUMD = NUMDU:NUMDL, 0's based dwords. */
export const GetLogPageCdw10 = struct('GetLogPage.CDW10', 4, {
  LID: [0, 4, 0, 8],
  LSP: [0, 4, 8, 4],
  RAE: [0, 4, 15, 1],
  NUMDL: [0, 4, 16, 16],
});
export const GetLogPageCdw11 = struct('GetLogPage.CDW11', 4, {
  NUMDU: [0, 4, 0, 16],
  LSI: [0, 4, 16, 16],
});

/** Error Information log entry (Figure 194), 64 bytes each. */
export const ErrorLogEntry = struct('ErrorLogEntry', 64, {
  ERROR_COUNT: [0, 8],
  SQID: [8, 2],
  CID: [10, 2],
  /** Status field (bits 15:1) and the phase tag of the completion (bit 0). */
  STATUS: [12, 2],
  PARAM_ERROR_LOCATION: [14, 2],
  LBA: [16, 8],
  NSID: [24, 4],
  VS: [28, 1],
  TRTYPE: [29, 1],
  CSI: [32, 8],
  TRTYPE_SPECIFIC: [40, 2],
});
export const ERROR_LOG_ENTRY_SIZE = 64;

/** SMART / Health Information log (Figure 196), 512 bytes. */
export const SmartLog = struct('SmartHealthLog', 512, {
  CRITICAL_WARNING: [0, 1],
  /** Kelvin. */
  COMPOSITE_TEMPERATURE: [1, 2],
  AVAILABLE_SPARE: [3, 1],
  AVAILABLE_SPARE_THRESHOLD: [4, 1],
  PERCENTAGE_USED: [5, 1],
  ENDURANCE_GROUP_CRITICAL_WARNING: [6, 1],
  /** Thousands of 512-byte units, rounded up. */
  DATA_UNITS_READ: [32, 16],
  DATA_UNITS_WRITTEN: [48, 16],
  HOST_READ_COMMANDS: [64, 16],
  HOST_WRITE_COMMANDS: [80, 16],
  /** Minutes. */
  CONTROLLER_BUSY_TIME: [96, 16],
  POWER_CYCLES: [112, 16],
  POWER_ON_HOURS: [128, 16],
  UNSAFE_SHUTDOWNS: [144, 16],
  MEDIA_ERRORS: [160, 16],
  NUM_ERROR_LOG_ENTRIES: [176, 16],
  WARNING_TEMP_TIME: [192, 4],
  CRITICAL_TEMP_TIME: [196, 4],
  TEMP_SENSOR_1: [200, 2],
});
export const SMART_LOG_SIZE = 512;
/** SMART Critical Warning bits (Figure 196); the same bits of Asynchronous Event Configuration (Figure 305) enable their events. */
export const CriticalWarning = {
  SPARE_BELOW_THRESHOLD: 1 << 0,
  TEMPERATURE: 1 << 1,
  RELIABILITY_DEGRADED: 1 << 2,
  READ_ONLY: 1 << 3,
  VOLATILE_BACKUP_FAILED: 1 << 4,
} as const;

/** Commands Supported and Effects log (Figure 205): 256 admin then 256 I/O dwords. */
export const CommandsEffectsLog = struct('CommandsSupportedEffects', 4096, {
  ACS0: [0, 4],
  IOCS0: [1024, 4],
});
export const COMMANDS_EFFECTS_LOG_SIZE = 4096;
/** Commands Supported and Effects entry bits (Figure 206). */
export const CommandEffect = { CSUPP: 1 << 0, LBCC: 1 << 1, NCC: 1 << 2, NIC: 1 << 3, CCC: 1 << 4 } as const;

/** Asynchronous Event Request completion DW0 (Figure 146). */
export const AsyncEventDw0 = struct('AsyncEvent.DW0', 4, {
  TYPE: [0, 4, 0, 3],
  INFO: [0, 4, 8, 8],
  LID: [0, 4, 16, 8],
});
export const AsyncEventType = { ERROR: 0, SMART_HEALTH: 1, NOTICE: 2, IO_COMMAND_SET: 6, VENDOR: 7 } as const;
/** Error status event information (Figure 147). */
export const AsyncErrorInfo = {
  INVALID_DOORBELL_REGISTER: 0x00,
  INVALID_DOORBELL_VALUE: 0x01,
  DIAGNOSTIC_FAILURE: 0x02,
  PERSISTENT_INTERNAL_ERROR: 0x03,
  TRANSIENT_INTERNAL_ERROR: 0x04,
  FIRMWARE_IMAGE_LOAD_ERROR: 0x05,
} as const;
/** SMART / Health status event information (Figure 148), with the Critical Warning bits each reports. */
export const AsyncSmartInfo = {
  /** NVM subsystem reliability: Critical Warning bits 2 (reliability degraded), 3 (read only), 4 (volatile memory backup). */
  RELIABILITY: 0x00,
  TEMPERATURE_THRESHOLD: 0x01,
  SPARE_BELOW_THRESHOLD: 0x02,
} as const;
