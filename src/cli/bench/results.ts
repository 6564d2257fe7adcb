/**
 * What a run produced, in one shape for every engine (nvmq, node:fs, fio),
 * so the reports and the side-by-side comparison need not know which ran.
 */
import type { Histogram } from './histogram.js';
import type { JobSpec } from '../options.js';
import type { VerifyFailure } from './loop.js';

/** The percentiles every report prints (fio's key spelling). */
export const PERCENTILES = [50, 90, 99, 99.9, 99.99] as const;

export function percentileKey(p: number): string {
  return p.toFixed(6);
}

export interface LatencySummary {
  /** Nanoseconds. */
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  /** fio's keys: "50.000000" → ns. */
  percentile: Record<string, number>;
}

export interface DirectionResult {
  ios: number;
  bytes: number;
  /** Milliseconds the figures were measured over. */
  runtimeMs: number;
  iops: number;
  /** Bytes per second. */
  bw: number;
  lat: LatencySummary;
}

export interface WorkerResult {
  worker: number;
  /** The I/O queue pair the worker used (nvmq only). */
  qid?: number;
  read: DirectionResult;
  write: DirectionResult;
  /** Blocks checked; `readBack` of them in the verify phase after the run. */
  verified: number;
  readBack: number;
  failure?: VerifyFailure;
}

export interface JobResult {
  job: JobSpec;
  read: DirectionResult;
  write: DirectionResult;
  workers: WorkerResult[];
  verified: number;
  readBack: number;
  failures: VerifyFailure[];
  /** Histograms for the HTML report (absent for fio). */
  histograms?: { read: Histogram; write: Histogram };
  /** Where each worker's region starts, and its length, in bytes. */
  region: { start: number; perWorker: number };
}

export interface Sample {
  /** Milliseconds since the run started. */
  t: number;
  readIos: number;
  writeIos: number;
  readBytes: number;
  writeBytes: number;
}

export interface RunResult {
  /** 'nvmq', 'node:fs', 'fio'. */
  engine: string;
  /** What moved the data: nvmq's data path, or the other engine's. */
  dataPath: string;
  /** Whether this engine checked the verify stamps of jobs with --verify (fio runs without). */
  verifies: boolean;
  jobs: JobResult[];
  elapsedMs: number;
  /** CPU time of every thread of the engine's processes (io_uring's io-wq workers included); absent when not measured. */
  cpu?: { userMs: number; systemMs: number };
  maxRssKiB: number;
  samples: Sample[];
  /** Relative error of the percentiles (0 when the engine reported exact ones). */
  relativeError: number;
  notes: string[];
}

/**
 * How a job's verification ended: 'off' (no --verify, or an engine that ran without), 'ok', 'mismatch',
 * or 'unchecked': a verified job that checked no block (it wrote none and read none carrying a stamp),
 * which is a failure too rather than a silent pass.
 */
export function verifyOutcome(r: RunResult, j: JobResult): 'off' | 'ok' | 'mismatch' | 'unchecked' {
  if (!r.verifies || j.job.verify === 'none') return 'off';
  if (j.failures.length > 0) return 'mismatch';
  return j.verified > 0 ? 'ok' : 'unchecked';
}

/**
 * Microseconds of CPU per I/O, every job and direction together: the run's CPU rate (its CPU time over
 * elapsedMs, as usr_cpu / sys_cpu give it) over the measured window (the longest job's runtime) per I/O
 * measured, so the CPU of a ramp, whose I/Os are not counted, is not charged to the others. Undefined
 * when the CPU was not measured or nothing ran.
 */
export function cpuPerIoUs(r: RunResult): number | undefined {
  const ios = r.jobs.reduce((s, j) => s + j.read.ios + j.write.ios, 0);
  const windowMs = Math.min(r.elapsedMs, Math.max(...r.jobs.map((j) => Math.max(j.read.runtimeMs, j.write.runtimeMs))));
  if (!r.cpu || ios === 0 || !(r.elapsedMs > 0)) return undefined;
  return (((r.cpu.userMs + r.cpu.systemMs) / r.elapsedMs) * windowMs * 1000) / ios;
}

export function summarize(h: Histogram): LatencySummary {
  const percentile: Record<string, number> = {};
  for (const p of PERCENTILES) percentile[percentileKey(p)] = h.percentile(p);
  return { min: h.min, max: h.max, mean: h.mean, stddev: h.stddev, N: h.count, percentile };
}

export function direction(ios: number, bytes: number, runtimeMs: number, h: Histogram): DirectionResult {
  const s = runtimeMs / 1000;
  return { ios, bytes, runtimeMs, iops: s > 0 ? ios / s : 0, bw: s > 0 ? bytes / s : 0, lat: summarize(h) };
}
