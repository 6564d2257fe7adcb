#!/usr/bin/env node
// 4 KiB random buffered writes to one file namespace at one depth, nvmq's NVMe/TCP target against nvmq's
// in-process engine on the same file, interleaved:
//   in-process  an Engine on the file in this process, engine.queue() in the main thread, --depth writes kept
//               in flight
//   target      bench/tcp/server.mjs --kind nvmq --ns file on the file, bench/tcp/client.mjs --kind nvmq
//               (the JS NVMe/TCP host) at --depth, as bench/tcp-target.mjs measures it
// The image is written once, in writes of --fill-kib: what sets the folio size of its page cache, and with it
// the kernel's cost of each 4 KiB write (see bench/tcp-target.mjs). CPU per I/O: process.cpuUsage() of the
// process doing the I/O (every thread, the kernel's io_uring workers included) over the measured window.
//   node bench/tcp-file-writes.mjs [--seconds 3] [--rounds 3] [--depth 32] [--fill-kib 4] [--size-mib 256]
import { parseArgs } from 'node:util';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../dist/index.js';
import { median } from './tcp/procs.mjs';
import { measureServer } from './tcp/measure.mjs';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' }, depth: { type: 'string', default: '32' },
  'fill-kib': { type: 'string', default: '4' }, 'size-mib': { type: 'string', default: '256' },
} });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const depth = Number(values.depth);
const size = Number(values['size-mib']) << 20;
const fillBytes = Number(values['fill-kib']) * 1024;
if (!Number.isInteger(fillBytes) || fillBytes < 4096 || fillBytes > 1 << 20 || fillBytes % 4096 !== 0) throw new Error(`--fill-kib: a multiple of 4 from 4 to 1024, not ${values['fill-kib']}`);
if (!Number.isInteger(depth) || depth < 1) throw new Error(`--depth: a positive integer, not ${values.depth}`);
const BLOCK = 4096;

const dir = join(tmpdir(), `nvmq-file-writes-${process.pid}`);
mkdirSync(dir, { recursive: true });
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'ns.img');
{
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, size, lbaSize: BLOCK, force: true }], workers: 1, metrics: false });
  await e.close();
  const fd = openSync(file, 'r+');
  const chunk = Buffer.alloc(fillBytes);
  for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk.fill((off >>> 20) & 0xff), 0, chunk.length, off);
  closeSync(fd);
}

async function inProcess() {
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, lbaSize: BLOCK }], workers: 1, metrics: false });
  try {
    const q = await e.queue();
    const data = Buffer.alloc(BLOCK, 0x5a);
    const blocks = size / BLOCK;
    let ios = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    // The clock, not a timer: writes that complete inside the call never let a timer run.
    const one = async () => {
      while (performance.now() < end) {
        await q.write(1, Math.floor(Math.random() * blocks), 1, data);
        ios++;
      }
    };
    await Promise.all(Array.from({ length: depth }, one));
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { iops: ios / s, cpuPerIo: (c.user + c.system) / ios, sysPerIo: c.system / ios };
  } finally {
    await e.close();
  }
}

async function target() {
  const serverArgs = ['--kind', 'nvmq', '--ns', 'file', '--file', file, '--size-mib', values['size-mib']];
  const clientArgs = ['--kind', 'nvmq', '--depth', String(depth), '--rw', 'randwrite'];
  const { result, start, end } = await measureServer({ serverArgs, clientArgs, seconds, warmup: 0.5 });
  const us = end.cpu.user + end.cpu.system - start.cpu.user - start.cpu.system;
  return { iops: result.iops, cpuPerIo: us / result.ios, sysPerIo: (end.cpu.system - start.cpu.system) / result.ios, clientCpuPerIo: result.cpuUs / result.ios };
}

const k = (x) => `${(x / 1000).toFixed(1)}k`;
const f2 = (x) => x.toFixed(2);
const runs = { inProcess: [], target: [] };
for (let round = 1; round <= rounds; round++) {
  // The order alternates: each kind goes first in every other round.
  const order = round % 2 === 1 ? ['inProcess', 'target'] : ['target', 'inProcess'];
  for (const kind of order) {
    readFileSync(file); // warm page cache (pages already there stay as they are)
    const r = kind === 'inProcess' ? await inProcess() : await target();
    runs[kind].push(r);
    console.error(`round ${round} ${kind.padEnd(10)} ${k(r.iops).padStart(7)} IOPS  cpu/io ${f2(r.cpuPerIo)} (sys ${f2(r.sysPerIo)}) µs${r.clientCpuPerIo ? `  client ${f2(r.clientCpuPerIo)} µs` : ''}  load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  }
}
const med = (rs, f) => median(rs.map(f));
console.log(`\n4 KiB random writes, depth ${depth}, ${rounds} round(s) of ${seconds} s, image filled in ${values['fill-kib']} KiB writes, warm page cache; medians`);
console.log('| kind | IOPS | CPU per I/O µs (of it system) | rounds |');
console.log('| --- | --- | --- | --- |');
for (const [name, rs] of [['in-process engine', runs.inProcess], ['NVMe/TCP target (server process)', runs.target]]) {
  console.log(`| ${name} | ${k(med(rs, (r) => r.iops))} | ${f2(med(rs, (r) => r.cpuPerIo))} (${f2(med(rs, (r) => r.sysPerIo))}) | ${rs.map((r) => k(r.iops)).join(', ')} |`);
}
console.log(`target / in-process: ${f2(median(runs.target.map((r, i) => r.iops / runs.inProcess[i].iops)))}x (median of the rounds' ratios)`);
