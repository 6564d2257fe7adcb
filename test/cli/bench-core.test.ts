import { describe, it, expect } from 'vitest';
import { Histogram, bucketOf, bucketRange, BUCKETS, RELATIVE_ERROR } from '../../src/cli/bench/histogram.js';
import { stampBlock, checkBlock, isStamped } from '../../src/cli/bench/block.js';
import { scatter, runLoop, type IoTarget, type LoopArgs } from '../../src/cli/bench/loop.js';
import { WorkerStats } from '../../src/cli/bench/stats.js';
import { fioArgs, parseFioJson } from '../../src/cli/bench/fio.js';
import type { JobLayout } from '../../src/cli/bench/stats.js';

describe('histogram', () => {
  it('keeps every bucketed value within the stated relative error', () => {
    for (let v = 0; v < 5000; v++) expect(bucketRange(bucketOf(v))[0]).toBeLessThanOrEqual(v);
    for (const v of [127, 128, 129, 255, 256, 1000, 123_456, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345]) {
      const [lo, hi] = bucketRange(bucketOf(v));
      expect(v).toBeGreaterThanOrEqual(lo);
      expect(v).toBeLessThan(hi);
      const mid = Math.floor((lo + hi) / 2);
      expect(Math.abs(mid - v) / v).toBeLessThanOrEqual(RELATIVE_ERROR);
    }
    expect(bucketOf(2 ** 50)).toBe(BUCKETS - 1);
  });

  it('computes percentiles, mean and stddev, and merges', () => {
    const a = new Histogram();
    const b = new Histogram(new SharedArrayBuffer(a.data.byteLength + 64), 64);
    for (let v = 1; v <= 10_000; v++) (v % 2 ? a : b).record(v * 1000);
    a.add(b);
    expect(a.count).toBe(10_000);
    expect(a.min).toBe(1000);
    expect(a.max).toBe(10_000_000);
    expect(a.mean).toBeCloseTo(5_000_500, 0);
    expect(a.stddev / 2_886_751).toBeCloseTo(1, 3);
    for (const p of [50, 90, 99, 99.9, 99.99]) {
      const exact = Math.ceil((p / 100) * 10_000) * 1000;
      expect(Math.abs(a.percentile(p) - exact) / exact).toBeLessThanOrEqual(RELATIVE_ERROR);
    }
    expect(new Histogram().percentile(99)).toBe(0);
  });
});

describe('verify stamp', () => {
  const block = (): Uint8Array => new Uint8Array(4096);
  it('accepts what it stamped and names what is wrong otherwise', () => {
    const b = block();
    expect(isStamped(b)).toBe(false);
    expect(checkBlock(b, 8, 0)).toMatch(/no verify header/);
    stampBlock(b, 8, 5, 1);
    expect(isStamped(b)).toBe(true);
    expect(checkBlock(b, 8, 5)).toBeUndefined();
    expect(checkBlock(b, 8, 0)).toBeUndefined();
    expect(checkBlock(b, 16, 5)).toMatch(/stamped for LBA 8/);
    expect(checkBlock(b, 8, 6)).toMatch(/write sequence 5, expected 6/);
    b[2000] ^= 1;
    expect(checkBlock(b, 8, 5)).toMatch(/crc32c/);
  });

  it('stamps LBAs past 2^32', () => {
    const b = block();
    stampBlock(b, 2 ** 33 + 7, 1, 0);
    expect(checkBlock(b, 2 ** 33 + 7, 1)).toBeUndefined();
  });
});

describe('scatter', () => {
  it('visits every block exactly once per pass, whatever the seed (uint32 seeds with the top bit set included)', () => {
    for (const seed of [12345, 0, 1, 0x7fffffff, 0x80000000, 0xdeadbeef, 0xffffffff]) {
      for (const n of [1, 2, 3, 100, 1024, 4096, 5000]) {
        const next = scatter(n, seed);
        const seen = new Uint8Array(n);
        for (let i = 0; i < n; i++) seen[next()]!++;
        expect(seen.every((x) => x === 1), `n ${n}, seed 0x${seed.toString(16)}`).toBe(true);
      }
    }
  });
});

describe('the worker loop', () => {
  const BS = 4096;
  /** A device in memory whose I/Os complete out of order on later turns of the event loop. */
  function device(blocks: number, dropWrite?: (block: number, nth: number) => boolean): { mem: Uint8Array; target: IoTarget } {
    const mem = new Uint8Array(blocks * BS);
    const writes = new Map<number, number>();
    const later = (f: () => void): Promise<void> => new Promise((r) => (Math.random() < 0.5 ? setImmediate : queueMicrotask)(() => r(f())));
    return {
      mem,
      target: {
        read: (pos, buf) => later(() => buf.set(mem.subarray(pos, pos + buf.length))),
        write: (pos, buf) =>
          later(() => {
            const n = (writes.get(pos / BS) ?? 0) + 1;
            writes.set(pos / BS, n);
            if (!dropWrite?.(pos / BS, n)) mem.set(buf, pos);
          }),
        plug: () => {},
        unplug: () => {},
        alloc: (n) => new Uint8Array(n),
        release: () => {},
      },
    };
  }
  const args = (over: Partial<LoopArgs>): LoopArgs => ({
    rw: 'randrw', rwmixread: 50, bs: BS, iodepth: 8, runtime: 0, timeBased: false, rampTime: 0, verify: 'crc32c',
    regionStart: 0, regionBytes: 64 * BS, lbaSize: BS, worker: 0, stats: WorkerStats.allocate(1), seed: 7, ...over,
  });

  it('writes every block once, verifies them, and catches a corrupted one by LBA', async () => {
    const { mem, target } = device(64);
    const w = await runLoop(target, args({ rw: 'write' }));
    expect(w).toMatchObject({ ios: 64, verified: 64, readBack: 64 });
    expect(w.failure).toBeUndefined();
    expect((await runLoop(target, args({ rw: 'randread' }))).failure).toBeUndefined();
    mem[9 * BS + 100] ^= 0xff;
    const r = await runLoop(target, args({ rw: 'randread' }));
    expect(r.failure).toEqual({ lba: 9, reason: expect.stringMatching(/^crc32c /) as unknown });
  });

  it('regression: a mixed job reads back every block it wrote before it ends, its last writes included', async () => {
    const { target } = device(256);
    // Per block, the tick of its last write's completion and of its last read's.
    const wroteAt = new Float64Array(256).fill(-1);
    const readAt = new Float64Array(256).fill(-1);
    let tick = 0;
    const watched: IoTarget = {
      ...target,
      write: (pos, buf) => target.write(pos, buf).then(() => (wroteAt[pos / BS] = ++tick)),
      read: (pos, buf) => target.read(pos, buf).then(() => (readAt[pos / BS] = ++tick)),
    };
    // One pass visits each block once: none of its reads finds a block it wrote.
    const r = await runLoop(watched, args({ regionBytes: 256 * BS, iodepth: 16 }));
    expect(r.failure).toBeUndefined();
    const written = [...wroteAt.keys()].filter((b) => wroteAt[b]! >= 0);
    expect(written.length).toBeGreaterThan(64);
    expect(written.filter((b) => readAt[b]! < wroteAt[b]!)).toEqual([]);
    expect(r.readBack).toBe(written.length);
    expect(r.verified).toBe(written.length);
  });

  it('regression: a mixed job catches a block corrupted as it was written mid-run', async () => {
    let corrupted = -1;
    let writes = 0;
    const { mem, target } = device(64);
    const torn: IoTarget = {
      ...target,
      write: async (pos, buf) => {
        await target.write(pos, buf);
        if (++writes === 10) {
          corrupted = pos / BS;
          mem[pos + 1000] ^= 0x01;
        }
      },
    };
    const r = await runLoop(torn, args({}));
    expect(corrupted).toBeGreaterThanOrEqual(0);
    expect(r.failure).toEqual({ lba: corrupted, reason: expect.stringMatching(/^crc32c /) as unknown });
  });

  it('a mixed job that writes nothing and reads only unstamped blocks checks nothing (the command fails it)', async () => {
    const r = await runLoop(device(64).target, args({ rwmixread: 100 }));
    expect(r).toMatchObject({ ios: 64, verified: 0, readBack: 0 });
    expect(r.failure).toBeUndefined();
  });

  it('a failed I/O stops the loop, which waits for the rest in flight and rejects with that error', async () => {
    const { target } = device(64);
    let inflight = 0;
    let most = 0;
    const failing: IoTarget = {
      ...target,
      read: async (pos, buf) => {
        most = Math.max(most, ++inflight);
        try {
          if (pos === 5 * BS) await new Promise((_, reject) => setImmediate(() => reject(new Error('medium error at LBA 5'))));
          return await target.read(pos, buf);
        } finally {
          inflight--;
        }
      },
    };
    await expect(runLoop(failing, args({ rw: 'randread', verify: 'none' }))).rejects.toThrow('medium error at LBA 5');
    expect(inflight).toBe(0);
    expect(most).toBeGreaterThan(1);
  });

  it('runs a mixed job for its runtime with latencies recorded, and catches a lost write by its sequence', async () => {
    const ok = device(16);
    const stats = WorkerStats.allocate(1);
    const r = await runLoop(ok.target, args({ regionBytes: 16 * BS, runtime: 100, timeBased: true, stats }));
    expect(r.failure).toBeUndefined();
    expect(r.verified).toBeGreaterThan(0);
    const ws = new WorkerStats(stats, 0);
    expect(ws.read.count + ws.write.count).toBe(r.ios);
    expect(ws.read.count).toBeGreaterThan(0);
    expect(ws.write.count).toBeGreaterThan(0);
    const lossy = device(16, (block, nth) => block === 3 && nth > 1);
    const bad = await runLoop(lossy.target, args({ regionBytes: 16 * BS, runtime: 2000, timeBased: true }));
    expect(bad.failure).toEqual({ lba: 3, reason: expect.stringMatching(/^write sequence \d+, expected \d+/) as unknown });
  });
});

describe('--compare fio', () => {
  it("reads fio's total latency (lat_ns, from before its submission call), the span nvmq times, not clat", () => {
    const job = { name: 'j', rw: 'randread', bs: 4096, iodepth: 1, numjobs: 1, direct: true, runtime: 1000, timeBased: true, rampTime: 0, rwmixread: 50, verify: 'none' } as unknown as JobLayout['job'];
    const layout: JobLayout = { job, nsid: 1, lbaSize: 4096, path: '/tmp/x', regionStart: 0, perWorker: 1 << 20, workers: [0] };
    expect(fioArgs([layout])).toContain('--lat_percentiles=1');
    const lat = (p50: number): Record<string, unknown> => ({ min: 1, max: 9, mean: p50, stddev: 1, N: 10, percentile: { '50.000000': p50 } });
    const dir = (p: number): Record<string, unknown> => ({ io_bytes: 40960, bw_bytes: 1, iops: 10, runtime: 1000, total_ios: 10, slat_ns: lat(13_000), clat_ns: lat(p), lat_ns: lat(p + 13_000) });
    const doc = { 'fio version': 'fio-3.33', jobs: [{ jobname: 'j', error: 0, read: dir(28_000), write: dir(0), usr_cpu: 1, sys_cpu: 1, job_runtime: 1000 }] };
    const r = parseFioJson(JSON.stringify(doc), [layout], 1000);
    expect(r.jobs[0]!.read.lat.percentile['50.000000']).toBe(41_000);
  });
});
