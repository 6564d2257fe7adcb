/**
 * What the admin command set keeps between commands, in the admin queue's
 * thread: feature values, the granted number of queues, and asynchronous
 * events (held requests, events waiting for one, masked types). A controller
 * reset returns all of it to its defaults.
 */
import type { Request } from './queues.js';
import { AsyncEventType, AsyncSmartInfo, CriticalWarning } from '../spec/log-pages.js';

export interface FeatureValues {
  arbitration: number;
  /** Over / under thresholds (Kelvin) of the composite sensor and sensor 1: [sensor * 2 + THSEL]. */
  temperatureThresholds: number[];
  /** SMART Critical Warning bit 1 as of the last Set Features, so the event is raised once per crossing. */
  temperatureWarning: boolean;
  volatileWriteCache: number;
  asyncEventConfig: number;
  /** Number of Queues as returned in DW0: NCQA << 16 | NSQA, 0's based. */
  numberOfQueues: number;
}

/** Composite over threshold = WCTEMP (343 K, 70 °C), sensor over = FFFFh, under thresholds 0 (5.21.1.4). */
export function defaultTemperatureThresholds(): number[] {
  return [343, 0, 0xffff, 0];
}

/** Number of Queues DW0 (0's based NCQA << 16 | NSQA) granting `n` of each. */
export function numberOfQueuesValue(n: number): number {
  return (((n - 1) << 16) | (n - 1)) >>> 0;
}

function defaultFeatures(maxIoQueues: number): FeatureValues {
  return {
    arbitration: 0,
    temperatureThresholds: defaultTemperatureThresholds(),
    temperatureWarning: false,
    volatileWriteCache: 1,
    asyncEventConfig: 0,
    numberOfQueues: numberOfQueuesValue(maxIoQueues),
  };
}

/** An asynchronous event's completion DW0: type (2:0), information (15:8), log page (23:16). */
export function eventWord(type: number, info: number, lid: number): number {
  return (type & 0x7) | ((info & 0xff) << 8) | ((lid & 0xff) << 16);
}

/**
 * Whether Asynchronous Event Configuration `config` lets an event (its
 * completion DW0) be sent: a SMART / Health event only when one of the
 * Critical Warning bits it reports is enabled (5.21.1.11); other types
 * always (no notice is supported, and error events cannot be disabled).
 */
export function eventEnabled(config: number, dw0: number): boolean {
  if ((dw0 & 0x7) !== AsyncEventType.SMART_HEALTH) return true;
  switch ((dw0 >>> 8) & 0xff) {
    case AsyncSmartInfo.RELIABILITY:
      return (config & (CriticalWarning.RELIABILITY_DEGRADED | CriticalWarning.READ_ONLY | CriticalWarning.VOLATILE_BACKUP_FAILED)) !== 0;
    case AsyncSmartInfo.TEMPERATURE_THRESHOLD:
      return (config & CriticalWarning.TEMPERATURE) !== 0;
    case AsyncSmartInfo.SPARE_BELOW_THRESHOLD:
      return (config & CriticalWarning.SPARE_BELOW_THRESHOLD) !== 0;
    default:
      return false;
  }
}

/** Asynchronous events (5.2): Asynchronous Event Requests held until an event completes one. */
export class AsyncEvents {
  /** Held Asynchronous Event Requests, oldest first. */
  readonly waiting: Request[] = [];
  /** Events (completion DW0) waiting for a request. */
  private readonly pending: number[] = [];
  /** Event types reported and not yet cleared by reading their log page. */
  private readonly masked = new Set<number>();

  /** Whether an event may be sent (Asynchronous Event Configuration); one it refuses is dropped. AdminState sets it. */
  enabled: (dw0: number) => boolean = () => true;

  /** `post` completes a held request; `epoch` says which reset a request belongs to. */
  constructor(
    private readonly post: (req: Request, status: number) => void,
    private readonly epoch: () => number,
  ) {}

  /** Queues an event and completes a held request with it when one is outstanding. */
  raise(type: number, info: number, lid: number): void {
    this.raiseWord(eventWord(type, info, lid));
  }

  /** The same, given the completion DW0. */
  raiseWord(dw0: number): void {
    if (!this.enabled(dw0)) return;
    // The same event twice before a request takes it is one event: a host that keeps writing bad
    // doorbells cannot grow the list (it holds at most one entry per distinct event).
    if (!this.pending.includes(dw0)) this.pending.push(dw0);
    this.deliver();
  }

  /** Holds an Asynchronous Event Request until an event is there for it. */
  hold(req: Request): void {
    this.waiting.push(req);
    this.deliver();
  }

  /** Reading a log page with RAE clear unmasks its event type (5.14.1). */
  unmask(type: number): void {
    if (this.masked.delete(type)) this.deliver();
  }

  private deliver(): void {
    while (this.waiting.length > 0) {
      const i = this.pending.findIndex((dw0) => !this.masked.has(dw0 & 0x7));
      if (i < 0) return;
      const dw0 = this.pending.splice(i, 1)[0]!;
      // An event type stays masked until the host reads its log page (5.2).
      this.masked.add(dw0 & 0x7);
      const req = this.waiting.shift()!;
      req.dw0 = dw0;
      if (req.epoch === this.epoch()) this.post(req, 0);
    }
  }

  clear(): void {
    this.waiting.length = 0;
    this.pending.length = 0;
    this.masked.clear();
  }
}

export class AdminState {
  readonly features: FeatureValues;
  /** Number of Queues granted (1's based counts). */
  grantedSqs: number;
  grantedCqs: number;
  /** Set once an I/O queue exists; Number of Queues may not change after that. */
  ioQueuesCreated = false;

  constructor(
    readonly maxIoQueues: number,
    readonly events: AsyncEvents,
  ) {
    this.features = defaultFeatures(maxIoQueues);
    this.grantedSqs = maxIoQueues;
    this.grantedCqs = maxIoQueues;
    events.enabled = (dw0) => eventEnabled(this.features.asyncEventConfig, dw0);
  }

  /** Controller reset: features to their defaults, all queues grantable again, events gone. */
  reset(): void {
    Object.assign(this.features, defaultFeatures(this.maxIoQueues));
    this.grantedSqs = this.maxIoQueues;
    this.grantedCqs = this.maxIoQueues;
    this.ioQueuesCreated = false;
    this.events.clear();
  }
}
