/**
 * Set / Get Features (NVMe 1.4, section 5.21): feature identifiers and the
 * CDW10 / CDW11 layouts of the features this controller implements.
 */
import { struct } from './layout.js';

export const FeatureId = {
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
} as const;

const featureNames = new Map<number, string>([
  [0x01, 'Arbitration'],
  [0x02, 'Power Management'],
  [0x03, 'LBA Range Type'],
  [0x04, 'Temperature Threshold'],
  [0x05, 'Error Recovery'],
  [0x06, 'Volatile Write Cache'],
  [0x07, 'Number of Queues'],
  [0x08, 'Interrupt Coalescing'],
  [0x09, 'Interrupt Vector Configuration'],
  [0x0a, 'Write Atomicity Normal'],
  [0x0b, 'Asynchronous Event Configuration'],
  [0x0f, 'Keep Alive Timer'],
  [0x81, 'Host Identifier'],
]);

export function featureName(fid: number): string {
  return `${featureNames.get(fid) ?? 'Unknown feature'} (0x${fid.toString(16).padStart(2, '0')})`;
}

/** Set Features CDW10 (Figure 285) and Get Features CDW10 (Figure 269). */
export const SetFeaturesCdw10 = struct('SetFeatures.CDW10', 4, {
  FID: [0, 4, 0, 8],
  SV: [0, 4, 31, 1],
});
export const GetFeaturesCdw10 = struct('GetFeatures.CDW10', 4, {
  FID: [0, 4, 0, 8],
  SEL: [0, 4, 8, 3],
});

/** Get Features SEL values. */
export const FeatureSelect = { CURRENT: 0, DEFAULT: 1, SAVED: 2, SUPPORTED_CAPABILITIES: 3 } as const;
/** Bits of the dword returned for SEL = supported capabilities. */
export const FeatureCapability = { SAVEABLE: 1, NAMESPACE_SPECIFIC: 2, CHANGEABLE: 4 } as const;

/** Arbitration (Figure 287), in CDW11 and in the returned DW0. */
export const ArbitrationDw = struct('Arbitration', 4, {
  AB: [0, 4, 0, 3],
  LPW: [0, 4, 8, 8],
  MPW: [0, 4, 16, 8],
  HPW: [0, 4, 24, 8],
});

/** Temperature Threshold (Figure 292). */
export const TemperatureThresholdDw = struct('TemperatureThreshold', 4, {
  TMPTH: [0, 4, 0, 16],
  TMPSEL: [0, 4, 16, 4],
  THSEL: [0, 4, 20, 2],
});

/** Volatile Write Cache (Figure 297). */
export const VolatileWriteCacheDw = struct('VolatileWriteCache', 4, {
  WCE: [0, 4, 0, 1],
});

/** Number of Queues (Figures 298, 299): 0's based counts; 65535 requested is invalid. */
export const NumberOfQueuesDw = struct('NumberOfQueues', 4, {
  NSQ: [0, 4, 0, 16],
  NCQ: [0, 4, 16, 16],
});

/** Host Identifier (Figure 313): CDW11 bit 0 EXHID asks for the 128-bit identifier, the one Fabrics uses. */
export const HostIdentifierCdw11 = struct('HostIdentifier.CDW11', 4, {
  EXHID: [0, 4, 0, 1],
});
export const HOST_ID_SIZE = 16;

/** Asynchronous Event Configuration (Figure 305). */
export const AsyncEventConfigDw = struct('AsyncEventConfig', 4, {
  SMART_WARNINGS: [0, 4, 0, 8],
  NS_ATTR_NOTICES: [0, 4, 8, 1],
  FW_ACTIVATION_NOTICES: [0, 4, 9, 1],
});
