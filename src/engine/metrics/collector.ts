/**
 * The Prometheus view of an engine: prom-client metric families whose values
 * are computed when scraped, from the shared-memory I/O counters
 * (`io-metrics.ts`), the controller's SMART / Health log and the engine's
 * identity. Nothing here runs on the I/O path.
 *
 * Names follow node_exporter's diskstats (`node_disk_reads_completed_total`
 * → `nvmq_reads_completed_total`, …) and units are base units (seconds,
 * bytes). Labels are bounded: namespace (active NSIDs, "all", "other"),
 * queue (QIDs, at most the controller's I/O queues), op (six values) and
 * status (a fixed table, the host's failure reasons, and "other").
 */
import { readFileSync } from 'node:fs';
import { debuglog } from 'node:util';
import { Registry, type Metric } from 'prom-client';
import { sharedNow } from '../shared/clock.js';
import type { SmartHealth } from '../host/identify.js';
import {
  IoMetrics, OPS, ERROR_STATUS_LABELS, LATENCY_BUCKETS, bucketBoundSeconds, type OpName,
  C_COMPLETED, C_BYTES, C_TIME_MS, C_BUCKETS, C_ERRORS,
  Q_INFLIGHT, Q_WEIGHTED_MS, Q_SQ_DOORBELLS, Q_CQ_DOORBELLS, Q_POLLED, Q_INTERRUPTED, Q_SPURIOUS, Q_WAITS,
} from './io-metrics.js';

const trace = debuglog('nvmq');

export type Labels = Record<string, string>;
export interface Sample {
  labels: Labels;
  value: number;
  /** For histogram lines: the family name plus _bucket, _sum or _count. */
  metricName?: string;
}
type FamilyType = 'counter' | 'gauge' | 'histogram';

/**
 * A metric family computed at scrape time: the shape prom-client's Registry
 * asks of a metric (`name`, `help`, `type`, `get()`), with values of its own
 * (a Histogram cannot be given bucket counts it did not observe).
 */
export class ScrapedFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: FamilyType,
    private readonly collect: () => Sample[] | Promise<Sample[]>,
  ) {}

  async get(): Promise<{ name: string; help: string; type: FamilyType; aggregator: string; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: await this.collect() };
  }

  reset(): void {}
}

/** What the collectors read. */
export interface MetricsSource {
  /** The queues' I/O counters. */
  io: IoMetrics;
  /** The controller's SMART / Health log (an admin command at scrape time). */
  smartLog(): Promise<SmartHealth>;
  /** Labels of `nvmq_info`. */
  info: { version: string; backend: string; namespaces: string; model: string; serial: string; firmware: string };
  namespaces: ReadonlyArray<{ nsid: number; capacityBytes: number }>;
  /** A remote controller's connection state (an engine on an NVMe/TCP target). */
  remote?: () => { target: string; connected: boolean; disconnects: number; reconnects: number };
}

/** Per op: the diskstats-style families of its completed count, bytes and time. */
const OP_FAMILIES: ReadonlyArray<{ op: OpName; what: string; completed: string; bytes?: string; time: string }> = [
  { op: 'read', what: 'reads', completed: 'nvmq_reads_completed_total', bytes: 'nvmq_read_bytes_total', time: 'nvmq_read_time_seconds_total' },
  { op: 'write', what: 'writes', completed: 'nvmq_writes_completed_total', bytes: 'nvmq_written_bytes_total', time: 'nvmq_write_time_seconds_total' },
  { op: 'flush', what: 'flushes', completed: 'nvmq_flush_requests_total', time: 'nvmq_flush_requests_time_seconds_total' },
  { op: 'write_zeroes', what: 'write zeroes commands', completed: 'nvmq_write_zeroes_completed_total', bytes: 'nvmq_write_zeroes_bytes_total', time: 'nvmq_write_zeroes_time_seconds_total' },
  { op: 'deallocate', what: 'deallocates (Dataset Management)', completed: 'nvmq_discards_completed_total', bytes: 'nvmq_discarded_bytes_total', time: 'nvmq_discard_time_seconds_total' },
];

/** Queue-level counters: [family, help, cell, extra labels]. */
const QUEUE_COUNTERS: ReadonlyArray<readonly [string, string, number, Labels]> = [
  ['nvmq_doorbell_writes_total', 'Doorbell register writes by the host, by doorbell (SQ tail, CQ head).', Q_SQ_DOORBELLS, { doorbell: 'sq_tail' }],
  ['nvmq_doorbell_writes_total', '', Q_CQ_DOORBELLS, { doorbell: 'cq_head' }],
  ['nvmq_completions_reaped_total', 'Completion queue entries the host found, by how: polling (right after a doorbell write, or in poll() / wait()), or the interrupt handler.', Q_POLLED, { by: 'poll' }],
  ['nvmq_completions_reaped_total', '', Q_INTERRUPTED, { by: 'interrupt' }],
  ['nvmq_spurious_completions_total', 'Completion queue entries for a command ID that was not outstanding (the controller broke the spec).', Q_SPURIOUS, {}],
  ['nvmq_request_waits_total', 'Submissions that found every request slot of the queue in use and waited for one.', Q_WAITS, {}],
];

const SMART_FAMILIES: ReadonlyArray<readonly [string, string, FamilyType, (s: SmartHealth) => number]> = [
  ['nvmq_smart_critical_warning', 'SMART Critical Warning bits (0 = none).', 'gauge', (s) => s.criticalWarning],
  ['nvmq_smart_temperature_celsius', 'SMART Composite Temperature.', 'gauge', (s) => s.temperatureKelvin - 273],
  ['nvmq_smart_available_spare_ratio', 'SMART Available Spare, as a fraction.', 'gauge', (s) => s.availableSpare / 100],
  ['nvmq_smart_available_spare_threshold_ratio', 'SMART Available Spare Threshold, as a fraction.', 'gauge', (s) => s.availableSpareThreshold / 100],
  ['nvmq_smart_percentage_used_ratio', 'SMART Percentage Used, as a fraction (may exceed 1).', 'gauge', (s) => s.percentageUsed / 100],
  ['nvmq_smart_data_units_read_total', 'SMART Data Units Read: thousands of 512-byte units, rounded up.', 'counter', (s) => s.dataUnitsRead],
  ['nvmq_smart_data_units_written_total', 'SMART Data Units Written: thousands of 512-byte units, rounded up.', 'counter', (s) => s.dataUnitsWritten],
  ['nvmq_smart_host_read_commands_total', 'SMART Host Read Commands completed.', 'counter', (s) => s.hostReadCommands],
  ['nvmq_smart_host_write_commands_total', 'SMART Host Write Commands completed.', 'counter', (s) => s.hostWriteCommands],
  ['nvmq_smart_controller_busy_time_seconds_total', 'SMART Controller Busy Time (reported in whole minutes).', 'counter', (s) => s.controllerBusyTimeMinutes * 60],
  ['nvmq_smart_power_cycles_total', 'SMART Power Cycles.', 'counter', (s) => s.powerCycles],
  ['nvmq_smart_power_on_seconds_total', 'SMART Power On Hours, in seconds (whole hours).', 'counter', (s) => s.powerOnHours * 3600],
  ['nvmq_smart_unsafe_shutdowns_total', 'SMART Unsafe Shutdowns.', 'counter', (s) => s.unsafeShutdowns],
  ['nvmq_smart_media_errors_total', 'SMART Media and Data Integrity Errors.', 'counter', (s) => s.mediaErrors],
  ['nvmq_smart_error_log_entries_total', 'SMART Number of Error Information Log Entries.', 'counter', (s) => s.errorLogEntries],
];

/** The `le` label of finite bucket k. */
const BUCKET_LABELS = Array.from({ length: LATENCY_BUCKETS }, (_, k) => String(bucketBoundSeconds(k)));

/** nvmq's own version, from its package.json (src/ and dist/ sit at the same depth). */
export function nvmqVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** A private registry holding every nvmq family, computed from `src` at each scrape. */
export function createMetricsRegistry(src: MetricsSource): Registry {
  const registry = new Registry();
  const io = src.io;
  const add = (name: string, help: string, type: FamilyType, collect: () => Sample[] | Promise<Sample[]>): void => {
    registry.registerMetric(new ScrapedFamily(name, help, type, collect) as unknown as Metric);
  };

  /**
   * Calls `fn` for every (queue, namespace slot) a pair was created on: the
   * active namespaces always, "all" and "other" once they have counted
   * something (they are rare).
   */
  const eachQueueNamespace = (fn: (qid: number, ns: number, labels: Labels) => void): void => {
    const active = io.namespaceLabels.length - 2;
    for (const qid of io.openedQueues()) {
      for (let ns = 0; ns < io.namespaceLabels.length; ns++) {
        if (ns >= active && !touched(qid, ns)) continue;
        fn(qid, ns, { namespace: io.namespaceLabels[ns]!, queue: String(qid) });
      }
    }
  };
  const touched = (qid: number, ns: number): boolean => {
    for (let op = 0; op < OPS.length; op++) {
      if (io.opCell(qid, ns, op, C_COMPLETED) > 0) return true;
      for (let e = 0; e < ERROR_STATUS_LABELS.length; e++) if (io.opCell(qid, ns, op, C_ERRORS + e) > 0) return true;
    }
    return false;
  };
  const perOp = (op: number, cell: number, scale: number) => (): Sample[] => {
    const out: Sample[] = [];
    eachQueueNamespace((qid, ns, labels) => out.push({ labels, value: io.opCell(qid, ns, op, cell) * scale }));
    return out;
  };

  for (const f of OP_FAMILIES) {
    const op = OPS.indexOf(f.op);
    add(f.completed, `Successfully completed ${f.what}.`, 'counter', perOp(op, C_COMPLETED, 1));
    if (f.bytes) add(f.bytes, `Bytes addressed by successfully completed ${f.what}.`, 'counter', perOp(op, C_BYTES, 1));
    add(f.time, `Seconds spent by successfully completed ${f.what}, submission to completion as the host saw it.`, 'counter', perOp(op, C_TIME_MS, 1e-3));
  }

  add('nvmq_io_latency_seconds', 'Latency of successfully completed I/O commands, submission to completion as the host saw it, by op.', 'histogram', () => {
    const out: Sample[] = [];
    eachQueueNamespace((qid, ns, base) => {
      for (let op = 0; op < OPS.length; op++) {
        if (io.opCell(qid, ns, op, C_COMPLETED) === 0) continue;
        const labels = { ...base, op: OPS[op]! };
        let cumulative = 0;
        for (let k = 0; k < LATENCY_BUCKETS; k++) {
          cumulative += io.opCell(qid, ns, op, C_BUCKETS + k);
          out.push({ labels: { ...labels, le: BUCKET_LABELS[k]! }, value: cumulative, metricName: 'nvmq_io_latency_seconds_bucket' });
        }
        // _count from the buckets themselves, so it always equals the +Inf bucket.
        cumulative += io.opCell(qid, ns, op, C_BUCKETS + LATENCY_BUCKETS);
        out.push({ labels: { ...labels, le: '+Inf' }, value: cumulative, metricName: 'nvmq_io_latency_seconds_bucket' });
        out.push({ labels, value: io.opCell(qid, ns, op, C_TIME_MS) / 1000, metricName: 'nvmq_io_latency_seconds_sum' });
        out.push({ labels, value: cumulative, metricName: 'nvmq_io_latency_seconds_count' });
      }
    });
    return out;
  });

  add('nvmq_io_errors_total', 'I/O commands that failed, by op and status: the NVMe status they completed with, or why the host failed them without a completion (controller_reset, controller_shutdown, queue_deleted).', 'counter', () => {
    const out: Sample[] = [];
    eachQueueNamespace((qid, ns, labels) => {
      for (let op = 0; op < OPS.length; op++) {
        for (let e = 0; e < ERROR_STATUS_LABELS.length; e++) {
          const value = io.opCell(qid, ns, op, C_ERRORS + e);
          if (value > 0) out.push({ labels: { ...labels, op: OPS[op]!, status: ERROR_STATUS_LABELS[e]! }, value });
        }
      }
    });
    return out;
  });

  const perQueue = (value: (qid: number) => number, extra: Labels = {}) => (): Sample[] => io.openedQueues().map((qid) => ({ labels: { queue: String(qid), ...extra }, value: value(qid) }));
  add('nvmq_io_now', 'I/O commands in flight on the queue (submitted, not yet reaped).', 'gauge', perQueue((qid) => Math.max(0, io.queueCell(qid, Q_INFLIGHT))));
  add('nvmq_io_time_seconds_total', 'Seconds the queue had at least one command in flight (diskstats field 10).', 'counter', () => {
    const now = sharedNow();
    return perQueue((qid) => io.busyMs(qid, now) / 1000)();
  });
  add('nvmq_io_time_weighted_seconds_total', 'Sum of the latencies of every command the queue completed (diskstats field 11, counted at completion).', 'counter', perQueue((qid) => io.queueCell(qid, Q_WEIGHTED_MS) / 1000));

  const byName = new Map<string, { help: string; collectors: Array<() => Sample[]> }>();
  for (const [name, help, cell, extra] of QUEUE_COUNTERS) {
    const entry = byName.get(name) ?? { help, collectors: [] };
    entry.collectors.push(perQueue((qid) => io.queueCell(qid, cell), extra));
    byName.set(name, entry);
  }
  for (const [name, { help, collectors }] of byName) add(name, help, 'counter', () => collectors.flatMap((c) => c()));

  // One Get Log Page serves every SMART family of a scrape (prom-client asks them all at once).
  let pending: Promise<SmartHealth | undefined> | undefined;
  const smart = (): Promise<SmartHealth | undefined> =>
    (pending ??= src
      .smartLog()
      .catch((e: unknown) => {
        trace('metrics: no SMART log this scrape: %s', e instanceof Error ? e.message : String(e));
        return undefined;
      })
      .finally(() => {
        pending = undefined;
      }));
  for (const [name, help, type, value] of SMART_FAMILIES) {
    add(name, help, type, async () => {
      const s = await smart();
      return s ? [{ labels: {}, value: value(s) }] : [];
    });
  }

  add('nvmq_info', 'The engine: nvmq version, namespace backends, namespace count, controller identity. Always 1.', 'gauge', () => [{ labels: { ...src.info }, value: 1 }]);
  const remote = src.remote;
  if (remote) {
    const at = (value: (r: ReturnType<NonNullable<MetricsSource['remote']>>) => number) => (): Sample[] => {
      const r = remote();
      return [{ labels: { target: r.target }, value: value(r) }];
    };
    add('nvmq_tcp_host_connected', 'Whether the engine is associated with its NVMe/TCP target now (1) or reconnecting or lost (0).', 'gauge', at((r) => (r.connected ? 1 : 0)));
    add('nvmq_tcp_host_disconnects_total', 'Times the association with the NVMe/TCP target broke (a connection lost, Keep Alive unanswered).', 'counter', at((r) => r.disconnects));
    add('nvmq_tcp_host_reconnects_total', 'Times the engine reconnected to its NVMe/TCP target after a break.', 'counter', at((r) => r.reconnects));
  }
  add('nvmq_namespace_capacity_bytes', 'Size of each active namespace.', 'gauge', () => src.namespaces.map((n) => ({ labels: { namespace: String(n.nsid) }, value: n.capacityBytes })));
  return registry;
}
