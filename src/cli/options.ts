/**
 * The options of the `nvmq` command: one table with each option's type,
 * default, accepted range and one-line description. Parsing, `--help`, job
 * files and the error messages are all made from it, so an option cannot be
 * accepted in one place and unknown in another.
 *
 * Job options carry fio's names and meanings (`rw`, `bs`, `iodepth`, ...),
 * so the same words work on the command line and in a fio job file.
 */
import { DEFAULT_METRICS_PORT } from '../engine/metrics/server.js';
import { DEFAULT_NVME_TCP_PORT, DEFAULT_SUBNQN, type TcpTargetOptions } from '../engine/target/tcp-target.js';
import * as path from 'node:path';
import { isIP } from 'node:net';

/** A bad option or job file: one line on stderr, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const RW_MODES = ['read', 'write', 'randread', 'randwrite', 'rw', 'readwrite', 'randrw'] as const;
export type RwMode = 'read' | 'write' | 'randread' | 'randwrite' | 'rw' | 'randrw';

export const DEFAULT_IMAGE = path.join('nvmq-data', 'default.img');
/** Size of an image nvmq creates, or of a memory namespace, when --size does not say. */
export const DEFAULT_NEW_SIZE = 1 << 30;
export const MAX_BS = 1 << 20;
/** The most data one worker may have in flight (iodepth × bs): its DMA pool holds that much. */
export const MAX_INFLIGHT_BYTES = 256 << 20;

type Kind = 'size' | 'int' | 'time' | 'bool' | 'enum' | 'string' | 'host';

interface OptionDef {
  kind: Kind;
  /** The default as --help prints it; undefined when there is none. */
  default?: string;
  /** Inclusive bounds for int / size / time (time in milliseconds). */
  min?: number;
  max?: number;
  values?: readonly string[];
  description: string;
  /** Accepted in a fio job file (and applies per job). */
  job?: boolean;
  /** Other names for the same key (fio's synonyms). */
  aliases?: readonly string[];
  /** Commands it applies to (default: bench). */
  commands?: readonly Command[];
  /** May be given more than once: the values are kept, one per line. */
  repeatable?: boolean;
}

export type Command = 'bench' | 'identify' | 'smart-log' | 'serve' | 'discover';
export const COMMANDS: readonly Command[] = ['bench', 'identify', 'smart-log', 'serve', 'discover'];
/** Options that pick the namespaces: every command but discover opens some (or a remote controller, --filename nvme-tcp://). */
const NS_COMMANDS: readonly Command[] = ['bench', 'identify', 'smart-log', 'serve'];
/** Commands that can run on a remote controller. */
const REMOTE_COMMANDS: readonly Command[] = ['bench', 'identify', 'smart-log'];

export const OPTIONS = {
  name: { kind: 'string', default: 'nvmq', description: 'job name in the report', job: true },
  filename: {
    kind: 'string',
    default: DEFAULT_IMAGE,
    description: "image file or block device (serve: several, separated by ':')",
    job: true,
    commands: NS_COMMANDS,
  },
  backend: { kind: 'enum', default: 'file', values: ['file', 'memory'], description: 'namespace backend: the file or device, or RAM', job: true, commands: NS_COMMANDS },
  size: {
    kind: 'size',
    min: 4096,
    max: Number.MAX_SAFE_INTEGER,
    description: 'bytes the job covers, split evenly across numjobs (default: the namespace; a new image or memory namespace is 1G)',
    job: true,
    commands: NS_COMMANDS,
  },
  offset: { kind: 'size', default: '0', min: 0, max: Number.MAX_SAFE_INTEGER, description: 'where the job starts in the namespace', job: true },
  rw: { kind: 'enum', default: 'read', values: RW_MODES, description: 'I/O pattern', job: true, aliases: ['readwrite'] },
  rwmixread: { kind: 'int', default: '50', min: 0, max: 100, description: 'percentage of reads in rw / randrw', job: true },
  rwmixwrite: { kind: 'int', min: 0, max: 100, description: 'percentage of writes in rw / randrw (100 - rwmixread)', job: true },
  bs: { kind: 'size', default: '4k', min: 512, max: MAX_BS, description: 'block size of each I/O, a multiple of 512', job: true, aliases: ['blocksize'] },
  iodepth: { kind: 'int', default: '1', min: 1, max: 4095, description: 'I/Os in flight per worker', job: true },
  numjobs: { kind: 'int', default: '1', min: 1, max: 256, description: 'workers (threads), each with its own queue pair and its share of size', job: true },
  runtime: { kind: 'time', default: '0', min: 0, max: 7 * 86_400_000, description: 'stop after this long (s, ms, m, h suffixes; 0: when size is done)', job: true },
  time_based: { kind: 'bool', default: '0', description: 'run for the whole runtime, wrapping around size', job: true },
  ramp_time: { kind: 'time', default: '0', min: 0, max: 86_400_000, description: 'run this long before measuring', job: true },
  direct: { kind: 'bool', default: '0', description: 'O_DIRECT: bypass the page cache', job: true },
  buffered: { kind: 'bool', description: 'the opposite of direct', job: true },
  verify: { kind: 'enum', default: 'none', values: ['none', 'crc32c'], description: 'stamp each block written (LBA, write sequence, crc32c), check it on read, read every block written back at the end', job: true },
  ioengine: { kind: 'string', description: 'accepted from job files and noted: nvmq always runs its own engine', job: true },
  group_reporting: { kind: 'bool', description: 'accepted from job files: nvmq always reports per job, and per worker below it', job: true },
  'output-format': { kind: 'enum', default: 'normal', values: ['normal', 'json'], description: "report format (json: fio's structure)", aliases: ['output_format'] },
  compare: { kind: 'enum', default: 'none', values: ['none', 'node-fs', 'fio'], description: 'run the same job through node:fs promises, or fio, and print both' },
  report: { kind: 'string', description: 'write a self-contained HTML report to this file' },
  'metrics-port': { kind: 'int', min: 0, max: 65535, description: `serve Prometheus /metrics on this port (serve: default ${DEFAULT_METRICS_PORT})`, commands: ['bench', 'serve'] },
  'metrics-host': { kind: 'host', default: '127.0.0.1', description: 'address /metrics listens on (bench: with --metrics-port)', commands: ['bench', 'serve'] },
  force: { kind: 'bool', default: '0', description: 'write to a file or device nvmq did not create', commands: NS_COMMANDS },
  listen: { kind: 'string', description: `serve the namespaces to NVMe/TCP hosts on HOST:PORT ([addr]:PORT for IPv6; PORT alone: 127.0.0.1; the port defaults to ${DEFAULT_NVME_TCP_PORT})`, commands: ['serve'] },
  hostnqn: { kind: 'string', description: 'this host\'s NQN for NVMe/TCP targets (--filename nvme-tcp://..., discover; default /etc/nvme/hostnqn, else one from a random UUID)', commands: ['bench', 'identify', 'smart-log', 'discover'] },
  nqn: { kind: 'string', default: DEFAULT_SUBNQN, description: 'the NVM subsystem NQN: the one serve --listen exports, or the one --transport tcp connects to', commands: ['serve', ...REMOTE_COMMANDS] },
  transport: { kind: 'enum', values: ['tcp'], description: 'with --traddr, --trsvcid and --nqn, a remote controller as nvme connect names it (the same as --filename nvme-tcp://TRADDR:TRSVCID/NQN)', commands: REMOTE_COMMANDS },
  traddr: { kind: 'string', description: "the target's IP address or host name (with --transport tcp)", commands: REMOTE_COMMANDS },
  trsvcid: { kind: 'int', min: 1, max: 65535, description: `the target's port (with --transport tcp; default ${DEFAULT_NVME_TCP_PORT})`, commands: REMOTE_COMMANDS },
  'allow-host': { kind: 'string', description: 'a host NQN allowed to connect over NVMe/TCP (repeatable)', commands: ['serve'], repeatable: true },
  'allow-any-host': { kind: 'bool', description: 'let any NVMe/TCP host connect', commands: ['serve'] },
  help: { kind: 'bool', description: 'print this help', commands: COMMANDS },
} satisfies Record<string, OptionDef>;

export type OptionName = keyof typeof OPTIONS;
const DEFS: Record<string, OptionDef> = OPTIONS;

/** Canonical name of an option or one of its aliases. */
export function canonical(name: string): OptionName | undefined {
  if (name in DEFS) return name as OptionName;
  for (const [k, d] of Object.entries(DEFS)) if (d.aliases?.includes(name)) return k as OptionName;
  return undefined;
}

/** Raw option values, by canonical name, before they are checked. */
export type RawOptions = Partial<Record<OptionName, string>>;

/**
 * rwmixread and rwmixwrite are one setting, given either way: given together they must add up to 100,
 * and a later level (a job section over [global], the command line over a job file) replaces both.
 */
export const RWMIX: readonly OptionName[] = ['rwmixread', 'rwmixwrite'];

/** A DNS name (RFC 1123 labels): what a listen address may be besides an IP address. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** fio sizes: a number with an optional k / m / g / t / p suffix, base 1024 (fio's default kb_base). */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)([kmgtp]?)(i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const v = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  return Number.isSafeInteger(v) ? v : undefined;
}

const TIME_UNITS: Record<string, number> = { '': 1000, s: 1000, ms: 1, us: 0.001, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** fio times, in milliseconds: a number with an optional us / ms / s / m / h / d suffix, seconds by default. */
export function parseTime(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?$/i.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * TIME_UNITS[(m[2] ?? '').toLowerCase()]!;
}

function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on', ''].includes(t)) return true;
  if (['0', 'false', 'no', 'off'].includes(t)) return false;
  return undefined;
}

function formatBound(kind: Kind, v: number): string {
  if (kind === 'time') return v >= 1000 && v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`;
  if (kind === 'size') {
    for (const [u, m] of [['p', 1024 ** 5], ['t', 1024 ** 4], ['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) if (v >= m && v % m === 0) return `${v / m}${u}`;
  }
  return String(v);
}

/** Text from the user as a message echoes it: at most 60 characters (a garbage job file has long lines). */
export function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** A job file names a value as `key=value`, the command line as `--key value`. */
function showValue(where: string, raw: string | undefined): string {
  const value = raw === undefined ? raw : clip(raw);
  return where.endsWith('=') ? `${where}${value}` : `${where} ${value}`;
}

/**
 * Checks one value against its option's type and range. `where` says where
 * the value came from (`--iodepth`, or `job.fio [seq] iodepth=`).
 */
export function checkValue(name: OptionName, raw: string, where = `--${name}`): string | number | boolean {
  const d = DEFS[name]!;
  const show = showValue(where, raw);
  const range = (): string => `(${formatBound(d.kind, d.min!)}..${d.max === Number.MAX_SAFE_INTEGER ? '' : formatBound(d.kind, d.max!)})`;
  switch (d.kind) {
    case 'string':
      if (raw.trim() === '') throw new UsageError(`${where.replace(/=$/, '')} needs a value`);
      return raw;
    case 'host':
      if (raw.trim() === '') throw new UsageError(`${where.replace(/=$/, '')} needs a value`);
      if (isIP(raw) === 0 && !HOST_NAME.test(raw)) {
        throw new UsageError(`${show} is not an IP address or host name (examples: 127.0.0.1, ::1, 0.0.0.0, localhost; the port goes in --metrics-port)`);
      }
      return raw;
    case 'bool': {
      const b = parseBool(raw);
      if (b === undefined) throw new UsageError(`${show} is not a boolean (0 or 1)`);
      return b;
    }
    case 'enum': {
      const v = raw.trim().toLowerCase();
      if (!d.values!.includes(v)) throw new UsageError(`${show} is not one of ${d.values!.join(', ')}`);
      return name === 'rw' && v === 'readwrite' ? 'rw' : v;
    }
    case 'int': {
      if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${show} is not a whole number ${range()}`);
      const v = Number(raw);
      if (v < d.min! || v > d.max!) throw new UsageError(`${show} is out of range ${range()}`);
      return v;
    }
    case 'size': {
      const v = parseSize(raw);
      if (v === undefined) throw new UsageError(`${show} is not a size (examples: 4096, 4k, 1g) ${range()}`);
      if (v < d.min! || v > d.max!) throw new UsageError(`${show} is out of range ${range()}`);
      return v;
    }
    case 'time': {
      const v = parseTime(raw);
      if (v === undefined) throw new UsageError(`${show} is not a time (examples: 5, 500ms, 2m) ${range()}`);
      if (v < d.min! || v > d.max!) throw new UsageError(`${show} is out of range ${range()}`);
      return v;
    }
  }
}

export interface ParsedArgs {
  command: Command;
  /** Job files named on the command line. */
  jobFiles: string[];
  options: RawOptions;
}

/**
 * Splits argv into a command, job files and raw option values. Accepts
 * `--key value`, `--key=value` and, for booleans, a bare `--key`, as fio does.
 */
export function parseArgv(argv: readonly string[]): ParsedArgs {
  let command: Command | undefined;
  const jobFiles: string[] = [];
  const options: RawOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      if (command === undefined && jobFiles.length === 0 && (COMMANDS as readonly string[]).includes(arg)) command = arg as Command;
      else if (command === undefined && jobFiles.length === 0 && !/[./]/.test(arg)) {
        throw new UsageError(`unknown command '${clip(arg)}' (commands: ${COMMANDS.join(', ')})`);
      } else jobFiles.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const key = arg.slice(2, eq < 0 ? undefined : eq);
    const name = canonical(key);
    if (!name) throw new UsageError(`unknown option --${clip(key)} (nvmq --help lists them)`);
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (DEFS[name]!.kind === 'bool') value = '1';
    else {
      // The next option is no value: a value left empty (an unset variable) must not take it.
      if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`--${key} needs a value`);
      value = argv[++i]!;
    }
    options[name] = DEFS[name]!.repeatable && options[name] !== undefined ? `${options[name]}\n${value}` : value;
  }
  command ??= 'bench';
  for (const name of Object.keys(options) as OptionName[]) {
    const cmds = DEFS[name]!.commands ?? ['bench'];
    if (!cmds.includes(command)) throw new UsageError(`--${name} does not apply to nvmq ${command}`);
    for (const v of DEFS[name]!.repeatable ? options[name]!.split('\n') : [options[name]!]) checkValue(name, v);
  }
  if (command !== 'serve') remoteFilename(options);
  if (command === 'discover') {
    if (jobFiles.length !== 1) throw new UsageError('nvmq discover takes one address: HOST[:PORT] ([addr]:PORT for IPv6; the port defaults to 4420)');
  } else if (command !== 'bench' && jobFiles.length > 0) throw new UsageError(`nvmq ${command} takes no job file (got ${jobFiles[0]})`);
  return { command, jobFiles, options };
}

/**
 * nvme-cli's way to name a remote controller (--transport tcp --traddr
 * --trsvcid --nqn) becomes the --filename nvme-tcp://TRADDR:TRSVCID/NQN it
 * stands for; the two ways do not mix.
 */
function remoteFilename(options: RawOptions): void {
  const parts = (['traddr', 'trsvcid', 'nqn'] as const).filter((k) => options[k] !== undefined);
  if (options.transport === undefined) {
    if (parts.length > 0) throw new UsageError(`--${parts[0]} needs --transport tcp (with --traddr and --nqn: the remote controller it names)`);
    return;
  }
  if (options.filename !== undefined) throw new UsageError('--transport names the controller already: give it or --filename, not both');
  const host = options.traddr?.trim();
  if (host === undefined || host === '' || options.nqn === undefined) throw new UsageError('--transport tcp needs --traddr ADDRESS and --nqn SUBNQN (and --trsvcid PORT, default 4420)');
  if (isIP(host) === 0 && !HOST_NAME.test(host)) throw new UsageError(`${showValue('--traddr', options.traddr)} is not an IP address or host name`);
  const port = options.trsvcid === undefined ? DEFAULT_NVME_TCP_PORT : Number(options.trsvcid);
  // The NQN as written after the slash; only '%' is escaped, since the address form decodes it.
  options.filename = `nvme-tcp://${isIP(host) === 6 ? `[${host}]` : host}:${port}/${options.nqn.replace(/%/g, '%25')}`;
  for (const k of ['transport', 'traddr', 'trsvcid', 'nqn'] as const) delete options[k];
}

/** One job, checked: what a worker task and the report need. */
export interface JobSpec {
  name: string;
  filename: string;
  backend: 'file' | 'memory';
  /** Bytes the job covers (undefined: the namespace from `offset` on). */
  size: number | undefined;
  offset: number;
  rw: RwMode;
  rwmixread: number;
  bs: number;
  iodepth: number;
  numjobs: number;
  /** Milliseconds; 0 = until size is done. */
  runtime: number;
  timeBased: boolean;
  /** Milliseconds. */
  rampTime: number;
  direct: boolean;
  verify: 'none' | 'crc32c';
  /** The options as given, for the JSON report's "job options". */
  given: Record<string, string>;
}

/**
 * Options that shape the workload: when none is given (and no job file),
 * `nvmq bench` runs the embedded default. --runtime and --ramp_time only
 * change how long it runs.
 */
export const SHAPE_OPTIONS: readonly OptionName[] = ['rw', 'rwmixread', 'rwmixwrite', 'bs', 'iodepth', 'numjobs', 'size', 'offset', 'time_based', 'direct', 'buffered', 'verify'];

/** The embedded default job: short, mixed, two workers, verified. */
export const EMBEDDED_DEFAULT: RawOptions = { name: 'default', rw: 'randrw', bs: '4k', iodepth: '16', numjobs: '2', runtime: '5s', time_based: '1', verify: 'crc32c' };

/** Builds a checked job from raw values (job file values overridden by the command line). */
export function makeJob(raw: RawOptions, where: (name: OptionName) => string = (n) => `--${n}`): JobSpec {
  const get = <T extends string | number | boolean>(name: OptionName): T | undefined => {
    const v = raw[name];
    return v === undefined ? undefined : (checkValue(name, v, where(name)) as T);
  };
  const dflt = <T extends string | number | boolean>(name: OptionName): T => (get<T>(name) ?? checkValue(name, DEFS[name]!.default!)) as T;
  const bs = dflt<number>('bs');
  if (bs % 512 !== 0) throw new UsageError(`${showValue(where('bs'), raw.bs)} is not a multiple of 512 (512..${formatBound('size', MAX_BS)})`);
  const iodepth = dflt<number>('iodepth');
  if (iodepth * bs > MAX_INFLIGHT_BYTES) {
    throw new UsageError(`${showValue(where('iodepth'), raw.iodepth)} with bs ${formatBound('size', bs)} puts ${formatBound('size', iodepth * bs)} in flight per worker (at most ${formatBound('size', MAX_INFLIGHT_BYTES)})`);
  }
  let rwmixread = dflt<number>('rwmixread');
  const rwmixwrite = get<number>('rwmixwrite');
  if (rwmixwrite !== undefined && raw.rwmixread === undefined) rwmixread = 100 - rwmixwrite;
  else if (rwmixwrite !== undefined && rwmixread + rwmixwrite !== 100) {
    throw new UsageError(`${showValue(where('rwmixwrite'), raw.rwmixwrite)} with ${showValue(where('rwmixread'), raw.rwmixread)} does not add up to 100 (give one, 0..100: the other is 100 minus it)`);
  }
  const runtime = dflt<number>('runtime');
  const timeBased = dflt<boolean>('time_based');
  if (timeBased && runtime === 0) throw new UsageError(`${showValue(where('time_based'), raw.time_based)} needs a --runtime above 0 (it would run forever)`);
  const buffered = get<boolean>('buffered');
  const direct = get<boolean>('direct') ?? (buffered === undefined ? false : !buffered);
  const given: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (DEFS[k]!.job) given[k] = v;
  return {
    name: dflt<string>('name'),
    filename: dflt<string>('filename'),
    backend: dflt<'file' | 'memory'>('backend'),
    size: get<number>('size'),
    offset: dflt<number>('offset'),
    rw: dflt<RwMode>('rw'),
    rwmixread,
    bs,
    iodepth,
    numjobs: dflt<number>('numjobs'),
    runtime,
    timeBased,
    rampTime: dflt<number>('ramp_time'),
    direct,
    verify: dflt<'none' | 'crc32c'>('verify'),
    given,
  };
}

/** Run-wide settings (not per job). */
export interface RunSettings {
  outputFormat: 'normal' | 'json';
  compare: 'none' | 'node-fs' | 'fio';
  report: string | undefined;
  metrics: { port: number; host: string } | undefined;
  force: boolean;
  /** The host NQN for an NVMe/TCP target (undefined: the engine's default). */
  hostnqn: string | undefined;
}

export function makeSettings(raw: RawOptions, command: Command): RunSettings {
  const port = raw['metrics-port'] !== undefined ? (checkValue('metrics-port', raw['metrics-port']) as number) : command === 'serve' ? DEFAULT_METRICS_PORT : undefined;
  const host = raw['metrics-host'] === undefined ? (DEFS['metrics-host']!.default as string) : (checkValue('metrics-host', raw['metrics-host']) as string);
  // Without a port bench serves no /metrics: a host alone would be ignored.
  if (port === undefined && raw['metrics-host'] !== undefined) {
    throw new UsageError(`${showValue('--metrics-host', raw['metrics-host'])} needs --metrics-port (0..65535): nvmq ${command} serves /metrics only on a port given`);
  }
  return {
    outputFormat: (raw['output-format'] ?? 'normal') as 'normal' | 'json',
    compare: (raw.compare ?? 'none') as RunSettings['compare'],
    report: raw.report,
    metrics: port === undefined ? undefined : { port, host },
    force: raw.force !== undefined && (checkValue('force', raw.force) as boolean),
    hostnqn: raw.hostnqn,
  };
}

const TCP_ONLY: readonly OptionName[] = ['nqn', 'allow-host', 'allow-any-host'];

/**
 * nvmq serve's NVMe/TCP target, from --listen, --nqn, --allow-host and
 * --allow-any-host; undefined without --listen. Who may connect must be
 * said: a host NQN or any host.
 */
export function tcpTargetOptions(raw: RawOptions): TcpTargetOptions | undefined {
  if (raw.listen === undefined) {
    const stray = TCP_ONLY.find((k) => raw[k] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --listen HOST:PORT (the NVMe/TCP target it configures)`);
    return undefined;
  }
  const text = raw.listen.trim();
  const m = /^(?:\[([^\]]+)\]|([^:]*?))(?::(\d+))?$/.exec(text);
  const portOnly = /^\d+$/.test(text);
  const host = portOnly ? '127.0.0.1' : (m?.[1] ?? m?.[2] ?? '');
  const port = Number(portOnly ? text : (m?.[3] ?? DEFAULT_NVME_TCP_PORT));
  if (!m || isIP(host) === 0 || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`${showValue('--listen', raw.listen)} is not HOST:PORT with an IP address (examples: 127.0.0.1:4420, 0.0.0.0:4420, [::1]:4420, 4420)`);
  }
  const allowHosts = raw['allow-host']?.split('\n') ?? [];
  const allowAnyHost = raw['allow-any-host'] !== undefined && (checkValue('allow-any-host', raw['allow-any-host']) as boolean);
  if (allowHosts.length === 0 && !allowAnyHost) throw new UsageError('--listen: say which hosts may connect: --allow-host NQN (repeatable) or --allow-any-host');
  return { host, port, subnqn: raw.nqn ?? DEFAULT_SUBNQN, allowHosts, allowAnyHost };
}

export function helpText(): string {
  const lines = [
    'usage: nvmq [bench] [jobfile.fio ...] [options]',
    '       nvmq identify | smart-log | serve [options]',
    '       nvmq discover HOST[:PORT]',
    '',
    '  bench       (default) fio-style load test in worker threads; reads fio job files',
    '  identify    controller and namespace identity, as nvme id-ctrl / id-ns print them',
    '  smart-log   the SMART / Health Information log',
    '  serve       open the namespaces and serve /metrics (and NVMe/TCP with --listen) until SIGINT / SIGTERM',
    '  discover    the discovery log of an NVMe/TCP target, as nvme discover prints it',
    '',
    '  --filename nvme-tcp://HOST[:PORT]/SUBNQN runs bench, identify and smart-log on a remote controller.',
    '',
    'options (fio names; --key value, --key=value, or a bare --key for a boolean;',
    'untagged options are for bench, {...} names the commands an option applies to):',
  ];
  for (const [name, d] of Object.entries(DEFS)) {
    const alias = d.aliases ? ` (also --${d.aliases.join(', --')})` : '';
    const range = d.values ? ` [${d.values.join('|')}]` : d.min !== undefined ? ` [${formatBound(d.kind, d.min)}..${d.max === Number.MAX_SAFE_INTEGER ? '' : formatBound(d.kind, d.max!)}]` : '';
    const dflt = d.default !== undefined ? ` (default ${d.default})` : '';
    const cmds = d.commands === undefined || name === 'help' ? '' : d.commands === COMMANDS ? ' {all commands}' : ` {${d.commands.join(', ')}}`;
    lines.push(`  --${name.padEnd(16)}${d.description}${range}${dflt}${alias}${cmds}`);
  }
  const preset = Object.entries(EMBEDDED_DEFAULT)
    .map(([k, v]) => `--${k} ${v}`)
    .join(' ');
  lines.push(
    '',
    `With no job file and none of --${SHAPE_OPTIONS.join(', --')},`,
    `nvmq bench runs the embedded default job: ${preset} on ${DEFAULT_IMAGE}`,
    '(1G, sparse, created on first use); --runtime and --ramp_time still apply to it.',
    'Job file keys are the job options above; command-line options override them in every job.',
    'Sizes take k / m / g / t suffixes (base 1024); times s (default), ms, m, h.',
    'Exit status: 0 done, 1 failed (verify mismatch or nothing verified, I/O error, missing file), 2 bad option or job file.',
  );
  return lines.join('\n');
}
