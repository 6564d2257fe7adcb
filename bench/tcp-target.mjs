#!/usr/bin/env node
// nvmq's NVMe/TCP target against the limit of Node's own TCP stack, over loopback, measured in the same run.
//   nvmq   an Engine with one namespace (memory, or a file with a warm page cache) and its target
//          (engine.listen), in one process; a JS NVMe/TCP host (bench/tcp/nvme-host.mjs, nvmq's own wire
//          layer) in another: 4 KiB random Read (data back in C2HData) or Write (data in the capsule)
//   limit  a plain node:net server answering length-prefixed requests with responses of the same sizes
//          (read: 72-byte request, 24-byte header + 4 KiB back; write: 72 + 4 KiB, 24 back), driven by the
//          same client machinery (bench/tcp/client.mjs) at the same depth
// Each round runs every case once, the limit right before the nvmq rows of the same rw and depth
// (interleaved: the machine is shared); the table gives medians over rounds, and the ratio nvmq / limit
// as the median of the rounds' ratios. CPU per I/O: process.cpuUsage() of each process (every thread) over
// the measured window, divided by the I/Os.
//   node bench/tcp-target.mjs [--seconds 3] [--rounds 3] [--depth 1,32] [--rw randread,randwrite]
//        [--ns memory,file] [--digests] [--size-mib 256] [--fill-kib 4] [--json out.json] [--cpu-prof DIR]
//        [--coalesce-writes]
// --fill-kib: the size of the writes that fill the file namespace's image before the runs (4 KiB by default).
// It sets the page cache's folio size for the file, and with it what a 4 KiB buffered write costs the
// kernel: into a large folio (the image written in 1 MiB writes) ext4 walks every block of the folio per
// write, 40-55 µs of kernel CPU per write on this machine against about 2 µs into a 4 KiB one, whoever
// submits it (docs/ARCHITECTURE.md, "NVMe/TCP target", and bench/RESULTS.md).
// --coalesce-writes: an old experiment (the target's responses of one event-loop turn in one writev), from
// before the target gathered its responses itself (commit 62da8ff); it now stops with an error
// (bench/tcp/server.mjs says why).
// --cpu-prof DIR writes V8 CPU profiles of each nvmq target process (a directory per process, a profile per
// thread: the main thread and the I/O threads) and of its host (client) process to DIR.
import { parseArgs } from 'node:util';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../dist/index.js';
import { median } from './tcp/procs.mjs';
import { measureServer } from './tcp/measure.mjs';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' },
  depth: { type: 'string', default: '1,32' }, rw: { type: 'string', default: 'randread,randwrite' },
  ns: { type: 'string', default: 'memory,file' }, digests: { type: 'boolean', default: false },
  'size-mib': { type: 'string', default: '256' }, 'fill-kib': { type: 'string', default: '4' }, warmup: { type: 'string', default: '0.5' },
  json: { type: 'string' }, 'cpu-prof': { type: 'string' }, 'coalesce-writes': { type: 'boolean', default: false },
} });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const depths = values.depth.split(',').map(Number);
const rws = values.rw.split(',');
const nss = values.ns.split(',');
const sizeMib = Number(values['size-mib']);
for (const rw of rws) if (rw !== 'randread' && rw !== 'randwrite') throw new Error(`--rw: randread or randwrite, not ${rw}`);
for (const ns of nss) if (ns !== 'memory' && ns !== 'file') throw new Error(`--ns: memory or file, not ${ns}`);
const fillBytes = Number(values['fill-kib']) * 1024;
if (!Number.isInteger(fillBytes) || fillBytes < 4096 || fillBytes > 1 << 20 || fillBytes % 4096 !== 0) throw new Error(`--fill-kib: a multiple of 4 from 4 to 1024, not ${values['fill-kib']}`);

// The file namespace's image: created by nvmq (so it opens without --force), every block written once, in
// writes of --fill-kib (the folio size its page cache then holds).
const dir = join(tmpdir(), `nvmq-tcp-bench-${process.pid}`);
mkdirSync(dir, { recursive: true });
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'ns.img');
if (nss.includes('file')) {
  const size = sizeMib << 20;
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, size, lbaSize: 4096, force: true }], workers: 1, metrics: false });
  await e.close();
  const fd = openSync(file, 'r+');
  const chunk = Buffer.alloc(fillBytes);
  for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk.fill((off >>> 20) & 0xff), 0, chunk.length, off);
  closeSync(fd);
}
let profiles = 0;

/** One measurement: a fresh server process, a fresh client process. */
async function measure(kind, ns, rw, depth) {
  const serverArgs = ['--kind', kind, '--ns', ns, '--file', file, '--size-mib', String(sizeMib)];
  if (values.digests) serverArgs.push('--digests');
  if (values['coalesce-writes']) serverArgs.push('--coalesce-writes');
  // A directory per target process: each of its threads (the main thread, the I/O threads) writes its own profile there.
  const prof = kind === 'nvmq' && values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', `${values['cpu-prof']}/target-${ns}-${rw}-qd${depth}-${++profiles}`] : [];
  if (kind === 'nvmq' && ns === 'file') readFileSync(file); // warm page cache
  const clientArgs = ['--kind', kind, '--depth', String(depth), '--rw', rw];
  if (values.digests) clientArgs.push('--digests');
  const clientProf = prof.length ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof'], '--cpu-prof-name', `host-${ns}-${rw}-qd${depth}-${profiles}.cpuprofile`] : [];
  const { result, start, end: stop } = await measureServer({ serverArgs, clientArgs, seconds, warmup: Number(values.warmup), serverExecArgv: prof, clientExecArgv: clientProf });
  const [c0, c1] = [start.cpu, stop.cpu];
  const serverUs = c1.user + c1.system - c0.user - c0.system;
  const perIo = (a, b) => (a && b ? (b - a) / result.ios : NaN);
  return { ...result, serverCpuPerIo: serverUs / result.ios, serverSysPerIo: (c1.system - c0.system) / result.ios, clientCpuPerIo: result.cpuUs / result.ios, serverWritesPerIo: perIo(start.syscalls?.w, stop.syscalls?.w), serverReadsPerIo: perIo(start.syscalls?.r, stop.syscalls?.r) };
}

const cases = [];
for (const rw of rws) for (const depth of depths) cases.push({ rw, depth });
const runs = new Map(); // key -> [result per round]
const key = (kind, ns, rw, depth) => `${kind}/${ns}/${rw}/${depth}`;
const t0 = Date.now();
for (let round = 1; round <= rounds; round++) {
  for (const { rw, depth } of cases) {
    for (const [kind, ns] of [['limit', '-'], ...nss.map((n) => ['nvmq', n])]) {
      const r = await measure(kind, ns, rw, depth);
      const k = key(kind, ns, rw, depth);
      if (!runs.has(k)) runs.set(k, []);
      runs.get(k).push(r);
      console.error(`round ${round} ${kind.padEnd(5)} ${ns.padEnd(6)} ${rw.padEnd(9)} qd${String(depth).padEnd(3)} ${(r.iops / 1000).toFixed(1).padStart(7)}k IOPS  p50 ${r.p50.toFixed(1)} µs  p99 ${r.p99.toFixed(1)} µs  cpu/io server ${r.serverCpuPerIo.toFixed(2)} (sys ${r.serverSysPerIo.toFixed(2)}) client ${r.clientCpuPerIo.toFixed(2)} µs  server syscalls/io w ${r.serverWritesPerIo.toFixed(2)} r ${r.serverReadsPerIo.toFixed(2)}${r.errors ? `  ERRORS ${r.errors}` : ''}`);
    }
  }
}

// Medians, and ratios per round against that round's limit.
const rows = [];
for (const { rw, depth } of cases) {
  const lim = runs.get(key('limit', '-', rw, depth));
  const summary = (rs) => ({ iops: median(rs.map((r) => r.iops)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), serverCpuPerIo: median(rs.map((r) => r.serverCpuPerIo)), serverSysPerIo: median(rs.map((r) => r.serverSysPerIo)), clientCpuPerIo: median(rs.map((r) => r.clientCpuPerIo)), errors: rs.reduce((n, r) => n + r.errors, 0) });
  const l = summary(lim);
  for (const ns of nss) {
    const rs = runs.get(key('nvmq', ns, rw, depth));
    const n = summary(rs);
    rows.push({ rw, depth, ns, nvmq: n, limit: l, ratio: median(rs.map((r, i) => r.iops / lim[i].iops)), p50Ratio: median(rs.map((r, i) => r.p50 / lim[i].p50)), rounds: rs.length });
  }
}
const k = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : `${(x / 1e3).toFixed(1)}k`);
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
console.log(`\n4 KiB, loopback, ${rounds} round(s) of ${seconds} s, digests ${values.digests ? 'on' : 'off'}, file namespace: warm page cache filled in ${values['fill-kib']} KiB writes; medians`);
console.log('| rw | depth | namespace | nvmq IOPS | limit IOPS | nvmq / limit | p50 nvmq / limit µs | p99 nvmq / limit µs | server CPU per I/O nvmq / limit µs (of it system) | client CPU per I/O nvmq / limit µs |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(`| ${r.rw} | ${r.depth} | ${r.ns} | ${k(r.nvmq.iops)} | ${k(r.limit.iops)} | ${f2(r.ratio)}x | ${f1(r.nvmq.p50)} / ${f1(r.limit.p50)} (${f2(r.p50Ratio)}x) | ${f1(r.nvmq.p99)} / ${f1(r.limit.p99)} | ${f2(r.nvmq.serverCpuPerIo)} (${f2(r.nvmq.serverSysPerIo)}) / ${f2(r.limit.serverCpuPerIo)} (${f2(r.limit.serverSysPerIo)}) | ${f2(r.nvmq.clientCpuPerIo)} / ${f2(r.limit.clientCpuPerIo)} |${r.nvmq.errors ? ` errors ${r.nvmq.errors}` : ''}`);
}
console.error(`(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
if (values.json) writeFileSync(values.json, JSON.stringify({ date: new Date().toISOString(), options: values, rows, runs: Object.fromEntries(runs) }, null, 2));
