/**
 * QueuePair.stats and the I/O counters count the same events once: stats is
 * a read-only view of the cells the pair counts into (its row of IoMetrics,
 * or cells of its own without one), never a second count beside them.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { bringUp, type Harness } from '../../helpers/harness.js';
import { IoQueuePair } from '../../../src/engine/host/io-queue-pair.js';
import type { QueuePair } from '../../../src/engine/host/queue-pair.js';
import {
  IoMetrics, Q_SQ_DOORBELLS, Q_CQ_DOORBELLS, Q_POLLED, Q_INTERRUPTED, Q_SPURIOUS, Q_WAITS,
} from '../../../src/engine/metrics/io-metrics.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
});

const CELLS = { sqDoorbells: Q_SQ_DOORBELLS, cqDoorbells: Q_CQ_DOORBELLS, polled: Q_POLLED, interrupted: Q_INTERRUPTED, spurious: Q_SPURIOUS, waits: Q_WAITS };

/** A CQE the controller never posted, for a CID nobody has outstanding, where the host expects the next after `reaped` CQEs. */
function forgeCqe(q: QueuePair, view: DataView, reaped: number): void {
  const at = q.cq.offset + (reaped % q.entries) * 16;
  view.setUint16(at + 12, q.slots + 1, true);
  // The phase tag starts at 1 and flips on every wrap.
  view.setUint16(at + 14, 1 ^ (Math.floor(reaped / q.entries) & 1), true);
}

/** Fills the request table while plugged, so the next submission waits for a slot; then lets them all go. */
async function oneWait(q: IoQueuePair, buf: Uint8Array): Promise<void> {
  q.plug();
  const reads = Array.from({ length: q.slots + 1 }, (_, i) => q.read(1, i, 1, buf.subarray(i * 4096, (i + 1) * 4096)));
  q.unplug();
  await Promise.all(reads);
}

describe('QueuePair.stats', () => {
  it('reads the pair\'s row of I/O counters: every event counted once, the two always equal', async () => {
    h = await bringUp();
    const metrics = IoMetrics.create({ maxQid: 2, nsids: [1] });
    const q = await h.driver.createIoQueuePair({ entries: 4, metrics });
    const buf = q.allocBuffer(4 * 4096);
    const same = (): void => {
      for (const [name, cell] of Object.entries(CELLS)) expect(q.stats[name as keyof typeof CELLS], name).toBe(metrics.queueCell(q.qid, cell));
    };
    same();
    q.plug();
    const batch = [0, 1, 2].map((i) => q.read(1, i, 1, buf.subarray(i * 4096, (i + 1) * 4096)));
    q.unplug();
    await Promise.all(batch);
    expect(q.stats.sqDoorbells).toBe(1);
    expect(q.stats.cqDoorbells).toBe(1);
    expect(q.stats.polled).toBe(3);
    same();
    await oneWait(q, buf);
    expect(q.stats.waits).toBe(1);
    same();
    // processCompletions() is polling too, in both.
    forgeCqe(q, h.arena.view, 3 + 4);
    expect(q.processCompletions()).toBe(1);
    expect(q.stats.spurious).toBe(1);
    same();
    expect(q.stats.polled).toBe(3 + 4 + 1);
  });

  it('starts from zero on a pair made on a QID whose row has counted before; the row never goes back', async () => {
    h = await bringUp();
    const metrics = IoMetrics.create({ maxQid: 1, nsids: [1] });
    const first = await h.driver.createIoQueuePair({ entries: 4, metrics });
    await first.flush(1);
    await first.flush(1);
    const before = metrics.queueCell(1, Q_SQ_DOORBELLS);
    expect(before).toBe(2);
    await h.driver.deleteIoQueuePair(first);
    const second = await h.driver.createIoQueuePair({ entries: 4, metrics });
    expect(second.qid).toBe(1);
    expect({ ...second.stats }).toEqual({ sqDoorbells: 0, cqDoorbells: 0, polled: 0, interrupted: 0, spurious: 0, waits: 0 });
    await second.flush(1);
    expect(second.stats.sqDoorbells).toBe(1);
    expect(metrics.queueCell(1, Q_SQ_DOORBELLS)).toBe(before + 1);
  });

  it('without I/O counters, counts into cells of the pair\'s own, which a pair attached to it shares', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 4, shared: true });
    expect(q.metrics).toBeUndefined();
    const buf = q.allocBuffer(4 * 4096);
    await q.flush(1);
    const other = IoQueuePair.attach(h.transport, q.handle(), h.driver.namespaces);
    await other.read(1, 0, 1, buf.subarray(0, 4096));
    // Each view starts where the cells were when it was made; both see every thread's events after that.
    expect(q.stats.sqDoorbells).toBe(2);
    expect(other.stats.sqDoorbells).toBe(1);
    expect(q.stats.polled).toBe(2);
    await oneWait(q, buf);
    expect(q.stats.waits).toBe(1);
    expect(other.stats.waits).toBe(1);
  });

  it('counts the waits of an unshared pair without I/O counters too', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    await oneWait(q, q.allocBuffer(4 * 4096));
    expect(q.stats.waits).toBe(1);
    // The plugged batch, then the one that waited, once it had a slot.
    expect(q.stats.sqDoorbells).toBe(2);
  });

  it('is read-only, and spreads into a plain object of the counts', async () => {
    h = await bringUp();
    const q = await h.driver.createIoQueuePair({ entries: 4 });
    await q.flush(1);
    expect(() => {
      (q.stats as { polled: number }).polled = 7;
    }).toThrow(TypeError);
    expect({ ...q.stats }).toEqual({ sqDoorbells: 1, cqDoorbells: 1, polled: 1, interrupted: 0, spurious: 0, waits: 0 });
    expect(JSON.parse(JSON.stringify(q.stats))).toEqual({ ...q.stats });
  });
});
