#!/usr/bin/env node
// Multiqueue scaling: IOPS per worker from 1 to 2 workers on a memory namespace and on a file namespace
// (page cache warm: the file is read through once first), with node:fs promises on the same file at the
// same depth in the same run. Run `npm run build` first. Usage:
//   node bench/multiqueue.mjs [--seconds 3] [--depth 32] [--size-mib 256] [--runs 3] [--metrics on|off] [--json out.json]
// --metrics: the engines count I/O for Prometheus (on, the Engine's default) or not.
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { Engine } from '../dist/engine/engine.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, depth: { type: 'string', default: '32' },
  'size-mib': { type: 'string', default: '256' }, runs: { type: 'string', default: '3' }, json: { type: 'string' },
  metrics: { type: 'string', default: 'on' },
} });
const seconds = Number(values.seconds);
const depth = Number(values.depth);
const size = Number(values['size-mib']) << 20;
const runs = Number(values.runs);
if (values.metrics !== 'on' && values.metrics !== 'off') throw new Error(`--metrics must be on or off, got ${values.metrics}`);
const metrics = values.metrics === 'on';
const lbaSize = 4096;
const blocks = size / lbaSize;
const task = new URL('./tasks/randread.mjs', import.meta.url).href;
const file = 'nvmq-data/bench-multiqueue.img';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function engineRun(ns, workers) {
  const e = await Engine.open({ namespaces: [ns], workers, queueDepth: depth + 1, metrics });
  try {
    const out = await Promise.all(Array.from({ length: workers }, () => e.run(task, { nsid: 1, blocks, lbaSize, depth, seconds })));
    return out.reduce((s, r) => s + r.ios, 0) / seconds;
  } finally {
    await e.close();
  }
}

async function fsRun(workers) {
  const out = await Promise.all(Array.from({ length: workers }, () => new Promise((resolve, reject) => {
    const w = new Worker(new URL('./tasks/fs-randread.mjs', import.meta.url), { workerData: { path: file, blocks, lbaSize, depth, seconds } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  return out.reduce((s, r) => s + r.ios, 0) / seconds;
}

mkdirSync('nvmq-data', { recursive: true });
if (existsSync(file)) { rmSync(file); rmSync(file + '.nvmq.json', { force: true }); }
// Create the image through nvmq, fill it with data, then read it once so the page cache is warm.
{
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, size }], workers: 1 });
  const chunk = new Uint8Array(256 << 10).fill(0x5a);
  for (let lba = 0; lba < blocks; lba += chunk.length / lbaSize) await e.write(1, lba, chunk);
  await e.flush();
  await e.close();
  readFileSync(file);
}

const results = [];
for (const [name, make] of [
  ['nvmq memory', () => ({ backend: 'memory', size })],
  ['nvmq file (warm cache)', () => ({ backend: 'file', path: file })],
]) {
  for (const workers of [1, 2]) {
    const xs = [];
    for (let r = 0; r < runs; r++) xs.push(await engineRun(make(), workers));
    results.push({ name, workers, iops: median(xs), runs: xs });
  }
}
for (const workers of [1, 2]) {
  const xs = [];
  for (let r = 0; r < runs; r++) xs.push(await fsRun(workers));
  results.push({ name: 'node:fs promises (warm cache)', workers, iops: median(xs), runs: xs });
}

const byName = new Map();
for (const r of results) byName.set(`${r.name}/${r.workers}`, r.iops);
const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}k`);
console.log(`4 KiB random reads, depth ${depth} per worker, ${seconds} s x ${runs} runs (median), metrics ${values.metrics}, ${process.version}`);
console.log('| engine | workers | IOPS | IOPS per worker | scaling 1→2 |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of results) {
  const one = byName.get(`${r.name}/1`);
  const scaling = r.workers === 2 ? `${((r.iops / (2 * one)) * 100).toFixed(0)}% of linear` : '';
  console.log(`| ${r.name} | ${r.workers} | ${fmt(r.iops)} | ${fmt(r.iops / r.workers)} | ${scaling} |`);
}
const ratio = (a, b) => (byName.get(a) / byName.get(b)).toFixed(2);
console.log(`nvmq file / node:fs: ${ratio('nvmq file (warm cache)/1', 'node:fs promises (warm cache)/1')}x (1 worker), ${ratio('nvmq file (warm cache)/2', 'node:fs promises (warm cache)/2')}x (2 workers)`);
if (values.json) writeFileSync(values.json, JSON.stringify({ seconds, depth, runs, results }, null, 2));
