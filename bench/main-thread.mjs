#!/usr/bin/env node
// What an application calling the engine from its main thread gets, against node:fs on the same file in
// the same process: 4 KiB random reads (or writes), `depth` concurrent callers each in a closed loop.
//   engine.read       engine.read(nsid, lba, 1): a new Uint8Array per call (copied out of a bounce buffer)
//   engine.read-into  engine.read(nsid, lba, 1, buf): into the caller's Uint8Array, as node:fs reads (copied out of a bounce buffer)
//   engine.queue      (await engine.queue()).read(nsid, lba, 1, buf) with buffers from q.allocBuffer (zero copy)
//   node-fs           fs.promises FileHandle.read(buf, 0, 4096, pos)
// Warm page cache (the file is read once before each round); --direct 1 opens both with O_DIRECT.
// Each round runs every engine once (interleaved); the table gives medians of the rounds, the ratios,
// and the process's CPU time per I/O (process.cpuUsage over the measured window: every thread).
//   node bench/main-thread.mjs [--seconds 2] [--rounds 3] [--depth 1,32] [--rw randread|randwrite] [--direct 0] [--size-mib 256]
import { parseArgs } from 'node:util';
import { promises as fsp, openSync, closeSync, writeSync, readFileSync, existsSync, mkdirSync, constants } from 'node:fs';
import { Engine } from '../dist/index.js';
import { loadNative } from '../dist/engine/uring/native.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, depth: { type: 'string', default: '1,32' },
  rw: { type: 'string', default: 'randread' }, direct: { type: 'string', default: '0' }, 'size-mib': { type: 'string', default: '256' },
  engines: { type: 'string', default: 'engine.read,engine.read-into,engine.queue,node-fs' },
} });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const depths = values.depth.split(',').map(Number);
const write = values.rw === 'randwrite';
if (!['randread', 'randwrite'].includes(values.rw)) throw new Error(`--rw must be randread or randwrite, got ${values.rw}`);
const direct = values.direct === '1';
const size = Number(values['size-mib']) << 20;
const blocks = size / 4096;
const engines = values.engines.split(',');
const file = 'nvmq-data/bench-main.img';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// An image nvmq created (so it opens without --force), every block written.
mkdirSync('nvmq-data', { recursive: true });
if (!existsSync(file) || !readFileSync(`${file}.nvmq.json`, 'utf8').includes(`"size": ${size}`)) {
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, size, force: true }], workers: 1, metrics: false });
  await e.close();
  const fd = openSync(file, 'r+');
  const chunk = Buffer.alloc(1 << 20);
  for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk.fill(off >>> 20), 0, chunk.length, off);
  closeSync(fd);
}
const warm = () => { if (!direct) readFileSync(file); };

let seed = 12345;
const lba = () => (seed = (seed * 1103515245 + 12345) >>> 0) % blocks;

async function measure(depth, loop) {
  const deadline = { t: 0 };
  let ios = 0;
  const run = async (body) => { while (performance.now() < deadline.t) { await body(); ios++; } };
  // Half a second unmeasured first (JIT, rings, the main thread's queue pair).
  deadline.t = performance.now() + 500;
  await Promise.all(Array.from({ length: depth }, (_, k) => run(loop(k))));
  ios = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  deadline.t = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: depth }, (_, k) => run(loop(k))));
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  return { iops: ios / s, cpuUs: (c.user + c.system) / ios };
}

async function runEngine(kind, depth) {
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, direct }], workers: 1, metrics: false });
  try {
    if (kind === 'engine.read') {
      const data = new Uint8Array(4096).fill(7);
      return await measure(depth, () => (write ? () => e.write(1, lba(), data) : () => e.read(1, lba(), 1)));
    }
    if (kind === 'engine.read-into') {
      const bufs = Array.from({ length: depth }, () => new Uint8Array(4096).fill(7));
      return await measure(depth, (k) => (write ? () => e.write(1, lba(), bufs[k]) : () => e.read(1, lba(), 1, bufs[k])));
    }
    const q = await e.queue();
    const bufs = Array.from({ length: depth }, () => q.allocBuffer(4096));
    return await measure(depth, (k) => (write ? () => q.write(1, lba(), 1, bufs[k]) : () => q.read(1, lba(), 1, bufs[k])));
  } finally {
    await e.close();
  }
}

async function runFs(depth) {
  const fh = await fsp.open(file, (write ? constants.O_RDWR : constants.O_RDONLY) | (direct ? constants.O_DIRECT : 0));
  try {
    // O_DIRECT needs page-aligned memory: a view of a larger buffer starting where the addon says a page begins.
    const native = loadNative();
    if (direct && !native) throw new Error('--direct 1 needs the native addon (to align node:fs buffers)');
    const bufs = Array.from({ length: depth }, () => {
      const b = Buffer.alloc(8192);
      const skew = native ? (4096 - native.pageOffsetOf(b)) % 4096 : 0;
      return b.subarray(skew, skew + 4096);
    });
    return await measure(depth, (k) => (write ? () => fh.write(bufs[k], 0, 4096, lba() * 4096) : () => fh.read(bufs[k], 0, 4096, lba() * 4096)));
  } finally {
    await fh.close();
  }
}

const results = new Map();
for (let r = 0; r < rounds; r++) {
  for (const depth of depths) {
    for (const kind of engines) {
      warm();
      const res = kind === 'node-fs' ? await runFs(depth) : await runEngine(kind, depth);
      const key = `${depth}|${kind}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key).push(res);
      console.error(`round ${r + 1} depth ${depth} ${kind}: ${(res.iops / 1000).toFixed(1)}k IOPS, ${res.cpuUs.toFixed(1)} µs CPU per I/O`);
    }
  }
}

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : `${(x / 1e3).toFixed(1)}k`);
console.log(`main thread, 4 KiB ${values.rw}, ${direct ? 'O_DIRECT' : 'warm page cache'}, ${size >> 20} MiB file, ${seconds} s x ${rounds} interleaved rounds (medians), ${process.version}`);
console.log(`| depth | ${engines.join(' | ')} | ${engines.filter((k) => k !== 'node-fs').map((k) => `${k} / node-fs`).join(' | ')} | CPU µs per I/O (${engines.join(', ')}) |`);
console.log(`| --- | ${engines.map(() => '---').join(' | ')} | ${engines.filter((k) => k !== 'node-fs').map(() => '---').join(' | ')} | --- |`);
for (const depth of depths) {
  const med = Object.fromEntries(engines.map((k) => [k, { iops: median(results.get(`${depth}|${k}`).map((x) => x.iops)), cpu: median(results.get(`${depth}|${k}`).map((x) => x.cpuUs)) }]));
  const ratios = engines.filter((k) => k !== 'node-fs').map((k) => `${(med[k].iops / med['node-fs'].iops).toFixed(2)}x`);
  console.log(`| ${depth} | ${engines.map((k) => fmt(med[k].iops)).join(' | ')} | ${ratios.join(' | ')} | ${engines.map((k) => med[k].cpu.toFixed(1)).join(' / ')} |`);
}
