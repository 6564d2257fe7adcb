#!/usr/bin/env node
/**
 * The `nvmq` command. With no subcommand it runs the embedded default: a
 * file-backed namespace in ./nvmq-data/default.img (1 GiB, sparse, created on
 * first use), brought up through the full NVMe path, exercised with a short
 * verified write / read / flush job.
 */
import { parseArgs } from 'node:util';
import * as path from 'node:path';
import { randomInt } from 'node:crypto';
import { openController } from '../engine/local.js';
import type { NvmeDriver } from '../engine/host/driver.js';
import { NvmqError } from '../engine/host/errors.js';
import { nativeStatus } from '../engine/native.js';

const DEFAULT_IMAGE = path.join('nvmq-data', 'default.img');
const DEFAULT_SIZE = 1 << 30;

interface Option {
  type: 'string' | 'boolean';
  default?: string | boolean;
  description: string;
}

const OPTIONS: Record<string, Option> = {
  filename: { type: 'string', default: DEFAULT_IMAGE, description: 'namespace image or block device' },
  size: { type: 'string', description: 'image size when nvmq creates it, checked against an existing one (K, M, G suffixes; default 1G)' },
  bs: { type: 'string', default: '4k', description: 'block size of the check job (a multiple of the LBA size)' },
  count: { type: 'string', default: '2048', description: 'blocks the check job writes and reads back' },
  force: { type: 'boolean', default: false, description: 'write to a file or device nvmq did not create' },
  help: { type: 'boolean', default: false, description: 'print this help' },
};

const USAGE = `usage: nvmq [check | identify | smart-log] [options]

  check       (default) verified write / read / flush job on the namespace
  identify    print the controller and namespace identities
  smart-log   print the SMART / Health Information log

options:
${Object.entries(OPTIONS)
  .map(([k, o]) => `  --${k.padEnd(10)} ${o.description}${o.default !== undefined && o.type === 'string' ? ` (default ${String(o.default)})` : ''}`)
  .join('\n')}`;

class UsageError extends Error {}

export function parseSize(text: string, name: string): number {
  const m = /^(\d+)([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${name}: '${text}' is not a size (examples: 4096, 4k, 1G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Number(m[1]) * mult;
  if (!Number.isSafeInteger(v) || v <= 0) throw new UsageError(`--${name}: '${text}' must be a positive size`);
  return v;
}

async function open(values: Record<string, string | boolean | undefined>): Promise<NvmeDriver> {
  const size = values.size === undefined ? undefined : parseSize(String(values.size), 'size');
  return openController({
    namespaces: [{ backend: 'file', path: String(values.filename), size, defaultSize: DEFAULT_SIZE, force: values.force === true }],
  });
}

function hr(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
}

async function check(d: NvmeDriver, values: Record<string, string | boolean | undefined>): Promise<number> {
  const ns = d.namespaces.get(1)!;
  const bs = parseSize(String(values.bs), 'bs');
  if (bs % ns.lbaSize !== 0 || bs > d.controller.maxTransferBytes) {
    throw new UsageError(`--bs: ${bs} must be a multiple of the LBA size ${ns.lbaSize} and at most MDTS ${d.controller.maxTransferBytes}`);
  }
  const count = Number(values.count);
  const nlb = bs / ns.lbaSize;
  const slots = Math.floor(ns.blocks / nlb);
  if (!Number.isInteger(count) || count < 1 || count > slots) throw new UsageError(`--count: '${values.count}' must be 1..${slots}`);
  const q = await d.createIoQueuePair({ entries: 64 });
  // Distinct random block positions, each written with a pattern naming its LBA and a seed.
  const seed = randomInt(1, 0x7fffffff);
  const picks = new Set<number>();
  while (picks.size < count) picks.add(randomInt(0, slots));
  const lbas = [...picks].map((p) => p * nlb);
  const fill = (buf: Uint8Array, lba: number): void => {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let i = 0; i < buf.length; i += 8) {
      dv.setUint32(i, lba, true);
      dv.setUint32(i + 4, (seed ^ i) >>> 0, true);
    }
  };
  const depth = 32;
  const run = async (op: 'write' | 'read'): Promise<{ seconds: number; bad: number[] }> => {
    const t0 = performance.now();
    const bad: number[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      const buf = new Uint8Array(bs);
      const want = new Uint8Array(bs);
      while (next < lbas.length) {
        const lba = lbas[next++]!;
        if (op === 'write') {
          fill(buf, lba);
          await q.write(1, lba, nlb, buf);
        } else {
          await q.read(1, lba, nlb, buf);
          fill(want, lba);
          if (Buffer.compare(buf, want) !== 0) bad.push(lba);
        }
      }
    };
    await Promise.all(Array.from({ length: depth }, worker));
    return { seconds: (performance.now() - t0) / 1000, bad };
  };
  const w = await run('write');
  const t0 = performance.now();
  await q.flush(1);
  const flushMs = performance.now() - t0;
  const r = await run('read');
  const line = (name: string, s: number): string => `  ${name.padEnd(6)} ${count} x ${bs} B in ${(s * 1000).toFixed(1)} ms: ${hr(count / s)} IOPS, ${hr((count * bs) / s / 1048576)} MiB/s`;
  console.log(`check job: ${count} random blocks of ${bs} bytes, depth ${depth}, one queue pair (qid ${q.qid})`);
  console.log(line('write', w.seconds));
  console.log(`  flush  ${flushMs.toFixed(1)} ms`);
  console.log(line('read', r.seconds));
  if (r.bad.length > 0) {
    console.log(`  VERIFY FAILED: ${r.bad.length} blocks differ, first at LBA ${r.bad[0]}`);
    return 1;
  }
  console.log(`  verify ok: every block read back as written`);
  return 0;
}

function printIdentify(d: NvmeDriver): void {
  const c = d.controller;
  console.log(`controller  ${c.model} (serial ${c.serial}, firmware ${c.firmware}, NVMe ${c.version})`);
  console.log(`  vid 0x${c.vid.toString(16)}  cntlid ${c.cntlid}  mdts ${c.mdts} (${c.maxTransferBytes} bytes)  nn ${c.nn}  oncs 0x${c.oncs.toString(16)}  vwc 0x${c.vwc.toString(16)}`);
  console.log(`  sqes 0x${c.sqes.toString(16)}  cqes 0x${c.cqes.toString(16)}  aerl ${c.aerl}  acl ${c.acl}  elpe ${c.elpe}  subnqn ${c.subnqn}`);
  console.log(`  I/O queue pairs granted: ${d.grantedIoQueues}, CAP.MQES ${d.cap.mqes}, CAP.TO ${d.cap.timeoutMs} ms`);
  for (const ns of d.namespaces.values()) {
    console.log(`namespace ${ns.nsid}  nsze ${ns.blocks}  lba ${ns.lbaSize} B  capacity ${(ns.blocks * ns.lbaSize) / 1048576} MiB  eui64 ${ns.eui64}  dlfeat 0x${ns.dlfeat.toString(16)}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: Object.fromEntries(Object.entries(OPTIONS).map(([k, o]) => [k, { type: o.type, ...(o.default !== undefined ? { default: o.default } : {}) }])) as never,
  }) as { values: Record<string, string | boolean | undefined>; positionals: string[] };
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const cmd = positionals[0] ?? 'check';
  if (!['check', 'identify', 'smart-log'].includes(cmd)) throw new UsageError(`unknown command '${cmd}' (commands: check, identify, smart-log)`);
  const native = nativeStatus();
  console.log(`nvmq: ${String(values.filename)} through a local NVMe controller; file I/O via node:fs${native.loaded ? ', fallocate via the native addon' : ' (native addon not loaded: zero-fill fallback)'}`);
  const d = await open(values);
  try {
    if (cmd === 'identify') {
      printIdentify(d);
      return 0;
    }
    if (cmd === 'smart-log') {
      console.log(JSON.stringify(await d.smartLog(), null, 2));
      return 0;
    }
    printIdentify(d);
    return await check(d, values);
  } finally {
    await d.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError || (e instanceof Error && /^ERR_PARSE_ARGS/.test((e as NodeJS.ErrnoException).code ?? ''))) {
      console.error(`nvmq: ${e.message}`);
      process.exitCode = 2;
    } else if (e instanceof NvmqError || (e instanceof Error && String((e as NodeJS.ErrnoException).code ?? '').startsWith('NVMQ_'))) {
      console.error(`nvmq: ${e.message} [${String((e as NodeJS.ErrnoException).code)}]`);
      process.exitCode = 1;
    } else {
      console.error(e);
      process.exitCode = 1;
    }
  },
);
