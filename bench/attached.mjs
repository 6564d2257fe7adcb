#!/usr/bin/env node
// An attached application worker against an engine.run task doing the same loop (bench/tasks/randread.mjs:
// random 4 KiB reads at `depth`, plugged batches, DMA buffers), one thread each, on a memory namespace and
// on a file read through once first (warm page cache). Each round runs both once (interleaved); medians.
//   node bench/attached.mjs [--seconds 2] [--rounds 3] [--depth 32] [--size-mib 256]
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { Engine } from '../dist/index.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, depth: { type: 'string', default: '32' },
  'size-mib': { type: 'string', default: '256' },
} });
const seconds = Number(values.seconds);
const depth = Number(values.depth);
const size = Number(values['size-mib']) << 20;
const file = 'nvmq-data/bench-attached.img';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const task = new URL('./tasks/randread.mjs', import.meta.url).href;
const script = new URL('./tasks/attached-randread.mjs', import.meta.url);

async function one(backend, kind) {
  const ns = backend === 'memory' ? { backend, size } : { backend, path: file, size, force: true };
  const e = await Engine.open({ namespaces: [ns], workers: 1, metrics: false });
  try {
    if (backend === 'file') {
      // Every block written once, then read through: a warm page cache for both.
      const q = await e.queue();
      const buf = q.allocBuffer(512 << 10);
      for (let lba = 0; lba < size / 4096; lba += 128) await q.write(1, lba, 128, buf);
      q.releaseBuffer(buf);
      readFileSync(file);
    }
    const args = { nsid: 1, blocks: size / 4096, lbaSize: 4096, depth, seconds };
    if (kind === 'engine.run') return (await e.run(task, args)).ios / seconds;
    const handle = e.attachHandle();
    const w = new Worker(script, { workerData: { handle, args }, transferList: [handle.port] });
    const r = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await new Promise((resolve) => w.once('exit', resolve));
    return r.ios / seconds;
  } finally {
    await e.close();
  }
}

const out = new Map();
for (let r = 0; r < Number(values.rounds); r++) {
  for (const backend of ['memory', 'file']) {
    for (const kind of ['engine.run', 'attached']) {
      const iops = await one(backend, kind);
      const key = `${backend}|${kind}`;
      out.set(key, [...(out.get(key) ?? []), iops]);
      console.error(`round ${r + 1} ${backend} ${kind}: ${(iops / 1000).toFixed(1)}k IOPS`);
    }
  }
}
const fmt = (x) => `${(x / 1000).toFixed(1)}k`;
console.log(`one thread, 4 KiB random reads, depth ${depth}, ${seconds} s x ${values.rounds} interleaved rounds (medians), ${process.version}`);
console.log('| namespace | engine.run task | attached worker | attached / task |');
console.log('| --- | --- | --- | --- |');
for (const backend of ['memory', 'file']) {
  const a = median(out.get(`${backend}|engine.run`));
  const b = median(out.get(`${backend}|attached`));
  console.log(`| ${backend} | ${fmt(a)} | ${fmt(b)} | ${(b / a).toFixed(2)}x |`);
}
