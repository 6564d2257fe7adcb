#!/usr/bin/env node
// The soak: verified random I/O from the engine's pool workers (an engine.run task), the main thread
// (engine.read / write) and an attached application worker, each on a region of its own of two namespaces
// (memory; a file on a small tmpfs), while faults are injected on a seeded random schedule: engine.reset(),
// a task that kills its worker with writes in flight, a task that throws, a full disk (the tmpfs filled:
// ENOSPC comes back as Capacity Exceeded), flush errors (a second engine on a loop device whose write-back
// fails: its namespace must turn write-protected, its flushes fail, and what it acknowledged still read
// back), and Prometheus scrapes of /metrics with slow and idle connections. A watchdog calls a hang when no
// I/O completes for --hang seconds. At the end every block is read back and checked, the engine is closed,
// and RSS, open descriptors and threads are compared with the start.
//   node bench/soak.mjs [--minutes 5 | --seconds S] [--seed N] [--workers 3] [--json] [--hang 30]
// Exit status 1 on any failure (a mismatch, a hang, an unhandled rejection, an unexpected error, a leak).
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BS, ST, STRIDE, CSTRIDE, newModel, runRegion, check, stamp, rng } from './soak/io.mjs';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    workers: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    hang: { type: 'string' },
    // Checks the checker: one block overwritten behind the model's back before the final read-back.
    'corrupt-once': { type: 'boolean', default: false },
  },
});
const durationMs = values.seconds !== undefined ? Number(values.seconds) * 1000 : Number(values.minutes ?? 5) * 60_000;
const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const workers = Number(values.workers);
const hangMs = Number(values.hang ?? (durationMs < 60_000 ? 10 : 30)) * 1000;
if (!(durationMs > 0) || !(workers >= 1 && workers <= 16) || !(hangMs > 0)) {
  console.error('soak: --minutes / --seconds must be > 0, --workers 1..16, --hang > 0');
  process.exit(2);
}
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const distIndex = pathToFileURL(path.join(root, 'dist/index.js')).href;
if (!fs.existsSync(fileURLToPath(distIndex))) {
  console.error('soak: dist/ is missing: run npm run build');
  process.exit(2);
}
const { Engine } = await import(distIndex);
const taskUrl = new URL('./soak/task.mjs', import.meta.url);
const say = values.json ? (m) => process.stderr.write(`${m}\n`) : (m) => console.log(m);
const rand = rng(seed);

// ---- failures that must not happen, counted from the start
const unhandled = [];
process.on('unhandledRejection', (e) => unhandled.push(`unhandledRejection: ${e?.stack ?? e}`));
process.on('uncaughtException', (e) => unhandled.push(`uncaughtException: ${e?.stack ?? e}`));

// RSS after close is not the start's: V8's heaps and glibc's per-thread malloc arenas keep what the run
// grew them to. A leak shows as growth well past this (the long run's progress lines print RSS over time).
const RSS_TOLERANCE_MIB = 256;
const resources = () => ({
  rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
  heapUsedMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
  externalMiB: Math.round(process.memoryUsage().external / 2 ** 20),
  fds: fs.readdirSync('/proc/self/fd').length,
  threads: fs.readdirSync('/proc/self/task').length,
});
/** What each open descriptor is (a file, socket:[inode], anon_inode:[eventfd], ...). */
const fdTargets = () =>
  fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return '?';
    }
  });
// Node's fetch() keeps a descriptor (/dev/null) open from its first use on, engine or not: use it once
// before counting, so that the descriptors and threads after the close must equal the start's.
{
  const before = fs.readdirSync('/proc/self/fd').length;
  const { createServer } = await import('node:http');
  const srv = createServer((_, res) => res.end()).listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  await (await fetch(`http://127.0.0.1:${srv.address().port}/`)).text();
  srv.closeAllConnections();
  await new Promise((r) => srv.close(r));
  // The client's side of the connection closes a moment later.
  for (let i = 0; i < 50 && fs.readdirSync('/proc/self/fd').length > before + 1; i++) await new Promise((r) => setTimeout(r, 20));
}
globalThis.gc?.();
const start = resources();
const startFds = fdTargets();

// ---- what needs root: nsid 2's own small file system (full disk; frozen for host timeouts), a loop device
// (failing write-back). ext4 on a loop device when mkfs.ext4 and fsfreeze are there (tmpfs cannot be frozen),
// else a small tmpfs (no host timeouts then).
const skipped = {};
const cleanups = [];
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-soak-'));
cleanups.push(() => fs.rmSync(scratch, { recursive: true, force: true }));
const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const firstLine = (e) => e.message.split('\n')[0];
let smallFsDir;
let freezable = false;
if (process.getuid?.() !== 0) {
  skipped['full-disk'] = 'not root (mount needs it)';
  skipped['host-timeout'] = skipped['full-disk'];
} else {
  const dir = path.join(scratch, 'small');
  fs.mkdirSync(dir);
  try {
    sh('fsfreeze', ['--version']);
    const backing = path.join(scratch, 'small-ext4.img');
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, 24 << 20);
    sh('mkfs.ext4', ['-q', '-b', '4096', backing]);
    const loop = sh('losetup', ['--find', '--show', backing]);
    cleanups.push(() => sh('losetup', ['--detach', loop]));
    sh('mount', [loop, dir]);
    // Run before the unmount (cleanups run last first): a frozen file system cannot be unmounted.
    cleanups.push(() => sh('umount', [dir]), () => execFileSync('sh', ['-c', `fsfreeze -u ${dir} 2>/dev/null; true`]));
    smallFsDir = dir;
    freezable = true;
  } catch (e) {
    skipped['host-timeout'] = `no freezable file system (ext4 on a loop device, fsfreeze): ${firstLine(e)}`;
    try {
      sh('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'nvmq-soak', dir]);
      cleanups.push(() => sh('umount', [dir]));
      smallFsDir = dir;
    } catch (e2) {
      skipped['full-disk'] = `no small tmpfs: ${firstLine(e2)}`;
    }
  }
}
let loopOk = false;
if (!smallFsDir) skipped['flush-error'] = skipped['full-disk'];
else {
  try {
    sh('losetup', ['--version']);
    loopOk = true;
  } catch (e) {
    skipped['flush-error'] = `no losetup: ${firstLine(e)}`;
  }
}
/** The load engine's I/O command timeout where host timeouts are injected (else the engine's default). */
const IO_TIMEOUT_MS = 2000;

// ---- the engine under load: nsid 1 memory, nsid 2 a file (on the small file system when there is one)
const NS1_BLOCKS = 16384; // 64 MiB
const NS2_BLOCKS = 2048; // 8 MiB
const nsFile = path.join(smallFsDir ?? scratch, 'soak.img');
const metricsLimits = { headersTimeoutMs: 2000, requestTimeoutMs: 4000, keepAliveTimeoutMs: 2000 };
const engine = await Engine.open({
  namespaces: [
    { backend: 'memory', size: NS1_BLOCKS * BS, lbaSize: BS },
    { backend: 'file', path: nsFile, size: NS2_BLOCKS * BS, lbaSize: BS },
  ],
  workers,
  metrics: { port: 0, ...metricsLimits },
  ...(freezable ? { ioTimeoutMs: IO_TIMEOUT_MS } : {}),
});
const dataPath = engine.controller.dataPath;
const models = { 1: newModel(NS1_BLOCKS), 2: newModel(NS2_BLOCKS) };
const regions = workers + 2; // the pool's task loops, the main thread, the attached worker
const MAIN = workers;
const ATTACHED = workers + 1;
const regionName = (r) => (r === MAIN ? 'main thread' : r === ATTACHED ? 'attached worker' : `pool task loop ${r}`);
const stats = new Float64Array(new SharedArrayBuffer(regions * STRIDE * 8));
const control = new Int32Array(new SharedArrayBuffer(regions * CSTRIDE * 4));
const rangesOf = (r) => [
  { nsid: 1, model: models[1], first: r * Math.floor(NS1_BLOCKS / regions), count: Math.floor(NS1_BLOCKS / regions) },
  { nsid: 2, model: models[2], first: r * Math.floor(NS2_BLOCKS / regions), count: Math.floor(NS2_BLOCKS / regions) },
];
const argsOf = (r) => ({ region: r, ranges: rangesOf(r), stats, control, depth: 8, seed: (seed ^ Math.imul(r + 1, 0x9e3779b1)) >>> 0 });

say(`soak: seed ${seed}, ${(durationMs / 60_000).toFixed(2)} min, ${workers} pool workers + main thread + attached worker, data path ${dataPath}, metrics ${engine.metricsAddress.url}`);
for (const [k, why] of Object.entries(skipped)) say(`soak: ${k}: skipped (${why})`);

const codes = {}; // error codes seen by the participants, and how their tasks ended
const count = (k, n = 1) => {
  codes[k] = (codes[k] ?? 0) + n;
};
const mismatchDetails = [];
const failures = [];
const injected = {};
const injectedCount = (k) => {
  injected[k] = (injected[k] ?? 0) + 1;
};
const checks = {}; // kind -> { ok, failed } of the injections' own checks
const verdict = (kind, ok, why) => {
  checks[kind] ??= { ok: 0, failed: 0 };
  checks[kind][ok ? 'ok' : 'failed']++;
  if (!ok) failures.push(`${kind}: ${why}`);
};
let stopping = false;
let resetting = null; // the reset in progress
let epoch = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- participants
const taskEnds = { WORKER_EXITED: 0, THROWN: 0, RESET: 0 };
async function poolLoop(r) {
  let runNo = 0;
  while (!stopping) {
    if (resetting) await resetting.catch(() => {});
    const args = { ...argsOf(r), seed: (argsOf(r).seed + ++runNo) >>> 0, deadline: Date.now() + 500 + rand() * 2500, stopOnReset: true };
    try {
      const out = await engine.run(taskUrl, args);
      for (const [k, v] of Object.entries(out.codes)) count(k, v);
      mismatchDetails.push(...out.mismatches);
    } catch (e) {
      if (e.code === 'NVMQ_WORKER_EXITED') taskEnds.WORKER_EXITED++;
      else if (e.code === 'SOAK_INJECTED_THROW') taskEnds.THROWN++;
      else if (e.code === 'NVMQ_CONTROLLER_RESET') taskEnds.RESET++;
      else {
        count(`task:${e.code ?? e}`);
        failures.push(`${regionName(r)}: task failed unexpectedly: ${e.stack ?? e}`);
        await sleep(100);
      }
    }
  }
}

// While a reset runs the main thread's lanes wait for it rather than spin on NVMQ_CONTROLLER_RESET.
const settled = () => (resetting ? resetting.catch(() => {}) : undefined);
const mainIo = {
  read: async (nsid, lba, buf) => (await settled(), engine.read(nsid, lba, 1, buf)),
  write: async (nsid, lba, buf) => (await settled(), engine.write(nsid, lba, buf)),
  deallocate: async (nsid, lba) => (await settled(), engine.deallocate(nsid, [{ slba: lba, nlb: 1 }])),
  flush: async (nsid) => (await settled(), engine.flush(nsid)),
  alloc: () => new Uint8Array(BS),
};
async function mainLoop() {
  let runNo = 0;
  while (!stopping) {
    if (resetting) await resetting.catch(() => {});
    const args = { ...argsOf(MAIN), seed: (argsOf(MAIN).seed + ++runNo) >>> 0, deadline: Date.now() + 1000 };
    const out = await runRegion(mainIo, args);
    for (const [k, v] of Object.entries(out.codes)) count(k, v);
    mismatchDetails.push(...out.mismatches);
  }
}

// The attached worker: started again, with a fresh handle, after an injected exit.
let attachedWorker;
let attachedDone;
let attachedExitAsked = 0;
let attachedExits = 0;
function startAttached() {
  attachedDone = new Promise((resolve) => {
    const h = engine.attachHandle();
    const w = new Worker(new URL('./soak/attached.mjs', import.meta.url), {
      workerData: { handle: h, dist: distIndex, args: argsOf(ATTACHED), epoch },
      transferList: [h.port],
    });
    attachedWorker = w;
    let reported = false;
    w.on('message', (m) => {
      if (m.done) {
        reported = true;
        resolve(m);
      }
    });
    w.on('error', (e) => {
      failures.push(`attached worker: ${e.stack ?? e}`);
      resolve(null);
    });
    w.on('exit', (code) => {
      if (reported) return;
      if (code === 7 && attachedExitAsked > attachedExits && !stopping) {
        attachedExits++;
        startAttached();
        attachedDone.then(resolve);
      } else {
        if (!stopping) failures.push(`attached worker exited with status ${code} unasked`);
        resolve(null);
      }
    });
  });
}
startAttached();

// ---- faults
async function injectReset() {
  injectedCount('reset');
  resetting = engine.reset();
  try {
    await resetting;
    verdict('reset', true);
  } catch (e) {
    verdict('reset', false, `engine.reset() failed: ${e.stack ?? e}`);
  } finally {
    resetting = null;
    attachedWorker.postMessage({ epoch: ++epoch });
  }
}

// A command past its deadline and its Abort resets the engine on its own (driver.resetForTimeout): the
// participants wait for it as for an injected reset, and the attached worker hears when it is over.
let timeoutResets = 0;
const resetAfterTimeout = engine.driver.resetForTimeout;
engine.driver.resetForTimeout = () => {
  timeoutResets++;
  const r = resetAfterTimeout();
  resetting = r;
  r.catch(() => {}).finally(() => {
    if (resetting === r) resetting = null;
    attachedWorker.postMessage({ epoch: ++epoch });
  });
  return r;
};

/**
 * Freezes nsid 2's file system (fsfreeze): its writes stall in the kernel. Each passes its deadline
 * (IO_TIMEOUT_MS) and is aborted, and one more timeout later the engine resets; the file system is thawed
 * from another process after two timeouts and a margin (a reset on io_uring waits in the kernel for the
 * writes its ring holds, and this thread with it). Checked: commands ended with NVMQ_TIMEOUT, the engine
 * reset itself, and I/O goes on afterwards (the watchdog and the final read-back check the rest).
 */
async function injectHostTimeout() {
  injectedCount('host-timeout');
  const timeoutsBefore = sum(ST.timeouts);
  const resetsBefore = timeoutResets;
  const thawMs = 2 * IO_TIMEOUT_MS + 2000;
  frozen = { from: Date.now(), to: Date.now() + thawMs + 500 };
  sh('fsfreeze', ['-f', smallFsDir]);
  spawn('sh', ['-c', `sleep ${thawMs / 1000}; fsfreeze -u ${smallFsDir} 2>/dev/null`], { detached: true, stdio: 'ignore' }).unref();
  const thawAt = Date.now() + thawMs;
  while (Date.now() < thawAt + 500) await sleep(50);
  // The reset finishes once the kernel has given back what the frozen file system held.
  const until = Date.now() + 10_000;
  while (resetting && Date.now() < until) await sleep(20);
  const iosBefore = sum(ST.ios);
  while (sum(ST.ios) === iosBefore && Date.now() < until) await sleep(20);
  const timeouts = sum(ST.timeouts) - timeoutsBefore;
  timeoutsDuringInjection += timeouts;
  verdict('host-timeout', timeouts > 0, 'no command ended with NVMQ_TIMEOUT while the file system was frozen');
  verdict('host-timeout', timeoutResets > resetsBefore, 'the engine did not reset after the Abort');
  verdict('host-timeout', !resetting, 'the reset after the timeout did not resolve within 10 s of the thaw');
  verdict('host-timeout', sum(ST.ios) > iosBefore, 'no I/O completed after the thaw');
}
let timeoutsDuringInjection = 0;

/** Asks the attached worker to end its thread with writes in flight, without detaching; a new one attaches. */
async function injectAttachedExit() {
  const before = attachedExits;
  attachedExitAsked++;
  Atomics.store(control, ATTACHED * CSTRIDE + 1, 1);
  const until = Date.now() + 10_000;
  while (attachedExits === before && Date.now() < until && !stopping) await sleep(20);
  if (attachedExits > before) injectedCount('attached-exit');
  else if (!stopping) verdict('attached-exit', false, 'the attached worker did not end within 10 s of being asked');
}

/** Asks a pool task to end its worker with writes in flight (1) or to throw (2); counts it once it has happened. */
async function injectTaskEnd(kind) {
  const name = kind === 1 ? 'worker-exit' : 'task-throw';
  const key = kind === 1 ? 'WORKER_EXITED' : 'THROWN';
  const before = taskEnds[key];
  const r = Math.floor(rand() * workers);
  Atomics.store(control, r * CSTRIDE + 1, kind);
  const until = Date.now() + 10_000;
  while (taskEnds[key] === before && Date.now() < until && !stopping) await sleep(20);
  if (taskEnds[key] > before) injectedCount(name);
  else if (!stopping) verdict(name, false, `${regionName(r)} did not end its task within 10 s of being asked`);
}

async function injectFlush() {
  injectedCount('flush');
  const code = await engine.flush().then(() => 'ok', (e) => e.code);
  verdict('flush', code === 'ok' || code === 'NVMQ_CONTROLLER_RESET', `engine.flush() failed: ${code}`);
}

/** Fills nsid 2's file system with another file for a while: writes to blocks of nsid 2 not yet allocated get ENOSPC. */
async function injectFullDisk() {
  injectedCount('full-disk');
  const filler = path.join(smallFsDir, 'filler');
  const before = sum(ST.capacity);
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(64 << 10, 0x5a);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
  await sleep(500 + rand() * 2500);
  fs.unlinkSync(filler);
  fullDiskCapacityErrors += sum(ST.capacity) - before;
}
let fullDiskCapacityErrors = 0;

/**
 * A second engine on a loop device over a 1 MiB tmpfs: 4 MiB of acknowledged buffered writes whose write-back
 * fails. As documented: flushes fail with Write Fault (main thread and pool worker), writes are refused with
 * Namespace is Write Protected, and reads return the acknowledged data; closed and gone afterwards.
 */
async function injectFlushError() {
  injectedCount('flush-error');
  const dir = fs.mkdtempSync(path.join(scratch, 'loop-'));
  const undo = [];
  let e2;
  try {
    sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nvmq-soak-loop', dir]);
    undo.push(() => sh('umount', [dir]));
    const backing = path.join(dir, 'thin.img');
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, 8 << 20);
    const dev = sh('losetup', ['--find', '--show', backing]);
    undo.push(() => sh('losetup', ['--detach', dev]));
    e2 = await Engine.open({ namespaces: [{ backend: 'file', path: dev, force: true }], workers: 1, metrics: false });
    const blocks = 1024; // 4 MiB, more than the tmpfs holds
    const data = new Uint8Array(64 * BS);
    for (let lba = 0; lba < blocks; lba += 64) {
      for (let i = 0; i < 64; i++) stamp(data.subarray(i * BS, (i + 1) * BS), 1, lba + i, 1, 0);
      await e2.write(1, lba, data);
    }
    const code = (p) => p.then(() => 'ok', (e) => e.code ?? String(e));
    const flushed = await code(e2.flush());
    verdict('flush-error', flushed === 'NVMQ_WRITE_FAULT', `flush after failed write-back: ${flushed}, expected NVMQ_WRITE_FAULT`);
    const again = await code(e2.flush(1));
    verdict('flush-error', again === 'NVMQ_WRITE_FAULT', `second flush: ${again}, expected NVMQ_WRITE_FAULT`);
    const byWorker = await e2.run(taskUrl, { flushOnly: 1 });
    verdict('flush-error', byWorker === 'NVMQ_WRITE_FAULT', `pool worker's flush: ${byWorker}, expected NVMQ_WRITE_FAULT`);
    const write = await code(e2.write(1, 0, new Uint8Array(BS)));
    verdict('flush-error', write === 'NVMQ_NAMESPACE_WRITE_PROTECTED', `write after the loss: ${write}, expected NVMQ_NAMESPACE_WRITE_PROTECTED`);
    const model = newModel(blocks);
    for (let b = 0; b < blocks; b++) model[b * 4] = 1;
    let bad = 0;
    for (let lba = 0; lba < blocks; lba += 64) {
      const got = await e2.read(1, lba, 64);
      for (let i = 0; i < 64; i++) if (check(model, lba + i, got.subarray(i * BS, (i + 1) * BS), 1, lba + i, 0)) bad++;
    }
    verdict('flush-error', bad === 0, `${bad} acknowledged blocks read back wrong after the loss`);
    flushErrorBlocksVerified += blocks - bad;
  } catch (e) {
    verdict('flush-error', false, `could not run: ${e.stack ?? e}`);
  } finally {
    await e2?.close().catch((e) => verdict('flush-error', false, `close: ${e.stack ?? e}`));
    for (const u of undo.reverse()) {
      try {
        u();
      } catch (e) {
        verdict('flush-error', false, `cleanup: ${e.message}`);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
let flushErrorBlocksVerified = 0;

/**
 * When the last host-timeout injection froze nsid 2's file system. A reset then waits in the kernel for
 * the frozen writes, and the main thread with it (see injectHostTimeout), so the metrics server cannot
 * close connections meanwhile: a scrape check that overlaps the freeze is allowed its length.
 */
let frozen = { from: 0, to: 0 };
const overlap = (a, b) => Math.max(0, Math.min(b, frozen.to) - Math.max(a, frozen.from));

/** A scrape of /metrics, and a slow (half a request) and an idle (nothing sent) connection the server must close. */
const lingering = new Set();
async function injectScrape() {
  injectedCount('scrape');
  const { url, host, port } = engine.metricsAddress;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    const body = await res.text();
    verdict('scrape', res.status === 200 && /^nvmq_/m.test(body), `GET /metrics: ${res.status}, ${body.length} bytes`);
  } catch (e) {
    verdict('scrape', false, `GET /metrics: ${e.message}`);
  }
  for (const kind of ['slow', 'idle']) {
    injectedCount(`scrape-${kind}`);
    const sock = net.connect(port, host);
    const c = { kind, sock, opened: Date.now(), closed: 0 };
    lingering.add(c);
    sock.on('connect', () => kind === 'slow' && sock.write('GET /metrics HTTP/1.1\r\nHost: soak\r\n'));
    sock.on('error', () => {});
    sock.on('close', () => {
      c.closed = Date.now();
      lingering.delete(c);
      const took = c.closed - c.opened;
      const held = overlap(c.opened, c.closed);
      verdict(`scrape-${kind}`, took <= metricsLimits.requestTimeoutMs + 3000 + held, `${kind} connection closed after ${took} ms${held ? ` (${held} ms of it with the file system frozen)` : ''}`);
    });
    sock.resume();
  }
}

const sum = (field) => {
  let t = 0;
  for (let r = 0; r < regions; r++) t += stats[r * STRIDE + field];
  return t;
};

// ---- watchdog
const hangs = [];
let lastIos = 0;
let lastChange = Date.now();
let currentInjection = null;
const watchdog = setInterval(() => {
  const ios = sum(ST.ios);
  if (ios !== lastIos) {
    lastIos = ios;
    lastChange = Date.now();
    return;
  }
  if (Date.now() - lastChange < hangMs) return;
  const outstanding = [];
  for (let r = 0; r < regions; r++) {
    const s = r * STRIDE;
    outstanding.push(`${regionName(r)}: ${stats[s + ST.inflight]} commands in flight, last completion ${((Date.now() - stats[s + ST.lastProgress]) / 1000).toFixed(1)} s ago`);
  }
  if (currentInjection) outstanding.push(`injection ${currentInjection.kind}, running for ${((Date.now() - currentInjection.at) / 1000).toFixed(1)} s`);
  if (resetting) outstanding.push('engine.reset() not resolved');
  hangs.push({ at: new Date().toISOString(), noProgressSeconds: (Date.now() - lastChange) / 1000, outstanding });
  say(`soak: HANG: no I/O completed for ${((Date.now() - lastChange) / 1000).toFixed(0)} s\n  ${outstanding.join('\n  ')}`);
  finish(true);
}, 1000);

// ---- the schedule
const kinds = ['reset', 'worker-exit', 'attached-exit', 'task-throw', 'flush', 'scrape'];
if (smallFsDir) kinds.push('full-disk');
if (freezable) kinds.push('host-timeout');
if (loopOk) kinds.push('flush-error');
const run = { reset: injectReset, 'worker-exit': () => injectTaskEnd(1), 'attached-exit': injectAttachedExit, 'task-throw': () => injectTaskEnd(2), flush: injectFlush, scrape: injectScrape, 'full-disk': injectFullDisk, 'flush-error': injectFlushError, 'host-timeout': injectHostTimeout };
const t0 = Date.now();
const participants = [...Array.from({ length: workers }, (_, r) => poolLoop(r)), mainLoop()];
let progressAt = t0;
async function schedule() {
  // Every kind once first (in a seeded order, 0.1-0.3 s apart, so that a short run has them all), then
  // seeded random picks 0.3-1.5 s apart.
  const order = kinds.slice().sort(() => rand() - 0.5);
  let n = 0;
  while (Date.now() - t0 < durationMs && !stopping) {
    await sleep(n < order.length ? 100 + rand() * 200 : 300 + rand() * 1200);
    if (Date.now() - t0 >= durationMs || stopping) break;
    const kind = n < order.length ? order[n] : kinds[Math.floor(rand() * kinds.length)];
    n++;
    currentInjection = { kind, at: Date.now() };
    try {
      await run[kind]();
    } catch (e) {
      verdict(kind, false, `injection failed: ${e.stack ?? e}`);
    }
    currentInjection = null;
    if (Date.now() - progressAt >= (durationMs > 120_000 ? 30_000 : 5_000)) {
      progressAt = Date.now();
      say(`soak: ${((Date.now() - t0) / 1000).toFixed(0)} s: ${sum(ST.ios)} I/Os, ${sum(ST.verified)} reads verified, ${sum(ST.mismatches)} mismatches, RSS ${resources().rssMiB} MiB, injected ${JSON.stringify(injected)}`);
    }
  }
}

let finishing = false;
async function finish(hung = false) {
  if (finishing) return;
  finishing = true;
  stopping = true;
  clearInterval(watchdog);
  for (let r = 0; r < regions; r++) Atomics.store(control, r * CSTRIDE, 1);
  let finalVerified = 0;
  let finalMismatches = 0;
  const endOfLoad = Date.now();
  if (!hung) {
    const all = Promise.all([...participants, attachedDone]);
    const done = await Promise.race([all.then(() => true), sleep(hangMs).then(() => false)]);
    if (!done) {
      hangs.push({ at: new Date().toISOString(), outstanding: ['participants did not stop within the hang time'] });
      hung = true;
    }
  }
  const attachedOut = hung ? null : await attachedDone;
  if (attachedOut) {
    for (const [k, v] of Object.entries(attachedOut.codes)) count(k, v);
    mismatchDetails.push(...attachedOut.mismatches);
  }
  await attachedWorker.terminate();
  if (!hung && values['corrupt-once']) {
    const { nsid, first } = rangesOf(0)[0];
    const bad = new Uint8Array(BS);
    stamp(bad, nsid, first, 0x7fffffff, 0);
    await engine.write(nsid, first, bad);
  }
  if (!hung) {
    // Every block of every region read back once more and checked against the model.
    for (let r = 0; r < regions; r++) {
      for (const { nsid, model, first, count: n } of rangesOf(r)) {
        for (let lba = first; lba < first + n; lba += 64) {
          const nlb = Math.min(64, first + n - lba);
          const got = await engine.read(nsid, lba, nlb);
          for (let i = 0; i < nlb; i++) {
            const bad = check(model, lba + i, got.subarray(i * BS, (i + 1) * BS), nsid, lba + i, r);
            if (bad) {
              finalMismatches++;
              if (mismatchDetails.length < 20) mismatchDetails.push({ region: r, nsid, lba: lba + i, reason: `final read-back: ${bad}` });
            } else finalVerified++;
          }
        }
      }
    }
  }
  for (const c of lingering) c.sock.destroy();
  if (!hung) await engine.close();
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch (e) {
      failures.push(`cleanup: ${e.message}`);
    }
  }
  // Threads (io_uring's workers among them) and descriptors go shortly after close: wait up to 10 s.
  let end;
  for (let i = 0; i < 50; i++) {
    globalThis.gc?.();
    end = resources();
    if (end.fds <= start.fds && end.threads <= start.threads) break;
    await sleep(200);
  }
  // Descriptors open at the end that were not at the start (by what they point at), to tell what stayed.
  const left = startFds.slice();
  const newFds = fdTargets().filter((t) => {
    const i = left.indexOf(t);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
  const mismatches = sum(ST.mismatches) + finalMismatches;
  const report = {
    date: new Date().toISOString(),
    seed,
    minutes: +((endOfLoad - t0) / 60_000).toFixed(2),
    workers,
    dataPath,
    participants: { poolTaskLoops: workers, mainThread: 1, attachedWorker: 1 },
    attachedWorkerExits: attachedExits,
    ios: sum(ST.ios),
    reads: sum(ST.reads),
    readsVerified: sum(ST.verified),
    readsFailed: sum(ST.readsFailed),
    writes: sum(ST.writes),
    writesAcknowledged: sum(ST.writesOk),
    writesFailed: sum(ST.writesFailed),
    writesUnresolved: sum(ST.writes) - sum(ST.writesOk) - sum(ST.writesFailed),
    deallocates: sum(ST.deallocs),
    flushes: sum(ST.flushes),
    finalBlocksVerified: finalVerified,
    flushErrorBlocksVerified,
    mismatches,
    mismatchDetails: mismatchDetails.slice(0, 20),
    capacityExceeded: sum(ST.capacity),
    capacityExceededDuringFullDisk: fullDiskCapacityErrors,
    commandsFailedByReset: sum(ST.resetErrors),
    commandsTimedOut: sum(ST.timeouts),
    timeoutsDuringHostTimeout: timeoutsDuringInjection,
    resetsAfterTimeouts: timeoutResets,
    unexpectedErrors: sum(ST.errors),
    errorCodes: codes,
    taskEnds,
    hangs,
    unhandled: unhandled.length,
    unhandledDetails: unhandled.slice(0, 10),
    injected,
    checks,
    notInjected: skipped,
    resetErrorsByParticipant: Object.fromEntries(Array.from({ length: regions }, (_, r) => [regionName(r), stats[r * STRIDE + ST.resetErrors]])),
    newFds,
    resources: { start, end, tolerance: { fds: 0, threads: 0, rssMiB: RSS_TOLERANCE_MIB } },
    failures,
  };
  if (report.ios === 0) failures.push('no I/O completed');
  if (mismatches) failures.push(`${mismatches} mismatches`);
  if (hangs.length) failures.push(`${hangs.length} hangs`);
  if (unhandled.length) failures.push(`${unhandled.length} unhandled rejections / uncaught exceptions`);
  if (report.unexpectedErrors) failures.push(`${report.unexpectedErrors} commands failed with an unexpected error (errorCodes)`);
  if (end.fds > start.fds) failures.push(`open descriptors ${start.fds} at the start, ${end.fds} at the end`);
  if (end.threads > start.threads) failures.push(`threads ${start.threads} at the start, ${end.threads} at the end`);
  if (end.rssMiB > start.rssMiB + RSS_TOLERANCE_MIB) failures.push(`RSS ${start.rssMiB} MiB at the start, ${end.rssMiB} MiB at the end`);
  report.passed = failures.length === 0;
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else {
    const l = (k, v) => console.log(`  ${k.padEnd(30)} ${v}`);
    console.log(`soak: ${report.passed ? 'passed' : 'FAILED'} (seed ${seed}, ${report.minutes} min, ${workers} pool workers, ${dataPath})`);
    l('I/Os', `${report.ios} (reads ${report.reads}, writes ${report.writes}, deallocates ${report.deallocates}, flushes ${report.flushes})`);
    l('reads verified', `${report.readsVerified} during the run, ${finalVerified} blocks at the end, ${flushErrorBlocksVerified} after flush errors`);
    l('writes', `${report.writesAcknowledged} acknowledged, ${report.writesFailed} failed, ${report.writesUnresolved} never completed (their thread ended) (${report.commandsFailedByReset} commands failed by resets, ${report.commandsTimedOut} timed out, ${report.capacityExceeded} Capacity Exceeded)`);
    l('mismatches', mismatches);
    l('hangs', hangs.length);
    l('unhandled', unhandled.length);
    l('unexpected errors', report.unexpectedErrors);
    l('task ends', JSON.stringify(taskEnds));
    l('injected', JSON.stringify(injected));
    l('injection checks', JSON.stringify(checks));
    for (const [k, why] of Object.entries(skipped)) l(`not injected: ${k}`, why);
    l('RSS MiB start / end', `${start.rssMiB} / ${end.rssMiB}`);
    l('fds start / end', `${start.fds} / ${end.fds}${newFds.length ? ` (new: ${newFds.join(', ')})` : ''}`);
    l('threads start / end', `${start.threads} / ${end.threads}`);
    for (const f of failures) console.log(`  FAILURE: ${f}`);
  }
  process.exit(report.passed ? 0 : 1);
}

// Interrupted: stop the load, check and report what ran, and unmount what was mounted.
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => void finish());
await schedule();
await finish();
