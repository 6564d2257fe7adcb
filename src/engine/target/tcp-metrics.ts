/**
 * The NVMe/TCP target's Prometheus series, per host: connections and
 * controllers (counted at scrape time from the main thread's view), and
 * commands, bytes, data digest errors and terminations (counted where the
 * connection is served, in shared memory).
 *
 * Labels are bounded: `listen` is the target's address (one per target
 * the engine runs); `host` is one of the first HOST_SLOTS host NQNs that
 * connected, "other" for any host after them, or "none" for what happened
 * on a connection before its Connect said who it was; `queue` is "admin",
 * "io", or "none" before the Connect.
 *
 * Memory map (Float64Array over a SharedArrayBuffer): a row per thread that
 * serves connections (0: the main thread, then each I/O thread), in it a
 * block of FIELDS cells per label slot. Each cell has one writer, the
 * thread of its row, so no cell needs Atomics; a scrape sums the rows (a
 * value read mid-update is at most one increment old).
 */
import type { Registry, Metric } from 'prom-client';
import { ScrapedFamily, type Sample } from '../metrics/collector.js';

/** Host NQNs with series of their own. */
export const HOST_SLOTS = 16;
/** Label slots: the hosts, "other", "none". */
const SLOT_OTHER = HOST_SLOTS;
export const SLOT_NONE = HOST_SLOTS + 1;
const SLOTS = HOST_SLOTS + 2;

export const TcpField = { COMMANDS: 0, BYTES_RECEIVED: 1, BYTES_SENT: 2, DATA_DIGEST_ERRORS: 3, TERMINATIONS: 4 } as const;
const FIELDS = 5;

/** One thread's counters, by label slot. */
export class TcpCounters {
  readonly cells: Float64Array;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly thread: number,
  ) {
    this.cells = new Float64Array(buffer);
  }

  /** A buffer for `threads` threads. */
  static allocate(threads: number): SharedArrayBuffer {
    return new SharedArrayBuffer(threads * SLOTS * FIELDS * 8);
  }

  /** The first cell of label slot `slot` in this thread's row. */
  base(slot: number): number {
    return (this.thread * SLOTS + slot) * FIELDS;
  }

  /** Sum over every thread of one field of one slot. */
  static sum(cells: Float64Array, slot: number, field: number): number {
    let t = 0;
    for (let at = slot * FIELDS + field; at < cells.length; at += SLOTS * FIELDS) t += cells[at]!;
    return t;
  }
}

/** The main thread's assignment of host NQNs to label slots. */
export class HostSlots {
  private readonly slots = new Map<string, number>();

  slotOf(hostnqn: string): number {
    let s = this.slots.get(hostnqn);
    if (s === undefined) {
      s = this.slots.size < HOST_SLOTS ? this.slots.size : SLOT_OTHER;
      if (s !== SLOT_OTHER) this.slots.set(hostnqn, s);
    }
    return s;
  }

  labelOf(slot: number): string | undefined {
    if (slot === SLOT_OTHER) return 'other';
    if (slot === SLOT_NONE) return 'none';
    for (const [nqn, s] of this.slots) if (s === slot) return nqn;
    return undefined;
  }

  /** Every slot in use with its label. */
  labels(): Array<[number, string]> {
    return [...[...this.slots].map(([nqn, s]): [number, string] => [s, nqn]), [SLOT_OTHER, 'other'], [SLOT_NONE, 'none']];
  }
}

/** What the families read at scrape time, for one target. */
export interface TcpMetricsSource {
  /** The `listen` label: the target's address. */
  listen: string;
  cells: Float64Array;
  hosts: HostSlots;
  /** Open connections: their host slot and queue type ("none" before their Connect). */
  connections(): Iterable<{ slot: number; queue: 'admin' | 'io' | 'none' }>;
  /** Live controllers' host NQNs. */
  controllers(): Iterable<string>;
}

const COUNTERS: ReadonlyArray<readonly [string, string, number]> = [
  ['nvmq_tcp_commands_total', 'Command capsules received over NVMe/TCP, by host.', TcpField.COMMANDS],
  ['nvmq_tcp_received_bytes_total', 'Bytes received over NVMe/TCP connections, by host.', TcpField.BYTES_RECEIVED],
  ['nvmq_tcp_sent_bytes_total', 'Bytes sent over NVMe/TCP connections, by host.', TcpField.BYTES_SENT],
  ['nvmq_tcp_data_digest_errors_total', 'PDUs whose data digest did not match (their command failed with Transient Transport Error), by host.', TcpField.DATA_DIGEST_ERRORS],
  ['nvmq_tcp_terminations_total', 'Connections ended for a protocol error (a C2HTermReq sent, or an H2CTermReq received), by host.', TcpField.TERMINATIONS],
];

/** The targets whose series each registry exports (the families are registered once, with the first). */
const sourcesOf = new WeakMap<Registry, Set<TcpMetricsSource>>();

function hostSamples(sources: Iterable<TcpMetricsSource>, field: number): Sample[] {
  const out: Sample[] = [];
  for (const src of sources) for (const [slot, host] of src.hosts.labels()) out.push({ labels: { listen: src.listen, host }, value: TcpCounters.sum(src.cells, slot, field) });
  return out;
}

function registerFamilies(registry: Registry, sources: Set<TcpMetricsSource>): void {
  const add = (name: string, help: string, type: 'counter' | 'gauge', collect: () => Sample[]): void => {
    registry.registerMetric(new ScrapedFamily(name, help, type, collect) as unknown as Metric);
  };
  for (const [name, help, field] of COUNTERS) add(name, help, 'counter', () => hostSamples(sources, field));
  add('nvmq_tcp_connections', 'Open NVMe/TCP connections (one queue each), by host and queue type.', 'gauge', () => {
    const out: Sample[] = [];
    for (const src of sources) {
      const counts = new Map<string, number>();
      for (const c of src.connections()) {
        const key = `${c.slot}\n${c.queue}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      for (const [key, value] of counts) {
        const [slot, queue] = key.split('\n') as [string, string];
        out.push({ labels: { listen: src.listen, host: src.hosts.labelOf(Number(slot)) ?? 'other', queue }, value });
      }
    }
    return out;
  });
  add('nvmq_tcp_controllers', 'Live NVMe over Fabrics controllers (host associations), by host.', 'gauge', () => {
    const out: Sample[] = [];
    for (const src of sources) {
      const counts = new Map<string, number>();
      for (const nqn of src.controllers()) {
        const host = src.hosts.labelOf(src.hosts.slotOf(nqn)) ?? 'other';
        counts.set(host, (counts.get(host) ?? 0) + 1);
      }
      for (const [host, value] of counts) out.push({ labels: { listen: src.listen, host }, value });
    }
    return out;
  });
}

/** Exports `src`'s series from `registry`; returns what stops it (the families go with the last target). */
export function registerTcpMetrics(registry: Registry, src: TcpMetricsSource): () => void {
  let sources = sourcesOf.get(registry);
  if (!sources) {
    sources = new Set();
    sourcesOf.set(registry, sources);
    registerFamilies(registry, sources);
  }
  sources.add(src);
  const mine = sources;
  return () => {
    mine.delete(src);
    if (mine.size > 0) return;
    sourcesOf.delete(registry);
    for (const [name] of COUNTERS) registry.removeSingleMetric(name);
    registry.removeSingleMetric('nvmq_tcp_connections');
    registry.removeSingleMetric('nvmq_tcp_controllers');
  };
}
