// One client process of the NVMe/TCP host benchmark (bench/tcp-host.mjs), forked with an IPC channel: an
// Engine with --workers pool workers, each running a closed loop of 4 KiB random reads at --depth
// (bench/tasks/closed-loop.mjs), on
//   --kind host    the NVMe/TCP target at --port (Engine.open({ target }): one connection per worker's queue)
//   --kind local   an in-process memory namespace of --size-mib (the same engine without the network)
// Sends { measuring } and { stopped } around the measured window (the server's CPU is taken then) and
// { result } (I/Os, IOPS, the workers' p50 / p99 medians, this process's CPU over the window).
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/index.js';

const { values } = parseArgs({ options: {
  kind: { type: 'string' }, port: { type: 'string' }, workers: { type: 'string', default: '1' }, depth: { type: 'string', default: '1' },
  seconds: { type: 'string', default: '3' }, warmup: { type: 'string', default: '0.5' }, 'size-mib': { type: 'string', default: '256' },
  subnqn: { type: 'string', default: 'nqn.2026-12.io.nvmq:subsystem' },
} });
const workers = Number(values.workers);
const depth = Number(values.depth);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const task = new URL('../tasks/closed-loop.mjs', import.meta.url).href;

const engine = values.kind === 'host'
  ? await Engine.open({ target: { transport: 'tcp', host: '127.0.0.1', port: Number(values.port), subnqn: values.subnqn }, workers, queueDepth: depth + 1, metrics: false })
  : await Engine.open({ namespaces: [{ backend: 'memory', size: Number(values['size-mib']) << 20 }], workers, queueDepth: depth + 1, metrics: false });
const ns = engine.namespace(1);
const runs = Array.from({ length: workers }, () => engine.run(task, { nsid: 1, blocks: ns.blocks, lbaSize: ns.lbaSize, depth, seconds, warmup }));
await new Promise((r) => setTimeout(r, warmup * 1000));
process.send({ measuring: true });
const cpu0 = process.cpuUsage();
await new Promise((r) => setTimeout(r, seconds * 1000));
const cpu = process.cpuUsage(cpu0);
process.send({ stopped: true });
const out = await Promise.all(runs);
await engine.close();
const ios = out.reduce((s, r) => s + r.ios, 0);
const mid = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
process.send({ result: { ios, iops: out.reduce((s, r) => s + r.ios / r.seconds, 0), p50: mid(out.map((r) => r.p50)), p99: mid(out.map((r) => r.p99)), cpuUs: cpu.user + cpu.system, errors: 0 } });
process.disconnect();
