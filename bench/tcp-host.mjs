#!/usr/bin/env node
// nvmq's NVMe/TCP host (Engine.open({ target })) against nvmq's own target over loopback, beside the same
// engine in-process on the same kind of namespace and the limit of Node's own TCP stack, in the same run.
//   host   a target process (bench/tcp/server.mjs --kind nvmq: an Engine, one worker, a 256 MiB memory
//          namespace, engine.listen) and a client process (bench/tcp/engine-client.mjs --kind host): an Engine
//          on the target with W pool workers, each with its own I/O queue connection, each running a closed
//          loop of 4 KiB random reads at the depth (bench/tasks/closed-loop.mjs)
//   local  the client process's engine on an in-process memory namespace instead (no network)
//   limit  the plain node:net request/response server (bench/tcp/server.mjs --kind limit) and W client
//          processes (bench/tcp/client.mjs), one connection each, at the same depth
// Each round runs every case once, limit, host and local back to back (interleaved: the machine is shared);
// the table gives medians over rounds and the ratios as medians of the rounds' ratios. CPU per I/O:
// process.cpuUsage() of each process (every thread) over the measured window, divided by the I/Os.
// --target-io-threads N (default 1, the target's default with one engine worker): the I/O threads of the host
// rows' target (server.mjs --io-threads); `workers` gives it as many as the client has workers.
// --cpu-prof DIR writes a CPU profile of every thread of each host client (and of the target, with
// --cpu-prof-target) into DIR (node --cpu-prof).
//   node bench/tcp-host.mjs [--seconds 3] [--rounds 3] [--depth 1,32] [--workers 1,2] [--target-io-threads N|workers] [--json out.json] [--cpu-prof DIR [--cpu-prof-target]]
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { spawnChild, nextMessage, exited, median } from './tcp/procs.mjs';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' },
  depth: { type: 'string', default: '1,32' }, workers: { type: 'string', default: '1,2' },
  warmup: { type: 'string', default: '0.5' }, json: { type: 'string' },
  'target-io-threads': { type: 'string', default: '1' }, 'cpu-prof': { type: 'string' }, 'cpu-prof-target': { type: 'boolean', default: false },
} });
const profile = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [];
const targetProfile = values['cpu-prof-target'] ? profile : [];
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const depths = values.depth.split(',').map(Number);
const workerCounts = values.workers.split(',').map(Number);
const SIZE_MIB = 256;
const limitMs = (seconds + Number(values.warmup)) * 1000 + 60_000;

/** Runs `clients` (forked, each sending measuring / stopped / result) with `server`'s CPU taken over the window. */
async function window(server, clients) {
  const results = clients.map((c) => nextMessage(c, 'result', limitMs));
  for (const r of results) r.catch(() => {});
  await Promise.all(clients.map((c) => nextMessage(c, 'measuring', limitMs)));
  let c0;
  if (server) {
    server.send({ cpu: true });
    c0 = (await nextMessage(server, 'cpu', 5000)).cpu;
  }
  await Promise.all(clients.map((c) => nextMessage(c, 'stopped', limitMs)));
  let c1;
  if (server) {
    server.send({ cpu: true });
    c1 = (await nextMessage(server, 'cpu', 5000)).cpu;
  }
  const rs = (await Promise.all(results)).map((m) => m.result);
  await Promise.all(clients.map(exited));
  const ios = rs.reduce((s, r) => s + r.ios, 0);
  return {
    iops: rs.reduce((s, r) => s + r.iops, 0),
    p50: median(rs.map((r) => r.p50)),
    clientCpuPerIo: rs.reduce((s, r) => s + r.cpuUs, 0) / ios,
    serverCpuPerIo: server ? (c1.user + c1.system - c0.user - c0.system) / ios : 0,
    errors: rs.reduce((s, r) => s + (r.errors ?? 0), 0),
  };
}

const ioThreadsArg = values['target-io-threads'];
if (ioThreadsArg !== 'workers' && !(Number.isInteger(Number(ioThreadsArg)) && Number(ioThreadsArg) >= 1)) {
  console.error(`--target-io-threads: a count >= 1 or "workers", not ${ioThreadsArg}`);
  process.exit(2);
}
/** The host rows' target I/O threads with `w` client workers. */
const ioThreads = (w) => (ioThreadsArg === 'workers' ? w : Number(ioThreadsArg));

async function withServer(kind, fn, extra = []) {
  const server = spawnChild('./server.mjs', ['--kind', kind, '--ns', 'memory', '--size-mib', String(SIZE_MIB), ...extra], kind === 'nvmq' ? targetProfile : []);
  try {
    const ready = await nextMessage(server, 'ready', 30_000);
    return await fn(server, ready);
  } finally {
    if (server.connected) server.send({ exit: true });
    await Promise.race([exited(server), new Promise((r) => setTimeout(r, 5000))]);
    server.kill('SIGKILL');
  }
}

const common = (depth) => ['--depth', String(depth), '--seconds', String(seconds), '--warmup', values.warmup];
const measure = {
  limit: (w, depth) => withServer('limit', (server, { port, blocks }) => window(server, Array.from({ length: w }, () => spawnChild('./client.mjs', ['--kind', 'limit', '--port', String(port), '--rw', 'randread', '--blocks', String(blocks), ...common(depth)])))),
  host: (w, depth) => withServer('nvmq', (server, { port }) => window(server, [spawnChild('./engine-client.mjs', ['--kind', 'host', '--port', String(port), '--workers', String(w), ...common(depth)], profile)]), ['--io-threads', String(ioThreads(w))]),
  local: (w, depth) => window(undefined, [spawnChild('./engine-client.mjs', ['--kind', 'local', '--workers', String(w), '--size-mib', String(SIZE_MIB), ...common(depth)])]),
};

const runs = new Map();
const key = (kind, w, d) => `${kind}/${w}/${d}`;
const t0 = Date.now();
for (let round = 1; round <= rounds; round++) {
  for (const w of workerCounts) {
    for (const depth of depths) {
      for (const kind of ['limit', 'host', 'local']) {
        const r = await measure[kind](w, depth);
        if (!runs.has(key(kind, w, depth))) runs.set(key(kind, w, depth), []);
        runs.get(key(kind, w, depth)).push(r);
        console.error(`round ${round} ${kind.padEnd(5)} workers ${w} qd${String(depth).padEnd(3)} ${(r.iops / 1000).toFixed(1).padStart(7)}k IOPS  p50 ${r.p50.toFixed(1)} µs  cpu/io client ${r.clientCpuPerIo.toFixed(2)} server ${r.serverCpuPerIo.toFixed(2)} µs${r.errors ? `  ERRORS ${r.errors}` : ''}`);
      }
    }
  }
}

const k = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : `${(x / 1e3).toFixed(1)}k`);
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const rows = [];
for (const w of workerCounts) {
  for (const depth of depths) {
    const [l, h, loc] = ['limit', 'host', 'local'].map((kind) => runs.get(key(kind, w, depth)));
    const med = (rs, f) => median(rs.map(f));
    rows.push({
      workers: w, depth,
      limit: med(l, (r) => r.iops), host: med(h, (r) => r.iops), local: med(loc, (r) => r.iops),
      hostLimit: median(h.map((r, i) => r.iops / l[i].iops)), hostLocal: median(h.map((r, i) => r.iops / loc[i].iops)),
      p50: { limit: med(l, (r) => r.p50), host: med(h, (r) => r.p50), local: med(loc, (r) => r.p50) },
      cpu: { hostClient: med(h, (r) => r.clientCpuPerIo), hostServer: med(h, (r) => r.serverCpuPerIo), limitClient: med(l, (r) => r.clientCpuPerIo), limitServer: med(l, (r) => r.serverCpuPerIo), local: med(loc, (r) => r.clientCpuPerIo) },
      scaling: undefined, limitScaling: undefined,
    });
  }
}
for (const r of rows) {
  const one = rows.find((o) => o.workers === 1 && o.depth === r.depth);
  const ratio = (kind) => median(runs.get(key(kind, r.workers, r.depth)).map((x, i) => x.iops / runs.get(key(kind, 1, r.depth))[i].iops));
  if (one && r.workers > 1) {
    r.scaling = ratio('host');
    r.limitScaling = ratio('limit');
  }
}
console.log(`\n4 KiB random reads, memory namespace, loopback, ${rounds} round(s) of ${seconds} s; medians; target I/O threads: ${ioThreadsArg}`);
console.log('| workers | depth | host IOPS | in-process IOPS | TCP limit IOPS | host / limit | host / in-process | N / 1 worker: host, limit | p50 host / in-process / limit µs | CPU per I/O host: client + target µs | limit: client + server µs | in-process µs |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const f2x = (x) => (x === undefined ? '-' : `${f2(x)}x`);
for (const r of rows) {
  console.log(`| ${r.workers} | ${r.depth} | ${k(r.host)} | ${k(r.local)} | ${k(r.limit)} | ${f2(r.hostLimit)}x | ${f2(r.hostLocal)}x | ${r.scaling === undefined ? '-' : `${f2x(r.scaling)}, ${f2x(r.limitScaling)}`} | ${f1(r.p50.host)} / ${f1(r.p50.local)} / ${f1(r.p50.limit)} | ${f2(r.cpu.hostClient)} + ${f2(r.cpu.hostServer)} | ${f2(r.cpu.limitClient)} + ${f2(r.cpu.limitServer)} | ${f2(r.cpu.local)} |`);
}
console.error(`(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
if (values.json) writeFileSync(values.json, JSON.stringify({ date: new Date().toISOString(), options: values, rows, runs: Object.fromEntries(runs) }, null, 2));
