import { describe, it, expect, afterEach } from 'vitest';
import { Worker } from 'node:worker_threads';
import { bringUp, memoryNamespace, stalledDevice, tempDir, DATA_PATHS, type Harness } from '../../helpers/harness.js';
import { parseExposition, total } from '../../helpers/exposition.js';
import { FileBackend } from '../../../src/engine/device/backends/file.js';
import { createMetricsRegistry } from '../../../src/engine/metrics/collector.js';
import type { NvmqError } from '../../../src/engine/errors.js';
import { sharedNow } from '../../../src/engine/shared/clock.js';
import {
  IoMetrics, OPS, latencyBucket, bucketBoundSeconds, LATENCY_BUCKETS, ERROR_STATUS_LABELS,
  C_COMPLETED, C_BYTES, C_TIME_MS, C_BUCKETS, C_ERRORS, Q_INFLIGHT, Q_POLLED, Q_SQ_DOORBELLS, Q_CQ_DOORBELLS, Q_OPENED, Q_WEIGHTED_MS,
} from '../../../src/engine/metrics/io-metrics.js';

let h: Harness | undefined;
const cleanups: Array<() => void> = [];
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
  for (const c of cleanups.splice(0)) c();
});

const op = (name: (typeof OPS)[number]): number => OPS.indexOf(name);
const status = (label: string): number => ERROR_STATUS_LABELS.indexOf(label);

describe('latency buckets', () => {
  it('puts a latency in the smallest bucket whose bound (2^k µs) is not below it', () => {
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(0.0004)).toBe(0);
    expect(latencyBucket(0.001)).toBe(0);
    expect(latencyBucket(0.0011)).toBe(1);
    expect(latencyBucket(0.002)).toBe(1);
    expect(latencyBucket(0.003)).toBe(2);
    expect(latencyBucket(1.024)).toBe(10);
    expect(latencyBucket(1.025)).toBe(11);
    expect(latencyBucket(16777.216)).toBe(LATENCY_BUCKETS - 1);
    expect(latencyBucket(16777.217)).toBe(LATENCY_BUCKETS);
    expect(latencyBucket(1e9)).toBe(LATENCY_BUCKETS);
    for (let k = 0; k < LATENCY_BUCKETS; k++) {
      const boundMs = bucketBoundSeconds(k) * 1000;
      expect(latencyBucket(boundMs), `bound of bucket ${k}`).toBe(k);
      if (k > 0) expect(latencyBucket(boundMs * 0.75), `inside bucket ${k}`).toBe(k);
    }
  });

  it('spans about 1 µs to 10 s', () => {
    expect(bucketBoundSeconds(0)).toBe(1e-6);
    expect(bucketBoundSeconds(LATENCY_BUCKETS - 1)).toBeGreaterThan(10);
    expect(bucketBoundSeconds(LATENCY_BUCKETS - 2)).toBeLessThan(10);
  });
});

describe('shared clock', () => {
  it('reads the same in a worker thread as in this one', async () => {
    const w = new Worker(new URL('../../fixtures/clock-worker.mjs', import.meta.url));
    try {
      await new Promise((r) => w.once('message', r));
      let worst = 0;
      for (let i = 0; i < 20; i++) {
        const before = sharedNow();
        w.postMessage(0);
        const theirs = await new Promise<number>((r) => w.once('message', r));
        const after = sharedNow();
        expect(theirs).toBeGreaterThanOrEqual(before - 0.01);
        expect(theirs).toBeLessThanOrEqual(after + 0.01);
        worst = Math.max(worst, after - before);
      }
      expect(worst).toBeLessThan(1000);
    } finally {
      await w.terminate();
    }
  });
});

describe('I/O counters of a queue pair', () => {
  it('count every command the pair completes, by op, namespace and status, exactly', async () => {
    h = await bringUp({ namespaces: [memoryNamespace(8 << 20, 4096), memoryNamespace(4 << 20, 512)] });
    const metrics = IoMetrics.create({ maxQid: 4, nsids: [...h.driver.namespaces.keys()] });
    const q = await h.driver.createIoQueuePair({ entries: 16, metrics });
    expect(metrics.openedQueues()).toEqual([q.qid]);
    const buf = q.allocBuffer(8192);
    for (let i = 0; i < 10; i++) await q.write(1, i, 2, buf);
    for (let i = 0; i < 7; i++) await q.read(1, i, 1, buf.subarray(0, 4096));
    await q.read(2, 0, 4, buf.subarray(0, 2048));
    await q.flush(1);
    await q.flush(0xffffffff);
    await q.writeZeroes(1, 100, 16);
    await q.deallocate(2, [{ slba: 0, nlb: 8 }, { slba: 100, nlb: 24 }]);
    await expect(q.read(1, 2048, 1, buf.subarray(0, 4096))).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
    await expect(q.read(1, 2047, 2, buf)).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
    // Invalid Namespace, for an NSID that is not active: its own "other" slot.
    expect((await q.passthru({ opcode: 0x00, nsid: 7 })).status & 0xff).toBe(0x0b);

    const ns1 = metrics.namespaceSlot(1);
    const ns2 = metrics.namespaceSlot(2);
    const all = metrics.namespaceSlot(0xffffffff);
    const other = metrics.namespaceSlot(7);
    expect([ns1, ns2, all, other]).toEqual([0, 1, 2, 3]);
    expect(metrics.namespaceLabels).toEqual(['1', '2', 'all', 'other']);
    const cell = (ns: number, o: string, c: number): number => metrics.opCell(q.qid, ns, op(o as (typeof OPS)[number]), c);
    expect(cell(ns1, 'write', C_COMPLETED)).toBe(10);
    expect(cell(ns1, 'write', C_BYTES)).toBe(10 * 8192);
    expect(cell(ns1, 'read', C_COMPLETED)).toBe(7);
    expect(cell(ns1, 'read', C_BYTES)).toBe(7 * 4096);
    expect(cell(ns2, 'read', C_COMPLETED)).toBe(1);
    expect(cell(ns2, 'read', C_BYTES)).toBe(2048);
    expect(cell(ns1, 'flush', C_COMPLETED)).toBe(1);
    expect(cell(all, 'flush', C_COMPLETED)).toBe(1);
    expect(cell(ns1, 'write_zeroes', C_COMPLETED)).toBe(1);
    expect(cell(ns1, 'write_zeroes', C_BYTES)).toBe(16 * 4096);
    expect(cell(ns2, 'deallocate', C_COMPLETED)).toBe(1);
    expect(cell(ns2, 'deallocate', C_BYTES)).toBe(32 * 512);
    expect(cell(ns1, 'read', C_ERRORS + status('lba_out_of_range'))).toBe(2);
    expect(cell(other, 'flush', C_ERRORS + status('invalid_namespace'))).toBe(1);
    // Failed commands count only as errors.
    expect(cell(other, 'flush', C_COMPLETED)).toBe(0);

    // The histogram holds every successful command once, and its sum is the time counter.
    let histogram = 0;
    for (let k = 0; k <= LATENCY_BUCKETS; k++) histogram += cell(ns1, 'read', C_BUCKETS + k);
    expect(histogram).toBe(7);
    expect(cell(ns1, 'read', C_TIME_MS)).toBeGreaterThan(0);

    expect(metrics.queueCell(q.qid, Q_INFLIGHT)).toBe(0);
    expect(metrics.queueCell(q.qid, Q_OPENED)).toBe(1);
    expect(metrics.queueCell(q.qid, Q_SQ_DOORBELLS)).toBe(q.stats.sqDoorbells);
    expect(metrics.queueCell(q.qid, Q_CQ_DOORBELLS)).toBe(q.stats.cqDoorbells);
    expect(metrics.queueCell(q.qid, Q_POLLED)).toBe(q.stats.polled);
    expect(metrics.queueCell(q.qid, Q_WEIGHTED_MS)).toBeGreaterThan(0);
    const busy = metrics.busyMs(q.qid, sharedNow());
    expect(busy).toBeGreaterThan(0);
    expect(busy).toBeLessThanOrEqual(metrics.queueCell(q.qid, Q_WEIGHTED_MS) + 1e-9);
  });

  it('a queue past the rows made is simply not counted', async () => {
    h = await bringUp();
    const metrics = IoMetrics.create({ maxQid: 1, nsids: [1] });
    await h.driver.createIoQueuePair({ entries: 4, metrics });
    const q2 = await h.driver.createIoQueuePair({ entries: 4, metrics });
    expect(q2.metrics).toBeUndefined();
    await q2.flush(1);
    expect(metrics.openedQueues()).toEqual([1]);
  });

  it.each(DATA_PATHS)('a reset counts each command it fails once, as controller_reset in nvmq_io_errors_total (%s)', async (dataPath) => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    // Reads of the stalled device never complete: every one is in flight when the reset comes.
    const device = stalledDevice(dataPath, dir.dir, 8 << 20);
    cleanups.push(device.close);
    h = await bringUp({ namespaces: [{ backend: new FileBackend(device.options), lbaSize: 4096 }], controller: { dataPath } });
    const metrics = IoMetrics.create({ maxQid: 4, nsids: [1] });
    const info = { version: '0', backend: 'file', namespaces: '1', model: '', serial: '', firmware: '' };
    const registry = createMetricsRegistry({ io: metrics, smartLog: () => h!.driver.smartLog(), info, namespaces: [] });
    const scrape = async (): Promise<ReturnType<typeof parseExposition>> => parseExposition(await registry.metrics());
    const q = await h.driver.createIoQueuePair({ entries: 32, metrics });
    const inflight = [
      ...Array.from({ length: 9 }, (_, i) => q.read(1, i * 2, 2, new Uint8Array(8192))),
      ...Array.from({ length: 3 }, (_, i) => q.passthru({ opcode: 0x02, nsid: 1, cdw10: 100 + i }, { buffer: new Uint8Array(4096), direction: 'from-device' })),
    ].map((p) => p.then(() => 'done', (e: NvmqError) => e.code));
    await h.driver.reset();
    expect(await Promise.all(inflight)).toEqual(Array(12).fill('NVMQ_CONTROLLER_RESET'));

    const s = await scrape();
    expect(total(s, 'nvmq_io_errors_total', { namespace: '1', queue: String(q.qid), op: 'read', status: 'controller_reset' })).toBe(12);
    expect(total(s, 'nvmq_io_errors_total')).toBe(12);
    expect(total(s, 'nvmq_reads_completed_total')).toBe(0);
    expect(total(s, 'nvmq_io_now')).toBe(0);
    // The dead pair refuses what comes after: refusals never reached a queue and are not counted.
    await expect(q.read(1, 0, 1, new Uint8Array(4096))).rejects.toMatchObject({ code: 'NVMQ_CONTROLLER_RESET' });
    // A fresh pair counts on the same row; nothing of the failed commands comes back to be counted twice.
    const q2 = await h.driver.createIoQueuePair({ entries: 8, metrics });
    expect(q2.qid).toBe(q.qid);
    // (Past the end: the controller answers without touching the stalled device.)
    await expect(q2.read(1, 2048, 1, new Uint8Array(4096))).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
    const after = await scrape();
    expect(total(after, 'nvmq_io_errors_total', { status: 'controller_reset' })).toBe(12);
    expect(total(after, 'nvmq_io_errors_total', { status: 'lba_out_of_range' })).toBe(1);
    expect(total(after, 'nvmq_io_errors_total')).toBe(13);
    await h.driver.close();
  });

});
