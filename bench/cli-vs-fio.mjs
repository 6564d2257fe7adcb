#!/usr/bin/env node
// `nvmq bench` against fio, the way a user runs them: each case is one `nvmq bench ... --compare fio
// --output-format json` invocation (nvmq's job, then fio --ioengine=io_uring on the same file and regions),
// 4 KiB random reads on a 256 MiB image nvmq wrote. "warm": the file is read through right before each
// run and fio runs with --invalidate=0; "direct": O_DIRECT on both sides; "memory": nvmq's RAM namespace
// (no fio peer). Both sides first run `--ramp` seconds unmeasured (--ramp_time: nvmq's JIT warm-up out of
// the window). Each round runs every case once (interleaved); the table gives medians of the rounds:
// IOPS, p50 latency, CPU time per I/O (each process's usr + sys over its run, as its report gives it)
// and the ratios nvmq / fio. Run `npm run build` first.
//   node bench/cli-vs-fio.mjs [--rounds 3] [--seconds 3] [--ramp 1] [--cases warm:1:1,warm:32:1,...] [--size-mib 256]
// A case is cache:depth:jobs (cache: warm | direct | memory).
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '3' }, ramp: { type: 'string', default: '1' },
  'size-mib': { type: 'string', default: '256' },
  cases: { type: 'string', default: 'warm:1:1,warm:32:1,warm:32:2,direct:1:1,direct:32:1,memory:32:1,memory:32:2' },
} });
const rounds = Number(values.rounds);
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const file = 'nvmq-data/bench-cli.img';
const size = `${Number(values['size-mib'])}m`;
const cases = values.cases.split(',').map((c) => {
  const [cache, depth, jobs] = c.split(':');
  if (!['warm', 'direct', 'memory'].includes(cache) || !(Number(depth) > 0) || !(Number(jobs) > 0)) throw new Error(`--cases: cache:depth:jobs, got ${c}`);
  return { key: c, cache, depth: Number(depth), jobs: Number(jobs) };
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

mkdirSync('nvmq-data', { recursive: true });
if (!existsSync(file)) execFileSync(process.execPath, [cli, '--filename', file, '--size', size, '--rw', 'write', '--bs', '1m', '--iodepth', '4'], { stdio: 'ignore' });

function readThrough() {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  while (readSync(fd, buf) > 0);
  closeSync(fd);
}

/** IOPS, p50 (µs) and CPU µs per I/O of one side of the report. */
function side(report) {
  let iops = 0;
  let ios = 0;
  let cpuMs = 0;
  let p50 = 0;
  for (const j of report.jobs) {
    iops += j.read.iops;
    ios += j.read.total_ios;
    cpuMs += ((j.usr_cpu + j.sys_cpu) / 100) * j.job_runtime;
    p50 = Math.max(p50, (j.read.clat_ns.percentile?.['50.000000'] ?? 0) / 1000);
  }
  return { iops, p50, cpuUs: (cpuMs * 1000) / ios };
}

function run(c) {
  const args = [cli, '--rw', 'randread', '--bs', '4k', '--iodepth', String(c.depth), '--numjobs', String(c.jobs), '--runtime', values.seconds, '--ramp_time', values.ramp, '--time_based', '--output-format', 'json'];
  if (c.cache === 'memory') args.push('--backend', 'memory', '--size', size);
  else args.push('--filename', file, '--compare', 'fio', ...(c.cache === 'direct' ? ['--direct'] : []));
  if (c.cache === 'warm') readThrough();
  const report = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 }));
  return { nvmq: side(report), fio: report.compare ? side(report.compare) : undefined };
}

const results = new Map(cases.map((c) => [c.key, []]));
for (let r = 0; r < rounds; r++) {
  for (const c of cases) {
    const res = run(c);
    results.get(c.key).push(res);
    const f = res.fio ? `, fio ${(res.fio.iops / 1000).toFixed(1)}k ${res.fio.cpuUs.toFixed(2)} µs CPU/IO` : '';
    console.error(`round ${r + 1} ${c.key}: nvmq ${(res.nvmq.iops / 1000).toFixed(1)}k ${res.nvmq.cpuUs.toFixed(2)} µs CPU/IO${f}`);
  }
}

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : `${(x / 1e3).toFixed(1)}k`);
console.log(`nvmq bench vs fio, 4 KiB randread, ${size} image, ${values.seconds} s x ${rounds} interleaved rounds (medians), ${process.version}`);
console.log('| case (cache:depth:jobs) | nvmq IOPS | fio IOPS | nvmq / fio | p50 nvmq / fio (µs) | CPU µs per I/O nvmq / fio | CPU ratio |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const c of cases) {
  const rs = results.get(c.key);
  const m = (pick) => median(rs.map(pick));
  const n = { iops: m((x) => x.nvmq.iops), p50: m((x) => x.nvmq.p50), cpu: m((x) => x.nvmq.cpuUs) };
  if (!rs[0].fio) {
    console.log(`| ${c.key} | ${fmt(n.iops)} | – | – | ${n.p50.toFixed(1)} / – | ${n.cpu.toFixed(2)} / – | – |`);
    continue;
  }
  const f = { iops: m((x) => x.fio.iops), p50: m((x) => x.fio.p50), cpu: m((x) => x.fio.cpuUs) };
  // Ratios of each round, then their median: the two sides of a round ran back to back.
  const ratio = m((x) => x.nvmq.iops / x.fio.iops);
  const cpuRatio = m((x) => x.nvmq.cpuUs / x.fio.cpuUs);
  console.log(`| ${c.key} | ${fmt(n.iops)} | ${fmt(f.iops)} | ${ratio.toFixed(2)}x | ${n.p50.toFixed(1)} / ${f.p50.toFixed(1)} | ${n.cpu.toFixed(2)} / ${f.cpu.toFixed(2)} | ${cpuRatio.toFixed(2)}x |`);
}
