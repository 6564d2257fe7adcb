#!/usr/bin/env node
/**
 * The `nvmq` command: `bench` (the default: a fio-style load test in the
 * engine's worker threads), `identify`, `smart-log` and `serve`.
 *
 * Exit status: 0 done, 1 the run failed (a verify mismatch, a verified job
 * that checked no block, an I/O error, a refusal to write, a missing file for
 * a command that only reads), 2 a bad option or job file (one line on stderr).
 */
import * as fs from 'node:fs';
import { openController } from '../engine/local-device.js';
import { parseTcpAddress } from '../engine/transport/tcp/target-options.js';
import { NVME_TCP_PORT } from '../engine/spec/tcp-pdu.js';
import { discover, formatDiscoveryLog } from '../engine/transport/tcp/discover.js';
import { openController as openPciController } from '../engine/vfio-device.js';
import type { NamespaceSpec } from '../engine/local-device.js';
import { ImageError, NvmqError } from '../engine/errors.js';
import { takePortableNotice } from '../engine/uring/data-path.js';
import {
  parseArgv,
  tcpTargetOptions,
  makeJob,
  makeSettings,
  helpText,
  UsageError,
  EMBEDDED_DEFAULT,
  SHAPE_OPTIONS,
  DEFAULT_NEW_SIZE,
  type JobSpec,
  type RawOptions,
  type RunSettings,
} from './options.js';
import { loadJobFile } from './jobfile.js';
import { runNvmq, runNodeFs, dataPath, type RunIo } from './bench/runner.js';
import type { LocalTransport } from '../engine/transport/local.js';
import { runFio } from './bench/fio.js';
import { formatNormal, formatComparison, comparisonJson, toJson, UNCHECKED_WHY } from './bench/report.js';
import { renderHtml } from './bench/html.js';
import { formatIdentify, formatSmartLog } from './identify.js';
import { serve } from './serve.js';
import { verifyOutcome, type RunResult } from './bench/results.js';

/**
 * One line on stderr. Control characters (a garbage job file's bytes, an escape sequence in a value)
 * are shown as escapes, `\x00`, so they can neither break the line nor drive the terminal.
 */
function complain(message: string): void {
  const shown = message.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
  console.error(`nvmq: ${shown}`);
}

/** The jobs of a bench run: from job files, from the options, or the embedded default. */
function benchJobs(jobFiles: string[], options: RawOptions): JobSpec[] {
  if (jobFiles.length > 0) return jobFiles.flatMap((f) => loadJobFile(f, options));
  const shaped = SHAPE_OPTIONS.some((k) => options[k] !== undefined);
  return [makeJob(shaped ? options : { ...EMBEDDED_DEFAULT, ...options })];
}

function progressOut(settings: RunSettings): RunIo {
  if (settings.outputFormat === 'normal') return { progress: { write: (s) => process.stdout.write(s), isTTY: process.stdout.isTTY === true } };
  // JSON owns stdout; a terminal on stderr still gets the live line.
  return process.stderr.isTTY ? { progress: { write: (s) => process.stderr.write(s), isTTY: true } } : {};
}

async function bench(jobFiles: string[], options: RawOptions): Promise<number> {
  const jobs = benchJobs(jobFiles, options);
  const settings = makeSettings(options, 'bench');
  const io = progressOut(settings);
  const { result, layouts } = await runNvmq(jobs, settings, io);
  let other: RunResult | undefined;
  if (settings.compare === 'node-fs') other = await runNodeFs(layouts, io);
  else if (settings.compare === 'fio') other = await runFio(layouts, settings);
  if (settings.outputFormat === 'json') {
    console.log(JSON.stringify(other ? comparisonJson(result, other) : toJson(result), null, 2));
  } else {
    console.log(formatNormal(result));
    if (other) console.log(['', formatNormal(other), '', formatComparison(result, other)].join('\n'));
  }
  if (settings.report) {
    fs.writeFileSync(settings.report, renderHtml(result, other));
    if (settings.outputFormat === 'normal') console.log(`\nreport: ${settings.report}`);
  }
  const runs = [result, ...(other ? [other] : [])];
  const failures = runs.flatMap((r) => r.jobs.flatMap((j) => j.failures.map((f) => `${r.engine} job ${j.job.name}: LBA ${f.lba}: ${f.reason}`)));
  if (failures.length > 0) {
    complain(`verify failed: ${failures.join('; ')}`);
    return 1;
  }
  const unchecked = runs.flatMap((r) => r.jobs.filter((j) => verifyOutcome(r, j) === 'unchecked').map((j) => `${r.engine} job ${j.job.name}`));
  if (unchecked.length > 0) {
    complain(`verify checked no block in ${unchecked.join(', ')} (${UNCHECKED_WHY})`);
    return 1;
  }
  return 0;
}

/**
 * The namespaces identify, smart-log and serve open: --filename (':'-separated) or one memory namespace.
 * Only serve creates a missing image; looking at a file never writes to it, so it needs no --force.
 */
function namespaceSpecs(options: RawOptions, settings: RunSettings, forWrites: boolean): NamespaceSpec[] {
  const job = makeJob(options);
  if (job.backend === 'memory') return [{ backend: 'memory', size: job.size ?? DEFAULT_NEW_SIZE }];
  return job.filename.split(':').map((p) => ({
    backend: 'file',
    path: p,
    size: job.size,
    defaultSize: DEFAULT_NEW_SIZE,
    create: forWrites,
    force: settings.force,
    direct: job.direct,
    readOnly: !forWrites && !settings.force,
  }));
}

async function inspect(command: 'identify' | 'smart-log', options: RawOptions): Promise<number> {
  // --filename pci:DDDD:BB:DD.F: a PCIe controller bound to vfio-pci.
  const pci = typeof options.filename === 'string' ? /^pci:(.+)$/.exec(options.filename)?.[1] : undefined;
  if (pci !== undefined) return inspectPci(command, pci);
  // --filename nvme-tcp://HOST[:PORT]/SUBNQN: a remote controller over NVMe/TCP.
  const remote = typeof options.filename === 'string' ? parseTcpAddress(options.filename) : undefined;
  if (!remote && options.hostnqn !== undefined) throw new UsageError('--hostnqn needs --filename nvme-tcp://HOST[:PORT]/SUBNQN (the target it names this host to)');
  const d = await openController(remote ? { target: { ...remote, hostnqn: options.hostnqn } } : { namespaces: namespaceSpecs(options, makeSettings(options, command), false) });
  try {
    console.log(command === 'identify' ? formatIdentify(d) : formatSmartLog(await d.smartLog()));
    if (command === 'identify') console.log(`data path : ${remote ? `NVMe/TCP to ${remote.host}:${remote.port ?? NVME_TCP_PORT} (${remote.subnqn})` : dataPath((d.transport as LocalTransport).controller)}`);
    return 0;
  } finally {
    await d.close();
  }
}

/** identify / smart-log of a PCIe controller through VFIO (the device bound to vfio-pci; as root). */
async function inspectPci(command: 'identify' | 'smart-log', pci: string): Promise<number> {
  const c = await openPciController({ pci });
  try {
    console.log(command === 'identify' ? formatIdentify(c.driver) : formatSmartLog(await c.driver.smartLog()));
    if (command === 'identify') console.log(`data path : VFIO, PCIe function ${pci} (completions: ${c.transport.completions})`);
    return 0;
  } finally {
    await c.close();
  }
}

/** `nvmq discover HOST[:PORT]`: the target's discovery log, as nvme discover prints it. */
async function discoverCommand(address: string, hostnqn: string | undefined): Promise<number> {
  const m = /^(?:\[([^\]]+)\]|([^:/]+))(?::(\d+))?$/.exec(address.trim());
  const port = Number(m?.[3] ?? NVME_TCP_PORT);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${JSON.stringify(address)} is not HOST[:PORT] (examples: 192.0.2.10, 192.0.2.10:4420, [::1]:4420)`);
  console.log(formatDiscoveryLog(await discover({ host: m[1] ?? m[2]!, port, hostnqn })));
  return 0;
}

/** Why a missing image is an error rather than created: only commands that write create one. */
const NOT_CREATED = 'identify, smart-log and read-only jobs never create an image; a write job or nvmq serve does';

async function main(argv: string[]): Promise<number> {
  // The portable path is named in the report header; stderr gets one plain line, not a process warning.
  takePortableNotice(complain);
  const { command, jobFiles, options } = parseArgv(argv);
  if (options.help !== undefined) {
    console.log(helpText());
    return 0;
  }
  switch (command) {
    case 'bench':
      return bench(jobFiles, options);
    case 'identify':
    case 'smart-log':
      return inspect(command, options);
    case 'discover':
      return discoverCommand(jobFiles[0]!, options.hostnqn);
    case 'serve':
      return serve(namespaceSpecs(options, makeSettings(options, 'serve'), true), makeSettings(options, 'serve'), tcpTargetOptions(options));
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const code = e instanceof Error ? String((e as NodeJS.ErrnoException).code ?? '') : '';
    if (e instanceof UsageError) {
      complain(e.message);
      process.exitCode = 2;
    } else if (e instanceof NvmqError || code.startsWith('NVMQ_')) {
      const missing = e instanceof ImageError && code === 'NVMQ_IMAGE_NOT_FOUND' && e.path !== undefined;
      complain(`${missing ? `${e.path} does not exist (${NOT_CREATED})` : (e as Error).message} [${code}]`);
      process.exitCode = 1;
    } else {
      complain(e instanceof Error ? e.message : String(e));
      process.exitCode = 1;
    }
  },
);
