// One client process of the NVMe/TCP benchmark, forked by bench/tcp-target.mjs with an IPC channel: a
// closed loop of 4 KiB random reads or writes at --depth over one TCP connection, for --warmup then
// --seconds. The same machinery for both servers: one slot per outstanding request (slot = CID = tag),
// every completion of a received chunk answered by the slot's next request, the requests of one chunk in
// one corked write (a writev).
//   --kind nvmq   the NVMe/TCP host (nvme-host.mjs): Read gets its data in C2HData, Write carries it in-capsule
//   --kind limit  length-prefixed frames of the same sizes (frames.mjs)
// Sends { measuring } when the measured window starts and { result } (I/Os, seconds, latency samples'
// p50 / p99, the process's CPU) when it ends.
import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { FrameReader, REQUEST_HEADER, RESPONSE_HEADER, frameTag } from './frames.mjs';
import { NvmeTcpHost } from './nvme-host.mjs';

const { values } = parseArgs({ options: {
  kind: { type: 'string' }, port: { type: 'string' }, depth: { type: 'string', default: '1' },
  rw: { type: 'string', default: 'randread' }, seconds: { type: 'string', default: '3' },
  warmup: { type: 'string', default: '0.5' }, blocks: { type: 'string' }, digests: { type: 'boolean', default: false },
  subnqn: { type: 'string', default: 'nqn.2026-12.io.nvmq:subsystem' },
} });
const depth = Number(values.depth);
const write = values.rw === 'randwrite';
const blocks = Number(values.blocks);
const port = Number(values.port);
const BLOCK = 4096;

let seed = (process.pid * 2654435761) >>> 0 || 1;
const nextLba = () => {
  // xorshift32
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % blocks;
};

// Latency samples of the measured window, µs.
const samples = new Float64Array(1 << 23);
let nSamples = 0;
let measuring = false;
let stopping = false;
let ios = 0;
let errors = 0;
const started = new Float64Array(depth);
let pendingWrites = [];
let inflight = 0;

let issue; // (slot) => segments of its next request
let flush; // writes pendingWrites
let finish; // ends the connection(s)

function onDone(slot, status) {
  const now = performance.now();
  inflight--;
  if (status !== 0) errors++;
  if (measuring) {
    ios++;
    if (nSamples < samples.length) samples[nSamples++] = (now - started[slot]) * 1000;
  }
  if (stopping) return;
  started[slot] = now;
  inflight++;
  const segs = issue(slot);
  for (let i = 0; i < segs.length; i++) pendingWrites.push(segs[i]);
}

if (values.kind === 'nvmq') {
  const host = await NvmeTcpHost.connect({ port, subnqn: values.subnqn, digests: values.digests, queueSize: 128 });
  const data = new Uint8Array(BLOCK).fill(0xa5);
  const capsules = Array.from({ length: depth }, (_, slot) => host.capsule(slot, write, 1, data));
  issue = (slot) => capsules[slot].patch(nextLba());
  const q = host.io;
  q.onComplete = onDone;
  flush = () => {
    if (pendingWrites.length === 0) return;
    q.write(pendingWrites);
    pendingWrites = [];
  };
  // Completions arrive from the queue's 'data' handler: send what they issued once it is done with the chunk.
  q.socket.on('data', flush);
  q.onFailure = (e) => { if (!stopping) { console.error(e); process.exit(2); } };
  finish = () => host.close();
} else if (values.kind === 'limit') {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const reader = new FrameReader(RESPONSE_HEADER + BLOCK);
  const data = new Uint8Array(BLOCK).fill(0xa5);
  const requests = Array.from({ length: depth }, (_, slot) => {
    const h = new Uint8Array(REQUEST_HEADER);
    const v = new DataView(h.buffer);
    v.setUint32(0, write ? REQUEST_HEADER + BLOCK : REQUEST_HEADER, true);
    v.setUint32(4, slot, true);
    return { h, v, segs: write ? [h, data] : [h] };
  });
  issue = (slot) => {
    const r = requests[slot];
    const lba = nextLba();
    r.v.setUint32(8, lba >>> 0, true);
    r.v.setUint32(12, Math.floor(lba / 0x100000000), true);
    return r.segs;
  };
  flush = () => {
    if (pendingWrites.length === 0) return;
    socket.cork();
    for (let i = 0; i < pendingWrites.length; i++) socket.write(pendingWrites[i]);
    socket.uncork();
    pendingWrites = [];
  };
  socket.on('data', (chunk) => {
    reader.push(chunk);
    for (let f = reader.next(); f !== null; f = reader.next()) onDone(frameTag(f), 0);
    flush();
  });
  socket.on('error', (e) => { if (!stopping) { console.error(e); process.exit(2); } });
  finish = () => socket.destroy();
} else {
  throw new Error(`--kind nvmq or limit, not ${values.kind}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let slot = 0; slot < depth; slot++) {
  started[slot] = performance.now();
  inflight++;
  for (const s of issue(slot)) pendingWrites.push(s);
}
flush();
await sleep(Number(values.warmup) * 1000);
process.send({ measuring: true });
const cpu0 = process.cpuUsage();
const t0 = performance.now();
measuring = true;
await sleep(Number(values.seconds) * 1000);
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const measured = ios;
process.send({ stopped: true });
stopping = true;
// Let what is in flight come back, so the server sees no connection reset mid-command.
for (let i = 0; i < 100 && inflight > 0; i++) await sleep(10);
finish();
const lat = samples.subarray(0, nSamples).sort();
const pct = (p) => (nSamples ? lat[Math.min(nSamples - 1, Math.floor(p * nSamples))] : NaN);
process.send({ result: { ios: measured, seconds: elapsed, iops: measured / elapsed, p50: pct(0.5), p99: pct(0.99), cpuUs: cpu.user + cpu.system, errors } });
process.disconnect();
