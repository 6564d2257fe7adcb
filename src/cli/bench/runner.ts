/**
 * The main thread's side of `nvmq bench`: lay the jobs out on namespaces,
 * start one closed loop per worker (in the engine's workers, or in plain
 * threads over node:fs for --compare node-fs), watch their shared counters
 * for live progress, and gather the figures once they are done.
 */
import { performance } from 'node:perf_hooks';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { randomInt } from 'node:crypto';
import { Engine, type EngineOptions } from '../../engine/engine.js';
import type { NamespaceSpec } from '../../engine/local-device.js';
import type { InProcessDevice } from '../../engine/device/controller.js';
import { dataPathStatus } from '../../engine/uring/data-path.js';
import { Histogram, RELATIVE_ERROR } from './histogram.js';
import { WorkerStats, type JobLayout, C_READ_IOS, C_READ_BYTES, C_WRITE_IOS, C_WRITE_BYTES, C_MEASURED_MS } from './stats.js';
import { direction, type JobResult, type RunResult, type Sample, type WorkerResult } from './results.js';
import { Progress } from './progress.js';
import { DEFAULT_NEW_SIZE, UsageError, type JobSpec, type RunSettings } from '../options.js';
import type { LoopArgs, LoopResult } from './loop.js';
import type { JobTaskArgs } from './job-task.js';
import { parseTcpAddress, type TcpTarget } from '../../engine/transport/tcp/target-options.js';
import type { FsTaskArgs } from './fs-task.js';
import { normalizePciAddress } from '../../engine/transport/vfio/sysfs.js';

/** Which data path moves the engine's file I/O, and why: printed once in the report header. */
export function dataPath(controller: InProcessDevice | undefined, remote?: { target: { host: string; port: number; subnqn: string } }, vfio?: { pci: string; completions: string }): string {
  if (vfio) return `VFIO, PCIe function ${vfio.pci}, one I/O queue pair per thread (completions: ${vfio.completions})`;
  if (!controller) return remote ? `NVMe/TCP to ${remote.target.host}:${remote.target.port} (${remote.target.subnqn}), one connection per I/O queue` : 'remote';
  const files = [...controller.namespaces.values()].some((ns) => ns.backend.kind === 'file');
  if (!files) return 'memory (no kernel I/O)';
  if (controller.dataPath === 'io_uring') return 'io_uring (one ring per I/O queue, zero copy)';
  const st = dataPathStatus();
  return `node:fs (libuv thread pool)${st.reason ? `: ${st.reason}` : ''}`;
}

export const writes = (job: JobSpec): boolean => job.rw !== 'read' && job.rw !== 'randread';

/** A namespace shared by the jobs that name the same file; one per job for memory; namespace 1 of a remote controller. */
interface NamespacePlan {
  key: string;
  /** Undefined for the remote controller's namespace. */
  spec: NamespaceSpec | undefined;
  jobs: number[];
}

/**
 * The remote controller the jobs run on (--filename nvme-tcp://HOST[:PORT]/SUBNQN), or undefined when
 * they run on files or memory; all of them or none, on one target.
 */
function remoteOf(jobs: readonly JobSpec[]): TcpTarget | undefined {
  const targets = jobs.map((j) => (j.backend === 'file' ? parseTcpAddress(j.filename) : undefined));
  const first = targets[0];
  if (targets.every((t) => t === undefined)) return undefined;
  if (!first || targets.some((t) => t === undefined || t.host !== first.host || t.port !== first.port || t.subnqn !== first.subnqn)) {
    throw new UsageError('jobs on an nvme-tcp:// target must all name the same target (one remote controller per run)');
  }
  return first;
}

/**
 * The PCIe controller the jobs run on (--filename pci:DDDD:BB:DD.F, bound to vfio-pci), or undefined;
 * all of them or none, on one controller.
 */
function pciOf(jobs: readonly JobSpec[]): string | undefined {
  const named = jobs.map((j) => (j.backend === 'file' && j.filename.startsWith('pci:') ? j.filename : undefined));
  if (named.every((n) => n === undefined)) return undefined;
  const addresses = named.map((n) => {
    if (n === undefined) return '';
    try {
      return normalizePciAddress(n);
    } catch (e) {
      throw new UsageError(`--filename ${n}: ${(e as Error).message}`);
    }
  });
  if (addresses.some((a) => a === '' || a !== addresses[0])) throw new UsageError('jobs on a pci: device must all name the same device (one PCIe controller per run)');
  return addresses[0];
}

function namespacesOf(jobs: readonly JobSpec[], force: boolean, remote: boolean): NamespacePlan[] {
  // A remote or PCIe run: every job on the controller's namespace 1.
  if (remote) return [{ key: 'remote', spec: undefined, jobs: jobs.map((_, i) => i) }];
  const plans = new Map<string, NamespacePlan>();
  jobs.forEach((job, i) => {
    const lbaSize = job.bs % 4096 === 0 && job.offset % 4096 === 0 ? 4096 : 512;
    const end = job.size === undefined ? undefined : job.offset + job.size;
    if (job.backend === 'memory') {
      plans.set(`memory:${i}`, { key: `memory:${i}`, spec: { backend: 'memory', size: end ?? DEFAULT_NEW_SIZE, lbaSize }, jobs: [i] });
      return;
    }
    const key = path.resolve(job.filename);
    const p = plans.get(key);
    if (p) {
      const spec = p.spec as Extract<NamespaceSpec, { backend: 'file' }>;
      if (spec.direct !== job.direct) throw new UsageError(`jobs on ${job.filename} disagree on direct; use one setting per file`);
      spec.readOnly = spec.readOnly === true && !writes(job);
      spec.create = spec.create === true || writes(job);
      if (lbaSize === 512) spec.lbaSize = 512;
      if (end !== undefined) spec.defaultSize = Math.max(spec.defaultSize ?? 0, end);
      p.jobs.push(i);
      return;
    }
    // A job that only reads opens the file read-only (reading a file nvmq did not create needs no --force)
    // and never creates it.
    const spec: NamespaceSpec = {
      backend: 'file',
      path: job.filename,
      defaultSize: end ?? DEFAULT_NEW_SIZE,
      create: writes(job),
      force,
      direct: job.direct,
      lbaSize,
      readOnly: !writes(job),
    };
    plans.set(key, { key, spec, jobs: [i] });
  });
  return [...plans.values()];
}

/**
 * The one place the command's settings become Engine options. Metrics are
 * counted always; with --metrics-port they are also served on /metrics.
 */
export function engineOptions(namespaces: NamespaceSpec[], jobs: readonly JobSpec[], settings: RunSettings): EngineOptions {
  const depth = Math.max(...jobs.map((j) => j.iodepth));
  const inflight = Math.max(...jobs.map((j) => j.iodepth * j.bs));
  return {
    namespaces,
    workers: jobs.reduce((s, j) => s + j.numjobs, 0),
    queueDepth: depth + 1,
    poolSize: Math.ceil((inflight + (64 << 10)) / (1 << 20)) * (1 << 20),
    // MDTS 2^8 pages: transfers up to 1 MiB, the largest --bs.
    controller: { mdts: 8 },
    metrics: settings.metrics ?? true,
  };
}

/** Where each job's workers run on its namespace. */
function layout(jobs: readonly JobSpec[], plans: NamespacePlan[], nsBytes: (nsid: number) => number, lbaSizeOf: (nsid: number) => number): JobLayout[] {
  const out: JobLayout[] = [];
  let next = 0;
  jobs.forEach((job, i) => {
    const nsIndex = plans.findIndex((p) => p.jobs.includes(i));
    const nsid = nsIndex + 1;
    const plan = plans[nsIndex]!;
    const lbaSize = lbaSizeOf(nsid);
    const capacity = nsBytes(nsid);
    const size = job.size ?? capacity - job.offset;
    const name = job.backend === 'memory' ? 'the memory namespace' : job.filename;
    if (job.offset % lbaSize !== 0) throw new UsageError(`--offset ${job.offset} is not a multiple of the LBA size ${lbaSize}`);
    if (size <= 0 || job.offset + size > capacity) {
      throw new UsageError(`job ${job.name}: offset ${job.offset} + size ${size} does not fit in ${name} (${capacity} bytes)`);
    }
    // fio's offset_increment: each worker gets its own slice, so workers never race on a block.
    const perWorker = Math.floor(size / job.numjobs / job.bs) * job.bs;
    if (perWorker < job.bs) throw new UsageError(`job ${job.name}: size ${size} split across ${job.numjobs} workers leaves less than one ${job.bs}-byte block each`);
    const workers = Array.from({ length: job.numjobs }, () => next++);
    if (job.bs % lbaSize !== 0) throw new UsageError(`--bs ${job.bs} is not a multiple of ${name}'s LBA size ${lbaSize}`);
    out.push({ job, nsid, lbaSize, ...(plan.spec?.backend === 'file' ? { path: plan.spec.path } : {}), regionStart: job.offset, perWorker, workers });
  });
  return out;
}

function loopArgs(l: JobLayout, k: number, stats: SharedArrayBuffer, seed: number): LoopArgs {
  const j = l.job;
  return {
    rw: j.rw,
    rwmixread: j.rwmixread,
    bs: j.bs,
    iodepth: j.iodepth,
    runtime: j.runtime,
    timeBased: j.timeBased,
    rampTime: j.rampTime,
    verify: j.verify,
    regionStart: l.regionStart + k * l.perWorker,
    regionBytes: l.perWorker,
    lbaSize: l.lbaSize,
    worker: l.workers[k]!,
    stats,
    seed: (seed + k * 0x9e3779b9) >>> 0,
  };
}

export interface RunIo {
  /** Where progress goes, and whether it is a terminal (one rewritten line) or not (plain lines). */
  progress?: { write(s: string): void; isTTY: boolean };
}

type Launch = (l: JobLayout, k: number, args: LoopArgs) => Promise<LoopResult & { qid?: number }>;

/** Runs every job's workers at once, with progress, and gathers their figures. */
async function runWorkers(engine: string, dataPathText: string, layouts: JobLayout[], launch: Launch, io: RunIo): Promise<RunResult> {
  const total = layouts.reduce((s, l) => s + l.workers.length, 0);
  const sab = WorkerStats.allocate(total);
  const stats = Array.from({ length: total }, (_, i) => new WorkerStats(sab, i));
  const seed = randomInt(1, 0x7fffffff);
  const samples: Sample[] = [];
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const sample = (): Sample => {
    const s: Sample = { t: performance.now() - t0, readIos: 0, writeIos: 0, readBytes: 0, writeBytes: 0 };
    for (const w of stats) {
      s.readIos += w.counters[C_READ_IOS]!;
      s.writeIos += w.counters[C_WRITE_IOS]!;
      s.readBytes += w.counters[C_READ_BYTES]!;
      s.writeBytes += w.counters[C_WRITE_BYTES]!;
    }
    return s;
  };
  const longest = Math.max(...layouts.map((l) => l.job.rampTime + l.job.runtime));
  const interval = longest > 0 && longest <= 10_000 ? 250 : 1000;
  samples.push(sample());
  const progress = io.progress ? new Progress(io.progress, layouts, stats) : undefined;
  const timer = setInterval(() => {
    const s = sample();
    samples.push(s);
    progress?.update(s, samples);
  }, interval);
  let results: Array<LoopResult & { qid?: number }>;
  try {
    results = await Promise.all(layouts.flatMap((l) => l.workers.map((_, k) => launch(l, k, loopArgs(l, k, sab, seed)))));
  } finally {
    clearInterval(timer);
    progress?.end();
  }
  samples.push(sample());
  const cpu = process.cpuUsage(cpu0);
  const byWorker = new Map(results.map((r) => [r.worker, r]));
  const jobs: JobResult[] = layouts.map((l) => {
    const read = new Histogram();
    const write = new Histogram();
    let runtimeMs = 0;
    const workers: WorkerResult[] = l.workers.map((w) => {
      const st = stats[w]!;
      const c = st.counters;
      const r = byWorker.get(w)!;
      read.add(st.read);
      write.add(st.write);
      const ms = c[C_MEASURED_MS]!;
      runtimeMs = Math.max(runtimeMs, ms);
      return {
        worker: w,
        ...(r.qid !== undefined ? { qid: r.qid } : {}),
        read: direction(c[C_READ_IOS]!, c[C_READ_BYTES]!, ms, st.read),
        write: direction(c[C_WRITE_IOS]!, c[C_WRITE_BYTES]!, ms, st.write),
        verified: r.verified,
        readBack: r.readBack,
        ...(r.failure ? { failure: r.failure } : {}),
      };
    });
    const sum = (f: (w: WorkerResult) => number): number => workers.reduce((s, w) => s + f(w), 0);
    return {
      job: l.job,
      read: direction(sum((w) => w.read.ios), sum((w) => w.read.bytes), runtimeMs, read),
      write: direction(sum((w) => w.write.ios), sum((w) => w.write.bytes), runtimeMs, write),
      workers,
      verified: sum((w) => w.verified),
      readBack: sum((w) => w.readBack),
      failures: workers.flatMap((w) => (w.failure ? [w.failure] : [])),
      histograms: { read, write },
      region: { start: l.regionStart, perWorker: l.perWorker },
    };
  });
  return {
    engine,
    dataPath: dataPathText,
    verifies: true,
    jobs,
    elapsedMs: performance.now() - t0,
    cpu: { userMs: cpu.user / 1000, systemMs: cpu.system / 1000 },
    maxRssKiB: process.resourceUsage().maxRSS,
    samples,
    relativeError: RELATIVE_ERROR,
    notes: [],
  };
}

const JOB_TASK = new URL('./job-task.js', import.meta.url);
const FS_TASK = new URL('./fs-task.js', import.meta.url);

/** Runs the jobs through nvmq's engine; returns the figures and the layouts (for a comparison on the same regions). */
export async function runNvmq(jobs: readonly JobSpec[], settings: RunSettings, io: RunIo): Promise<{ result: RunResult; layouts: JobLayout[] }> {
  const pci = pciOf(jobs);
  const target = pci === undefined ? remoteOf(jobs) : undefined;
  if (!target && settings.hostnqn !== undefined) throw new UsageError('--hostnqn needs --filename nvme-tcp://HOST[:PORT]/SUBNQN (the target it names this host to)');
  const plans = namespacesOf(jobs, settings.force, target !== undefined || pci !== undefined);
  const local = engineOptions(plans.flatMap((p) => (p.spec ? [p.spec] : [])), jobs, settings);
  const device = target ? { target: { ...target, hostnqn: settings.hostnqn } } : pci !== undefined ? { pci } : undefined;
  const engine = await Engine.open(device ? { ...local, namespaces: undefined, controller: undefined, ...device } : local);
  // A remote target's breaks and reconnects, one line each on stderr, as they happen.
  const say = (line: string): void => void process.stderr.write(`${io.progress?.isTTY ? '\n' : ''}nvmq: ${line}\n`);
  engine.on('disconnected', (e) => say(`${e.message}: reconnecting (in-flight I/O ends with a path error)`));
  engine.on('reconnected', (r) => say(`reconnected after ${r.attempts} attempt(s), ${(r.downtimeMs / 1000).toFixed(1)} s without the target`));
  engine.on('lost', (e) => say(e.message));
  try {
    const layouts = layout(
      jobs,
      plans,
      (nsid) => {
        const ns = engine.namespace(nsid);
        return ns.blocks * ns.lbaSize;
      },
      (nsid) => engine.namespace(nsid).lbaSize,
    );
    const result = await runWorkers('nvmq', dataPath(engine.controller, engine.remote, engine.vfio), layouts, (l, _k, args) => engine.run<LoopResult & { qid?: number }>(JOB_TASK, { ...args, nsid: l.nsid } satisfies JobTaskArgs), io);
    const served = engine.metricsAddress;
    if (served) result.notes.push(`metrics were served on ${served.url} during the run`);
    const engines = new Set(jobs.flatMap((j) => (j.given.ioengine ? [j.given.ioengine] : [])));
    for (const e of engines) result.notes.push(`ioengine=${e} in the job file: nvmq runs its own engine`);
    return { result, layouts };
  } finally {
    // Close shuts the controller down: every namespace flushed (fdatasync).
    await engine.close();
  }
}

/** The same jobs on the same regions through node:fs/promises, one plain worker thread per nvmq worker. */
export async function runNodeFs(layouts: JobLayout[], io: RunIo): Promise<RunResult> {
  for (const l of layouts) if (!l.path) throw new UsageError('--compare node-fs needs a file (--filename), not --backend memory');
  return runWorkers(
    'node:fs',
    'node:fs/promises FileHandle.read / write (libuv thread pool)',
    layouts,
    (l, _k, args) =>
      new Promise((resolve, reject) => {
        const w = new Worker(FS_TASK, { workerData: { ...args, path: l.path!, direct: l.job.direct, writes: writes(l.job) } satisfies FsTaskArgs });
        w.once('message', (m: { ok: boolean; result?: LoopResult; message?: string }) => {
          if (m.ok) resolve(m.result!);
          else reject(new Error(`node:fs worker: ${m.message ?? 'failed'}`));
        });
        w.once('error', reject);
        w.once('exit', (code) => {
          if (code !== 0) reject(new Error(`node:fs worker exited with code ${code}`));
        });
      }),
    io,
  );
}
