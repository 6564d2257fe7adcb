import { describe, it, expect } from 'vitest';
import { cpuNote, fioArgs, parseFioJson } from '../../src/cli/bench/fio.js';
import { comparisonJson, formatComparison, toJson } from '../../src/cli/bench/report.js';
import { cpuPerIoUs, type DirectionResult, type RunResult } from '../../src/cli/bench/results.js';
import { makeJob } from '../../src/cli/options.js';
import type { JobLayout } from '../../src/cli/bench/stats.js';

const dir = (ios: number, ms: number): DirectionResult => ({ ios, bytes: ios * 4096, runtimeMs: ms, iops: ios / (ms / 1000), bw: (ios * 4096) / (ms / 1000), lat: { min: 1, max: 9, mean: 3, stddev: 1, N: ios, percentile: { '99.000000': 8000 } } });

function run(engine: string, readIos: number, writeIos: number, cpu?: { userMs: number; systemMs: number }): RunResult {
  const job = makeJob({ name: 'j', rw: 'randrw' });
  return {
    engine,
    dataPath: 'x',
    verifies: false,
    jobs: [{ job, read: dir(readIos, 1000), write: dir(writeIos, 1000), workers: [], verified: 0, readBack: 0, failures: [], region: { start: 0, perWorker: 1 << 20 } }],
    elapsedMs: 1000,
    ...(cpu ? { cpu } : {}),
    maxRssKiB: 0,
    samples: [],
    relativeError: 0,
    notes: [],
  };
}

describe('CPU per I/O in the comparison', () => {
  it('is the whole run\'s CPU over every I/O of every job, in the table and in JSON, with the ratio of the two', () => {
    const a = run('nvmq', 300_000, 100_000, { userMs: 400, systemMs: 600 }); // 2.5 µs per I/O
    const b = run('fio', 400_000, 100_000, { userMs: 200, systemMs: 800 }); // 2 µs per I/O
    expect(cpuPerIoUs(a)).toBeCloseTo(2.5, 9);
    const table = formatComparison(a, b);
    expect(table).toMatch(/CPU: all threads of each process, io-wq included\)/);
    expect(table).toMatch(/\n\s+all jobs\s+CPU per I\/O\s+2\.50us\s+2\.00us\s+1\.25x$/);
    const doc = comparisonJson(a, b);
    expect(doc.cpu_per_io_us).toBeCloseTo(2.5, 9);
    expect((doc.compare as Record<string, unknown>).cpu_per_io_us).toBeCloseTo(2, 9);
    expect(doc.cpu_per_io_ratio).toBeCloseTo(1.25, 9);
  });

  it('charges the I/Os measured only with the CPU of the measured window: a ramp\'s CPU is not theirs', () => {
    // 1 s of ramp before 3 s measured: 4 s of CPU at one core, 3 s of it in the window, for 1M I/Os.
    const r = { ...run('nvmq', 1_000_000, 0, { userMs: 1000, systemMs: 3000 }), elapsedMs: 4000 };
    r.jobs[0]!.read.runtimeMs = 3000;
    expect(cpuPerIoUs(r)).toBeCloseTo(3, 9);
    expect((toJson(r).jobs as Array<{ usr_cpu: number; sys_cpu: number; job_runtime: number }>).map((j) => ((j.usr_cpu + j.sys_cpu) / 100) * j.job_runtime)).toEqual([3000]);
  });

  it('shows a dash, and leaves the keys out, for a side whose CPU was not measured', () => {
    const a = run('nvmq', 1000, 0, { userMs: 1, systemMs: 1 });
    const b = run('fio', 1000, 0);
    expect(formatComparison(a, b)).toMatch(/all jobs\s+CPU per I\/O\s+2\.00us\s+-\s+-$/);
    const doc = comparisonJson(a, b);
    expect(doc).not.toHaveProperty('cpu_per_io_ratio');
    expect(doc.compare).not.toHaveProperty('cpu_per_io_us');
    expect((toJson(b).jobs as Array<Record<string, unknown>>)[0]).not.toHaveProperty('usr_cpu');
  });
});

describe('fio\'s figures', () => {
  const layouts: JobLayout[] = [{ job: makeJob({ name: 'j', rw: 'randread', size: '1m' }), nsid: 1, lbaSize: 4096, path: '/tmp/x', regionStart: 0, perWorker: 1 << 20, workers: [0] }];
  const lat = (ios: number) => ({ min: 1, max: 2, mean: 1, stddev: 0, N: ios, percentile: { '99.000000': 2 } });
  const fioDir = (ios: number) => ({ io_bytes: ios * 4096, bw_bytes: ios * 4096, iops: ios, runtime: 1000, total_ios: ios, clat_ns: lat(ios), lat_ns: lat(ios) });
  const json = JSON.stringify({ 'fio version': 'fio-3.33', jobs: [{ jobname: 'j', error: 0, read: fioDir(1000), write: fioDir(0), usr_cpu: 1, sys_cpu: 1, job_runtime: 1000 }] });

  it('take the measured CPU of all fio\'s threads, not its jobs\' own usr_cpu / sys_cpu', () => {
    const r = parseFioJson(`note: something\n${json}`, layouts, { elapsedMs: 1100, cpu: { userMs: 3, systemMs: 5 }, startup: { userMs: 130, systemMs: 10 } });
    expect(r.cpu).toEqual({ userMs: 3, systemMs: 5 });
    expect(r.elapsedMs).toBe(1100);
    // 8 ms over 1.1 s, of which the 1 s fio measured in: 7.27 ms for its 1000 I/Os.
    expect(cpuPerIoUs(r)).toBeCloseTo((8 / 1100) * 1000, 9);
    expect(r.notes).toEqual(["cpu: every thread of fio's processes, io_uring's io-wq workers included, from when fio forked its jobs (its 140 ms of CPU before, mostly clock calibration, left out)", 'peak RSS not reported']);
    expect(r.notes.join()).not.toMatch(/usr_cpu/);
  });

  it('say in one note when the CPU was not measured, or fio\'s startup could not be left out', () => {
    const r = parseFioJson(json, layouts, { elapsedMs: 1000, why: '/bin/sh is not available to time fio' });
    expect(r.cpu).toBeUndefined();
    expect(r.notes[0]).toBe('cpu not measured: /bin/sh is not available to time fio');
    expect(cpuNote({ cpu: { userMs: 1, systemMs: 1 }, why: 'fio started no child process that could be seen' })).toBe(
      "cpu: every thread of fio's processes, io_uring's io-wq workers included, fio's startup included (fio started no child process that could be seen)",
    );
  });

  it('come from a warm-cache run: fio leaves the page cache alone', () => {
    expect(fioArgs(layouts)).toContain('--invalidate=0');
    expect(fioArgs([{ ...layouts[0]!, job: makeJob({ name: 'j', rw: 'randread', direct: '1' }) }])).not.toContain('--invalidate=0');
  });
});
