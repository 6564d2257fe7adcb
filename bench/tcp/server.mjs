// One server process of the NVMe/TCP benchmark, forked by bench/tcp-target.mjs with an IPC channel:
//   --kind nvmq   an Engine with one namespace (--ns memory, or --ns file on --file) and its NVMe/TCP
//                 target, engine.listen({ port: 0, allowAnyHost: true }); --io-threads N: the target's I/O
//                 threads (listen's ioThreads; by default the engine's worker count, 1)
//   --kind limit  the plain TCP request/response server (frames.mjs): answers each request at once
// It sends { ready, port, blocks } once listening, answers { cpu } with process.cpuUsage() (every thread of
// the process) and its read / write system calls so far and ends on { exit }.
import * as net from 'node:net';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FrameReader, REQUEST_HEADER, RESPONSE_HEADER } from './frames.mjs';

const { values } = parseArgs({ options: {
  kind: { type: 'string' }, ns: { type: 'string', default: 'memory' }, file: { type: 'string' },
  'size-mib': { type: 'string', default: '256' }, digests: { type: 'boolean', default: false },
  'coalesce-writes': { type: 'boolean', default: false }, 'io-threads': { type: 'string' },
} });
const size = Number(values['size-mib']) << 20;
const BLOCK = 4096;

let close = async () => {};
let port;
if (values.kind === 'nvmq') {
  const { Engine } = await import('../../dist/index.js');
  if (values['coalesce-writes']) await coalesceTargetWrites();
  const ns = values.ns === 'memory' ? { backend: 'memory', size, lbaSize: BLOCK } : { backend: 'file', path: values.file, lbaSize: BLOCK };
  const engine = await Engine.open({ namespaces: [ns], workers: 1, metrics: false });
  // A memory namespace written once through before the runs, as the file namespace's image is: its pages
  // resident, so the runs measure the steady state, not the kernel's first-touch page faults.
  if (values.ns === 'memory') {
    const chunk = new Uint8Array(128 << 10).fill(0x5a);
    const per = chunk.length / BLOCK;
    for (let lba = 0; lba < size / BLOCK; lba += per * 8) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => engine.write(1, lba + i * per, chunk)));
    }
  }
  const ioThreads = values['io-threads'] === undefined ? undefined : Number(values['io-threads']);
  const target = await engine.listen({ port: 0, allowAnyHost: true, ioThreads });
  port = target.address.port;
  close = () => engine.close();
} else if (values.kind === 'limit') {
  const data = new Uint8Array(BLOCK).fill(0x5a);
  const server = net.createServer({ noDelay: true }, (socket) => {
    const reader = new FrameReader(REQUEST_HEADER + BLOCK);
    socket.on('data', (chunk) => {
      reader.push(chunk);
      // Every response of this chunk in one corked run: one writev.
      socket.cork();
      for (let f = reader.next(); f !== null; f = reader.next()) {
        const write = f.length > REQUEST_HEADER;
        const h = new Uint8Array(RESPONSE_HEADER);
        const v = new DataView(h.buffer);
        v.setUint32(0, write ? RESPONSE_HEADER : RESPONSE_HEADER + BLOCK, true);
        h.set(f.subarray(4, 8), 4);
        socket.write(h);
        if (!write) socket.write(data);
      }
      socket.uncork();
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  port = server.address().port;
  close = () => new Promise((resolve) => { server.close(() => resolve()); server.unref(); });
} else {
  throw new Error(`--kind nvmq or limit, not ${values.kind}`);
}

/** Read and write system calls of the process so far (Linux /proc/self/io: syscr, syscw), or null. */
function syscalls() {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    return { r: Number(/syscr: (\d+)/.exec(io)[1]), w: Number(/syscw: (\d+)/.exec(io)[1]) };
  } catch {
    return null;
  }
}

process.on('message', async (m) => {
  if (m.cpu) process.send({ cpu: process.cpuUsage(), syscalls: syscalls() });
  if (m.exit) {
    await Promise.race([close(), new Promise((r) => setTimeout(r, 2000))]);
    process.disconnect();
    // A --cpu-prof profile is written at a normal exit.
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true, port, blocks: Math.floor(size / BLOCK) });

/**
 * --coalesce-writes (an experiment, not what the target ships): the connection's responses of one turn of
 * the event loop go out in one corked run, one writev, as the limit's server does for the responses of a
 * received chunk, instead of a writev per command. Replaces TcpConnection's private `write()` in this
 * process only; it measured what that change would give. Since commit 62da8ff the target gathers the
 * responses to a received chunk into one write itself (tcp-sender.ts) and sends only a few PDUs through
 * `write()`: replacing it would reorder those against the gathered ones, so the experiment stops here.
 */
async function coalesceTargetWrites() {
  const { TcpConnection } = await import('../../dist/engine/target/tcp-connection.js');
  const proto = TcpConnection.prototype;
  if (typeof proto.write !== 'function' || typeof proto.complete === 'function') {
    throw new Error('--coalesce-writes no longer applies: the target gathers its responses itself (tcp-sender.ts)');
  }
  const corked = new WeakSet();
  proto.write = function write(segments, done) {
    if (this.state === 'closed') {
      done?.();
      return;
    }
    const s = this.socket;
    if (!corked.has(s)) {
      corked.add(s);
      s.cork();
      process.nextTick(() => {
        corked.delete(s);
        s.uncork();
      });
    }
    for (let i = 0; i < segments.length; i++) s.write(segments[i], i === segments.length - 1 ? done : undefined);
  };
}
