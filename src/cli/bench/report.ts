/**
 * The report of a run: fio's layout in text (per job: read and write IOPS,
 * bandwidth, latency with percentiles, then a per-worker breakdown, CPU and
 * peak RSS), fio's structure in JSON (`jobs[].read.iops`, `.bw` in KiB/s,
 * `.clat_ns.percentile["99.000000"]`, ...) so tools made for fio read it, and
 * the side-by-side table of a comparison, CPU time per I/O included.
 */
import { PERCENTILES, cpuPerIoUs, percentileKey, verifyOutcome, type DirectionResult, type JobResult, type RunResult } from './results.js';
import { formatBytes, formatCount, formatNs } from './units.js';

const VERSION = '0.1.0';

/** Why a verified job can end with nothing checked: every block it writes is read back. */
export const UNCHECKED_WHY = 'the job wrote none, and read none that carried a stamp';

/** fio's `error` of a job: an errno. */
const JOB_ERROR = { off: 0, ok: 0, mismatch: 84 /* EILSEQ, as fio reports a verify failure */, unchecked: 61 /* ENODATA */ } as const;

function dirLines(name: string, d: DirectionResult, relErr: number): string[] {
  if (d.ios === 0) return [];
  const l = d.lat;
  const pct = PERCENTILES.map((p) => `${p.toFixed(2)}th=[${formatNs(l.percentile[percentileKey(p)]!)}]`).join(', ');
  const err = relErr > 0 ? `, within ${(relErr * 100).toFixed(2)}%` : '';
  return [
    `  ${name}: IOPS=${formatCount(d.iops)}, BW=${formatBytes(d.bw)}/s (${(d.bw / 1e6).toFixed(1)}MB/s)(${formatBytes(d.bytes)}/${Math.round(d.runtimeMs)}msec)`,
    `    lat: min=${formatNs(l.min)}, max=${formatNs(l.max)}, avg=${formatNs(l.mean)}, stdev=${formatNs(l.stddev)}`,
    `    lat percentiles (submit to completion${err}): ${pct}`,
  ];
}

function jobLines(j: JobResult, r: RunResult): string[] {
  const job = j.job;
  const lines = [
    `${job.name}: (jobs=${job.numjobs}): rw=${job.rw}${job.rw === 'rw' || job.rw === 'randrw' ? ` rwmixread=${job.rwmixread}` : ''}, bs=${formatBytes(job.bs)}, iodepth=${job.iodepth}, ${job.backend === 'memory' ? 'memory namespace' : job.filename}${job.direct ? ' (O_DIRECT)' : ''}${job.verify !== 'none' ? `, verify=${job.verify}` : ''}`,
    ...dirLines('read', j.read, r.relativeError),
    ...dirLines('write', j.write, r.relativeError),
  ];
  if (j.workers.length > 1 || j.workers[0]?.qid !== undefined) {
    lines.push('  workers:');
    for (const w of j.workers) {
      const part = (name: string, d: DirectionResult): string => (d.ios > 0 ? ` ${name} ${formatCount(d.iops)} IOPS p99 ${formatNs(d.lat.percentile[percentileKey(99)]!)}` : '');
      const where = `bytes ${j.region.start + (w.worker - j.workers[0]!.worker) * j.region.perWorker}+${j.region.perWorker}`;
      lines.push(`    #${w.worker}${w.qid !== undefined ? ` qid ${w.qid}` : ''}:${part('read', w.read)}${part('write', w.write)} (${where})`);
    }
  }
  const readBack = j.readBack > 0 ? ` (${j.readBack} read back after the run)` : '';
  const verify = {
    off: undefined,
    ok: `  verify: ${j.verified} blocks checked${readBack}, no mismatch`,
    mismatch: `  verify: FAILED at ${j.failures.map((f) => `LBA ${f.lba} (${f.reason})`).join('; ')}`,
    unchecked: `  verify: FAILED: no block checked (${UNCHECKED_WHY})`,
  }[verifyOutcome(r, j)];
  if (verify !== undefined) lines.push(verify);
  return lines;
}

function cpuLine(r: RunResult): string {
  const s = r.elapsedMs;
  const perIo = cpuPerIoUs(r);
  const cpu = r.cpu
    ? `usr=${((r.cpu.userMs / s) * 100).toFixed(1)}%, sys=${((r.cpu.systemMs / s) * 100).toFixed(1)}% (of one core, all threads)${perIo !== undefined ? `, ${formatNs(perIo * 1000)} per I/O` : ''}`
    : 'not measured';
  return `  cpu: ${cpu}${r.maxRssKiB > 0 ? `, peak RSS=${formatBytes(r.maxRssKiB * 1024)}` : ''}`;
}

/** The text report of one run. */
export function formatNormal(r: RunResult): string {
  const lines = [`${r.engine === 'nvmq' ? `nvmq ${VERSION}` : r.engine}: data path: ${r.dataPath}`];
  for (const n of r.notes) lines.push(`note: ${n}`);
  for (const j of r.jobs) lines.push(...jobLines(j, r));
  lines.push(cpuLine(r));
  const read = r.jobs.reduce((s, j) => s + j.read.bw, 0);
  const write = r.jobs.reduce((s, j) => s + j.write.bw, 0);
  lines.push('', 'Run status:');
  if (read > 0) lines.push(`   READ: bw=${formatBytes(read)}/s, io=${formatBytes(r.jobs.reduce((s, j) => s + j.read.bytes, 0))}`);
  if (write > 0) lines.push(`  WRITE: bw=${formatBytes(write)}/s, io=${formatBytes(r.jobs.reduce((s, j) => s + j.write.bytes, 0))}`);
  return lines.join('\n');
}

function latJson(l: DirectionResult['lat'], withPercentiles: boolean): Record<string, unknown> {
  const base = { min: Math.round(l.min), max: Math.round(l.max), mean: l.mean, stddev: l.stddev, N: l.N };
  return withPercentiles ? { ...base, percentile: l.percentile } : base;
}

function dirJson(d: DirectionResult): Record<string, unknown> {
  return {
    io_bytes: d.bytes,
    io_kbytes: Math.floor(d.bytes / 1024),
    bw_bytes: Math.round(d.bw),
    bw: Math.round(d.bw / 1024),
    iops: d.iops,
    runtime: Math.round(d.runtimeMs),
    total_ios: d.ios,
    short_ios: 0,
    drop_ios: 0,
    // nvmq stamps an I/O when it is submitted: submission latency is not measured apart.
    slat_ns: { min: 0, max: 0, mean: 0, stddev: 0, N: 0 },
    clat_ns: latJson(d.lat, true),
    lat_ns: latJson(d.lat, false),
  };
}

const EMPTY: DirectionResult = { ios: 0, bytes: 0, runtimeMs: 0, iops: 0, bw: 0, lat: { min: 0, max: 0, mean: 0, stddev: 0, N: 0, percentile: {} } };

/** One run in fio's JSON structure, with nvmq's extras under keys fio does not use. */
export function toJson(r: RunResult): Record<string, unknown> {
  const now = Date.now();
  return {
    'nvmq version': `nvmq-${VERSION}`,
    timestamp: Math.floor(now / 1000),
    timestamp_ms: now,
    time: new Date(now).toString(),
    engine: r.engine,
    'data path': r.dataPath,
    'percentile relative error': r.relativeError,
    notes: r.notes,
    jobs: r.jobs.map((j) => ({
      jobname: j.job.name,
      groupid: 0,
      error: JOB_ERROR[verifyOutcome(r, j)],
      eta: 0,
      elapsed: Math.round(r.elapsedMs / 1000),
      'job options': { name: j.job.name, ...j.job.given },
      read: dirJson(j.read),
      write: dirJson(j.write),
      trim: dirJson(EMPTY),
      job_runtime: Math.round(Math.max(j.read.runtimeMs, j.write.runtimeMs)),
      ...(r.cpu ? { usr_cpu: (r.cpu.userMs / r.elapsedMs) * 100, sys_cpu: (r.cpu.systemMs / r.elapsedMs) * 100 } : {}),
      verify: { checked: j.verified, read_back: j.readBack, failures: j.failures },
      workers: j.workers.map((w) => ({ worker: w.worker, ...(w.qid !== undefined ? { qid: w.qid } : {}), read: dirJson(w.read), write: dirJson(w.write), verified: w.verified, read_back: w.readBack })),
    })),
    max_rss_kib: r.maxRssKiB,
    ...(cpuPerIoUs(r) !== undefined ? { cpu_per_io_us: cpuPerIoUs(r) } : {}),
  };
}

/** CPU per I/O of `a` over `b`'s (undefined unless both were measured). */
function cpuRatio(a: RunResult, b: RunResult): number | undefined {
  const x = cpuPerIoUs(a);
  const y = cpuPerIoUs(b);
  return x !== undefined && y !== undefined && y > 0 ? x / y : undefined;
}

/** A comparison in JSON: the first run, the other under `compare`, and the ratio of their CPU per I/O. */
export function comparisonJson(a: RunResult, b: RunResult): Record<string, unknown> {
  const ratio = cpuRatio(a, b);
  return { ...toJson(a), compare: toJson(b), ...(ratio !== undefined ? { cpu_per_io_ratio: ratio } : {}) };
}

/** nvmq against another engine, job by job: IOPS, p99 and the ratio; then, for the whole run, CPU time per I/O. */
export function formatComparison(a: RunResult, b: RunResult): string {
  const rows: string[][] = [['job', 'dir', `${a.engine} IOPS`, `${b.engine} IOPS`, 'ratio', `${a.engine} p99`, `${b.engine} p99`]];
  a.jobs.forEach((ja, i) => {
    const jb = b.jobs[i];
    if (!jb) return;
    for (const dir of ['read', 'write'] as const) {
      const x = ja[dir];
      const y = jb[dir];
      if (x.ios === 0 && y.ios === 0) continue;
      const p99 = percentileKey(99);
      rows.push([ja.job.name, dir, formatCount(x.iops), formatCount(y.iops), y.iops > 0 ? `${(x.iops / y.iops).toFixed(2)}x` : '-', formatNs(x.lat.percentile[p99] ?? 0), formatNs(y.lat.percentile[p99] ?? 0)]);
    }
  });
  const perIo = (r: RunResult): string => {
    const us = cpuPerIoUs(r);
    return us === undefined ? '-' : formatNs(us * 1000);
  };
  const ratio = cpuRatio(a, b);
  rows.push(['all jobs', 'CPU per I/O', perIo(a), perIo(b), ratio === undefined ? '-' : `${ratio.toFixed(2)}x`, '', '']);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const text = rows.map((r) => r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd());
  return [`Side by side (same jobs, same regions, one after the other; ratio = ${a.engine} / ${b.engine}; CPU: all threads of each process, io-wq included):`, ...text.map((t) => `  ${t}`)].join('\n');
}
