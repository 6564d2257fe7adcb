#!/usr/bin/env node
// The native data path against the alternatives, on the same 1 GiB file in one run: nvmq on io_uring (its
// workers resubmitting completions in plugged batches, one doorbell each, through the callback API:
// readCallback / writeCallback; `io_uring-each`, one doorbell per command as fio's default
// iodepth_batch_submit=1; `io_uring-wait`, the same with the worker waiting for completions inside
// io_uring_enter (q.wait()) as fio does; `io_uring-promise`, plugged batches through the Promise API),
// nvmq on its portable node:fs path, node:fs promises, and fio (--ioengine=io_uring). 4 KiB random reads
// and writes, depth 1 and 32, 1 and 2 workers / jobs, with O_DIRECT and from a warm page cache (the file is
// read once before the buffered runs, and fio runs with --invalidate=0). Every engine first runs `--ramp`
// seconds unmeasured (fio: --ramp_time), which takes nvmq's JIT warm-up out of the measured window. Each
// round runs every engine once; the table gives the medians of the rounds. Run `npm run build` first.
//   node bench/uring.mjs [--seconds 3] [--ramp 1] [--runs 1] [--rw randread,randwrite] [--depth 1,32] [--workers 1,2]
//                        [--direct 0,1] [--engines io_uring,io_uring-each,io_uring-wait,io_uring-spin,io_uring-promise,portable,node-fs,fio]
//                        [--spin-us 200] [--json out.json]
// Besides IOPS and p50 latency every engine reports the CPU time its process spent per I/O (all threads,
// the kernel's io_uring workers included), which prices `io_uring-spin`: waits that poll the ring for up to
// --spin-us before they sleep.
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync, openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import { Engine } from '../dist/engine/engine.js';
import { openImage } from '../dist/engine/device/backends/image.js';
import { dataPathStatus } from '../dist/engine/uring/data-path.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, runs: { type: 'string', default: '1' }, ramp: { type: 'string', default: '1' },
  rw: { type: 'string', default: 'randread,randwrite' }, depth: { type: 'string', default: '1,32' },
  workers: { type: 'string', default: '1,2' }, direct: { type: 'string', default: '0,1' },
  engines: { type: 'string', default: 'io_uring,io_uring-each,io_uring-wait,io_uring-spin,io_uring-promise,portable,node-fs,fio' }, json: { type: 'string' },
  'spin-us': { type: 'string', default: '200' },
  'size-mib': { type: 'string', default: '1024' },
} });
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const seconds = Number(values.seconds);
const ramp = Number(values.ramp);
if (!(ramp >= 0)) throw new Error(`--ramp must be a number of seconds >= 0, got ${values.ramp}`);
const runs = Number(values.runs);
const spinUs = Number(values['spin-us']);
if (!Number.isInteger(spinUs) || spinUs < 0 || spinUs > 1_000_000) throw new Error(`--spin-us must be an integer from 0 to 1000000, got ${values['spin-us']}`);
const size = Number(values['size-mib']) << 20;
const lbaSize = 4096;
const blocks = size / lbaSize;
const file = 'nvmq-data/bench-uring.img';
const task = new URL('./tasks/job.mjs', import.meta.url).href;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (dataPathStatus().path !== 'io_uring') {
  console.error(`io_uring unavailable: ${dataPathStatus().reason}`);
  process.exit(1);
}

// A 1 GiB image created by nvmq, every block written (O_DIRECT reads of holes would not reach the disk).
mkdirSync('nvmq-data', { recursive: true });
if (!existsSync(file) || readFileSync(file + '.nvmq.json', 'utf8').includes(`"size": ${size}`) === false) {
  const img = openImage({ path: file, size, force: true });
  closeSync(img.fd);
  const fd = openSync(file, 'r+');
  const chunk = Buffer.alloc(8 << 20, 0x5a);
  for (let pos = 0; pos < size; pos += chunk.length) writeSync(fd, chunk, 0, chunk.length, pos);
  fsyncSync(fd);
  closeSync(fd);
}
const warm = () => execFileSync('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 0 });
// Every run starts with no dirty pages: writeback left over from a write run would slow the next run down.
const settle = () => execFileSync('sync');

// CPU time (µs) over the measured window, from `ramp` to `ramp + seconds` after the call (the jobs start
// with it; their own clocks differ from this by milliseconds). `used` reads a running total in µs; by
// default this process's, all threads.
const ownCpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
function cpuWindow(used = ownCpu) {
  return new Promise((resolve) => {
    setTimeout(() => {
      const from = used();
      setTimeout(() => resolve(used() - from), seconds * 1000);
    }, ramp * 1000);
  });
}

// User + system time (µs) of process `root` and its descendants, every thread counted (the kernel's io_uring
// workers are threads of the process they serve), from /proc; clock-tick resolution.
const tickUs = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
function treeCpu(root) {
  const procs = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the command name (which may hold spaces): state ppid ... utime (14th field) stime (15th).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    procs.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
  }
  let ticks = 0;
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, p] of procs) {
      if (!tree.has(pid) && tree.has(p.ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of tree) ticks += procs.get(pid)?.ticks ?? 0;
  return ticks * tickUs;
}

async function nvmq(dataPath, { rw, depth, workers, direct }, batch = 'plug', api = 'callback', spin = 0) {
  // workerSemiSpaceMb: 16 keeps the workers out of a GC-heavy mode that otherwise shows up about one run in five.
  const e = await Engine.open({ namespaces: [{ backend: 'file', path: file, direct }], workers, queueDepth: Math.max(depth + 1, 8), controller: { dataPath }, workerSemiSpaceMb: 16 });
  try {
    const cpu = cpuWindow();
    const out = await Promise.all(Array.from({ length: workers }, () => e.run(task, { nsid: 1, blocks, lbaSize, depth, seconds, ramp, write: rw === 'randwrite', batch, api, spinUs: spin })));
    const ios = out.reduce((s, r) => s + r.ios, 0);
    return { iops: ios / seconds, p50: median(out.map((r) => r.p50)), cpu: (await cpu) / ios };
  } finally {
    await e.close();
  }
}

async function nodeFs({ rw, depth, workers, direct }) {
  const cpu = cpuWindow();
  const out = await Promise.all(Array.from({ length: workers }, () => new Promise((resolve, reject) => {
    const w = new Worker(new URL('./tasks/fs-job.mjs', import.meta.url), { workerData: { path: file, blocks, lbaSize, depth, seconds, ramp, write: rw === 'randwrite', direct } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  const ios = out.reduce((s, r) => s + r.ios, 0);
  return { iops: ios / seconds, p50: median(out.map((r) => r.p50)), cpu: (await cpu) / ios };
}

async function fio({ rw, depth, workers, direct }) {
  const args = ['--name=bench', `--filename=${file}`, `--rw=${rw}`, '--bs=4k', `--iodepth=${depth}`, `--numjobs=${workers}`,
    '--ioengine=io_uring', `--direct=${direct ? 1 : 0}`, '--invalidate=0', '--time_based', `--runtime=${seconds}`, `--ramp_time=${ramp}`,
    `--size=${size}`, '--group_reporting', '--lat_percentiles=1', '--output-format=json'];
  const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const status = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  // fio's own usr_cpu / sys_cpu count each job's thread only, not the io_uring worker threads (io-wq) that
  // serve its buffered writes: its CPU time is taken as nvmq's is, for fio and its job processes with all
  // their threads, over the same window.
  const cpu = cpuWindow(() => treeCpu(child.pid));
  if ((await status) !== 0) throw new Error(`fio failed: ${stderr}`);
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  const side = rw === 'randwrite' ? job.write : job.read;
  return { iops: side.iops, p50: (side.lat_ns?.percentile?.['50.000000'] ?? 0) / 1000, cpu: (await cpu) / (side.iops * seconds) };
}

const engines = {
  io_uring: (c) => nvmq('io_uring', c),
  'io_uring-each': (c) => nvmq('io_uring', c, 'each'),
  'io_uring-promise': (c) => nvmq('io_uring', c, 'plug', 'promise'),
  'io_uring-wait': (c) => nvmq('io_uring', c, 'wait'),
  'io_uring-spin': (c) => nvmq('io_uring', c, 'wait', 'callback', spinUs),
  portable: (c) => nvmq('portable', c),
  'node-fs': nodeFs,
  fio,
};
const wanted = list(values.engines);
const results = [];
for (const direct of list(values.direct).map((d) => d === '1')) {
  for (const rw of list(values.rw)) {
    for (const depth of list(values.depth).map(Number)) {
      for (const workers of list(values.workers).map(Number)) {
        const cfg = { rw, depth, workers, direct };
        const row = { ...cfg };
        const xs = Object.fromEntries(wanted.map((name) => [name, []]));
        // Round by round, every engine once: a slow spell of the shared machine hits them all alike.
        for (let r = 0; r < runs; r++) {
          for (const name of wanted) {
            settle();
            if (!direct) warm();
            xs[name].push(await engines[name](cfg));
          }
        }
        for (const name of wanted) row[name] = { iops: median(xs[name].map((x) => x.iops)), p50: median(xs[name].map((x) => x.p50)), cpu: median(xs[name].map((x) => x.cpu)) };
        results.push(row);
        const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}k`);
        console.error(`${direct ? 'O_DIRECT' : 'warm'} ${rw} depth ${depth} x${workers}: ` + wanted.map((n) => `${n} ${fmt(row[n].iops)} (p50 ${row[n].p50.toFixed(1)} µs)`).join(', '));
      }
    }
  }
}

const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}k`);
console.log(`4 KiB random I/O on a ${size >> 20} MiB file, ${seconds} s (after ${ramp} s unmeasured) x ${runs} run(s) (median), ${process.version}, spin ${spinUs} µs, IOPS (p50 latency µs)`);
// A ratio to fio for every nvmq engine run, and io_uring against node:fs promises.
const vsFio = wanted.includes('fio') ? wanted.filter((n) => n.startsWith('io_uring') || n === 'portable') : [];
const ratioCols = [...vsFio.map((n) => [n, 'fio']), ...(wanted.includes('io_uring') && wanted.includes('node-fs') ? [['io_uring', 'node-fs']] : [])];
const cells = (xs) => `| ${xs.join(' | ')} |`;
console.log(cells(['cache', 'rw', 'depth', 'workers', ...wanted, ...ratioCols.map(([a, b]) => `${a} / ${b}`)]));
console.log(cells(Array(4 + wanted.length + ratioCols.length).fill('---')));
for (const r of results) {
  const ratio = ([a, b]) => `${(r[a].iops / r[b].iops).toFixed(2)}x`;
  console.log(cells([r.direct ? 'O_DIRECT' : 'warm', r.rw, r.depth, r.workers, ...wanted.map((n) => `${fmt(r[n].iops)} (${r[n].p50.toFixed(1)})`), ...ratioCols.map(ratio)]));
}
console.log('\nCPU time per I/O (µs; every thread of the engine\'s processes, io_uring workers included)');
console.log(cells(['cache', 'rw', 'depth', 'workers', ...wanted]));
console.log(cells(Array(4 + wanted.length).fill('---')));
for (const r of results) console.log(cells([r.direct ? 'O_DIRECT' : 'warm', r.rw, r.depth, r.workers, ...wanted.map((n) => (Number.isFinite(r[n].cpu) ? r[n].cpu.toFixed(1) : 'n/a'))]));
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
