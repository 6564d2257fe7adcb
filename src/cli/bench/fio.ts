/**
 * `--compare fio`: the same jobs on the same regions through fio (io_uring),
 * one fio process, its JSON read back into nvmq's result shape. fio writes
 * for write and mixed jobs, so it gets a file only nvmq created, unless --force.
 * Its CPU time is that of all its processes and threads, io-wq included, from
 * when it forks its jobs to its exit (fio's own usr_cpu / sys_cpu count only
 * each job's thread).
 */
import { runMeasured, NOT_FOUND, type Measured } from './child-cpu.js';
import { isNvmqImage } from '../../engine/device/backends/image.js';
import { NvmqError } from '../../engine/errors.js';
import type { RunSettings } from '../options.js';
import { writes } from './runner.js';
import type { JobLayout } from './stats.js';
import { PERCENTILES, type DirectionResult, type JobResult, type RunResult } from './results.js';

/** fio's command line for the jobs (one fio job per nvmq job; numjobs workers each on its own slice, as nvmq does). */
export function fioArgs(layouts: readonly JobLayout[]): string[] {
  // Percentiles of fio's total latency (lat_ns: from before its io_uring_enter to the completion), the
  // span nvmq times (from before its submission call); fio's clat starts after the system call returns.
  const args = ['--output-format=json', `--percentile_list=${PERCENTILES.join(':')}`, '--lat_percentiles=1'];
  layouts.forEach((l, i) => {
    const j = l.job;
    args.push(
      `--name=${j.name}`,
      ...(i > 0 ? ['--new_group'] : []),
      `--filename=${l.path}`,
      '--ioengine=io_uring',
      `--rw=${j.rw}`,
      ...(j.rw === 'rw' || j.rw === 'randrw' ? [`--rwmixread=${j.rwmixread}`] : []),
      `--bs=${j.bs}`,
      `--iodepth=${j.iodepth}`,
      `--numjobs=${j.numjobs}`,
      `--size=${l.perWorker}`,
      `--offset=${l.regionStart}`,
      `--offset_increment=${l.perWorker}`,
      `--direct=${j.direct ? 1 : 0}`,
      ...(j.direct ? [] : ['--invalidate=0']),
      ...(j.runtime > 0 ? [`--runtime=${j.runtime}ms`] : []),
      ...(j.timeBased ? ['--time_based'] : []),
      ...(j.rampTime > 0 ? [`--ramp_time=${j.rampTime}ms`] : []),
      '--group_reporting',
    );
  });
  return args;
}

interface FioDir {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  runtime: number;
  total_ios: number;
  clat_ns: FioLatency;
  lat_ns: FioLatency;
}

interface FioLatency {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  percentile?: Record<string, number>;
}

interface FioJob {
  jobname: string;
  error: number;
  read: FioDir;
  write: FioDir;
}

function fromFio(d: FioDir): DirectionResult {
  return { ios: d.total_ios, bytes: d.io_bytes, runtimeMs: d.runtime, iops: d.iops, bw: d.bw_bytes, lat: { ...d.lat_ns, percentile: d.lat_ns.percentile ?? {} } };
}

/** What the report says of fio's CPU figure. */
export function cpuNote(m: Pick<Measured, 'cpu' | 'startup' | 'why'>): string {
  if (!m.cpu) return `cpu not measured: ${m.why ?? 'no figure'}`;
  const what = 'cpu: every thread of fio\'s processes, io_uring\'s io-wq workers included';
  if (!m.startup) return `${what}, fio's startup included (${m.why ?? 'not told apart'})`;
  return `${what}, from when fio forked its jobs (its ${Math.round(m.startup.userMs + m.startup.systemMs)} ms of CPU before, mostly clock calibration, left out)`;
}

/** Reads fio's JSON output into nvmq's result shape, job by job; `run` has fio's CPU time and the wall time it covers. */
export function parseFioJson(text: string, layouts: readonly JobLayout[], run: Pick<Measured, 'elapsedMs' | 'cpu' | 'startup' | 'why'>): RunResult {
  // fio may print notes before the JSON document.
  const doc = JSON.parse(text.slice(text.indexOf('{'))) as { 'fio version': string; jobs: FioJob[] };
  const jobs: JobResult[] = layouts.map((l, i) => {
    const f = doc.jobs[i];
    if (!f) throw new NvmqError('NVMQ_FIO_OUTPUT', `fio reported ${doc.jobs.length} jobs, expected ${layouts.length}`);
    if (f.error !== 0) throw new NvmqError('NVMQ_FIO_FAILED', `fio job ${f.jobname} failed with error ${f.error}`);
    return { job: l.job, read: fromFio(f.read), write: fromFio(f.write), workers: [], verified: 0, readBack: 0, failures: [], region: { start: l.regionStart, perWorker: l.perWorker } };
  });
  return {
    engine: 'fio',
    verifies: false,
    dataPath: `${doc['fio version']}, ioengine=io_uring`,
    jobs,
    elapsedMs: run.elapsedMs,
    ...(run.cpu ? { cpu: run.cpu } : {}),
    maxRssKiB: 0,
    samples: [],
    relativeError: 0,
    notes: [...(layouts.some((l) => l.job.verify !== 'none') ? ['fio runs without verify (its verify headers are not nvmq\'s stamps)'] : []), cpuNote(run), 'peak RSS not reported'],
  };
}

export async function runFio(layouts: readonly JobLayout[], settings: RunSettings): Promise<RunResult> {
  for (const l of layouts) {
    if (!l.path) throw new NvmqError('NVMQ_INVALID_ARGUMENT', '--compare fio needs a file (--filename), not --backend memory');
    if (writes(l.job) && !settings.force && !isNvmqImage(l.path)) {
      throw new NvmqError('NVMQ_REFUSING_TO_OVERWRITE', `refusing to let fio write to ${l.path}: nvmq did not create it; pass --force to use it anyway`);
    }
  }
  const run = await runMeasured('fio', fioArgs(layouts), { leaveOutStartup: true });
  if (run.code === NOT_FOUND) throw new NvmqError('NVMQ_FIO_MISSING', 'fio is not installed (not found on PATH): --compare fio needs it');
  if (run.code !== 0) throw new NvmqError('NVMQ_FIO_FAILED', `fio failed: ${(run.stderr.trim() || `exit status ${run.code}`).split('\n')[0]}`);
  return parseFioJson(run.stdout, layouts, run);
}
