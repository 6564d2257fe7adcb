#!/usr/bin/env node
// The power-cut test: nvmq in a QEMU guest writes stamped blocks to an emulated NVMe disk
// whose storage is an image on this machine, acknowledging each block once a Write with FUA
// or a covering Flush has completed; QEMU is SIGKILLed at a random moment (the guest loses
// its page cache and everything in flight); then this machine reads the image and checks
// that every acknowledged (block, generation) is there, or a later generation, with a
// valid stamp. See docs/RELIABILITY.md, "Power cuts".
//
// npm run power-cut -- [--cuts 100] [--mode durable|noflush] [--direct] [--portable] [--expect-loss]
//                      [--min-run 0.5] [--max-run 6] [--seed N] [--json FILE]
// --mode noflush --expect-loss is the negative control: it fails unless some cut loses
// acknowledged blocks.
// Exit: 0 as expected, 1 a loss (or, with --expect-loss, none), 77 the fixture skipped.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, readdirSync, rmSync, truncateSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BLOCK, readStamp } from './power-cut/stamp.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE_DIR = process.env.NVMQ_LINUX_PEER_DIR ?? fileURLToPath(new URL('../test/fixtures/linux-peer', import.meta.url));

const { values: a } = parseArgs({
  options: {
    cuts: { type: 'string', default: '100' },
    mode: { type: 'string', default: 'durable' },
    direct: { type: 'boolean', default: false },
    portable: { type: 'boolean', default: false },
    'expect-loss': { type: 'boolean', default: false },
    'min-run': { type: 'string', default: '0.5' },
    'max-run': { type: 'string', default: '6' },
    blocks: { type: 'string', default: '2048' },
    seed: { type: 'string', default: String(Date.now() % 1e9) },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const cuts = Number(a.cuts);
const minRun = Number(a['min-run']);
const maxRun = Number(a['max-run']);
const blocks = Number(a.blocks);
const IMAGE_BYTES = 64 << 20;

let seed = Number(a.seed) >>> 0 || 1;
const random = () => {
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed / 2 ** 32;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`[power-cut] ${s}\n`);

/** Parses the ack file: the highest acknowledged generation per LBA, and the ack count. */
function readAcks(file) {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const acked = new Map();
  let acks = 0;
  let started = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('S ')) started = line;
    const m = /^A (\d+) (\d+)$/.exec(line);
    if (!m) continue; // the last line may be cut short: it was not acknowledged yet
    acks++;
    const lba = Number(m[1]);
    const gen = Number(m[2]);
    if ((acked.get(lba) ?? 0) < gen) acked.set(lba, gen);
  }
  return { acked, acks, started };
}

/** Reads the image and compares it with the acknowledgements. */
function check(image, acked, cut) {
  const fd = openSync(image, 'r');
  const b = new Uint8Array(BLOCK);
  const losses = [];
  let torn = 0;
  let written = 0;
  try {
    for (let lba = 0; lba < blocks; lba++) {
      readSync(fd, b, 0, BLOCK, lba * BLOCK);
      const st = readStamp(b);
      if (st !== 'zero') written++;
      const want = acked.get(lba);
      const ok = typeof st === 'object' && st.lba === lba && st.cut === cut;
      if (!ok && st !== 'zero') torn++;
      if (want === undefined) continue;
      if (!ok || st.gen < want) losses.push({ lba, acked: want, found: typeof st === 'object' ? st : st });
    }
  } finally {
    closeSync(fd);
  }
  return { losses, torn, written };
}

function qemuPid(dir) {
  for (const d of readdirSync(dir)) {
    if (!d.startsWith('nvmq-linux-peer.')) continue;
    const f = join(dir, d, 'qemu.pid');
    if (!existsSync(f)) continue;
    const pid = Number(readFileSync(f, 'utf8').trim());
    if (pid > 0) return pid;
  }
  return 0;
}

// The fixture runs in its own process group: stop it with this script (Ctrl-C, SIGTERM);
// its own cleanup then stops QEMU. The unfinished cut's directory goes too.
let current = null;
let currentDir = null;
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stopping = true;
    if (current) try { process.kill(-current.pid, 'SIGTERM'); } catch {}
    if (currentDir && !a.keep) setTimeout(() => { rmSync(currentDir, { recursive: true, force: true }); process.exit(130); }, 3000);
    else process.exit(130);
  });
}

async function oneCut(cut) {
  if (stopping) await new Promise(() => {}); // the signal handler exits
  const dir = mkdtempSync(join(process.env.NVMQ_POWER_CUT_TMP ?? tmpdir(), 'nvmq-power-cut.'));
  currentDir = dir;
  const share = join(dir, 'share');
  mkdirSync(share);
  const image = join(dir, 'nvme.img');
  // A fresh sparse image: every block starts zero.
  writeFileSync(image, '');
  truncateSync(image, IMAGE_BYTES);
  const acksFile = join(share, 'acks.txt');
  const fixtureLog = join(dir, 'fixture.log');
  const writerArgs = [
    `--acks ${acksFile}`, `--mode ${a.mode}`, a.direct ? '--direct' : '', a.portable ? '--portable' : '', `--blocks ${blocks}`,
    `--cut ${cut}`, `--seed ${Math.floor(random() * 2 ** 31) + 1}`,
  ].join(' ');
  const child = spawn(join(FIXTURE_DIR, 'vfio-guest.sh'), {
    env: {
      ...process.env,
      LP_TMPDIR: dir,
      LP_SHARE_DIR: share,
      LP_NVME_IMAGE: image,
      LP_NVME_DRIVER: 'nvme',
      LP_NVME_OPTS: 'logical_block_size=4096,physical_block_size=4096',
      LP_GUEST_CWD: ROOT,
      LP_GUEST_CMD: `exec node bench/power-cut/writer.mjs --dev "$NVMQ_NVME_DEV" ${writerArgs} 2>>${share}/writer.stderr`,
      LP_GUEST_CMD_TIMEOUT: '300',
    },
    stdio: ['ignore', openSync(fixtureLog, 'a'), openSync(fixtureLog, 'a')],
    detached: true, // its own process group, stopped as a whole if it outlives the cut
  });
  current = child;
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  let exitCode = null;
  exited.then((c) => { exitCode = c; });

  // Wait for the writer's start line (engine open), then let it run a random time.
  const deadline = Date.now() + 180_000;
  while (!(existsSync(acksFile) && readFileSync(acksFile, 'utf8').startsWith('S '))) {
    if (exitCode !== null || Date.now() > deadline) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch {}
      const code = await exited;
      const tail = readFileSync(fixtureLog, 'utf8').split('\n').slice(-15).join('\n');
      if (code === 77) return { skip: tail };
      // No cut happened (say, the guest was too slow for the engine's workers to start):
      // nothing to check; the caller tries again.
      const writer = existsSync(join(share, 'writer.stderr')) ? readFileSync(join(share, 'writer.stderr'), 'utf8').trim().split('\n').slice(0, 4).join(' | ') : '';
      rmSync(dir, { recursive: true, force: true });
      return { retry: `the writer never started (fixture exit ${code})${writer ? `: ${writer}` : ''}` };
    }
    await sleep(100);
  }
  const runMs = Math.round((minRun + random() * (maxRun - minRun)) * 1000);
  await sleep(runMs);

  // The cut: SIGKILL QEMU itself (its pid from -pidfile, checked to be QEMU).
  const pid = qemuPid(dir);
  if (!pid || readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'qemu-system-x86') {
    throw new Error(`cut ${cut}: QEMU's pid not found (${pid}); ${fixtureLog}`);
  }
  if (exitCode !== null) throw new Error(`cut ${cut}: the fixture ended before the cut (exit ${exitCode}); ${fixtureLog}`);
  process.kill(pid, 'SIGKILL');
  const killedAt = Date.now();
  const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch {} }, 60_000);
  await exited;
  clearTimeout(timer);

  const { acked, acks, started } = readAcks(acksFile);
  const { losses, torn, written } = check(image, acked, cut);
  const r = { cut, runMs, acks, ackedBlocks: acked.size, losses: losses.length, torn, written, started, fixtureExit: exitCode, exitAfterKillMs: Date.now() - killedAt };
  if (losses.length) r.firstLosses = losses.slice(0, 5);
  if (!a.keep && (losses.length === 0 || a['expect-loss'])) rmSync(dir, { recursive: true, force: true });
  else r.dir = dir;
  return r;
}

const t0 = Date.now();
const results = [];
log(`${cuts} cuts, mode ${a.mode}${a.direct ? ' O_DIRECT' : ' buffered'}${a.portable ? ', portable data path' : ''}, run ${minRun}-${maxRun} s after the writer starts, seed ${a.seed}`);
for (let i = 1; i <= cuts; i++) {
  let r = await oneCut(i);
  for (let attempt = 1; r.retry; attempt++) {
    log(`cut ${i}: ${r.retry}; not a cut, ${attempt < 3 ? 'again' : 'giving up'}`);
    if (attempt === 3) process.exit(1);
    r = await oneCut(i);
  }
  if (r.skip) {
    log(`SKIP: the linux-peer fixture skipped:\n${r.skip}`);
    process.exit(77);
  }
  results.push(r);
  log(`cut ${i}/${cuts}: ran ${r.runMs} ms, ${r.acks} acks over ${r.ackedBlocks} blocks, ${r.losses} lost, ${r.torn} torn/foreign, ${r.written} written${r.dir ? `, kept ${r.dir}` : ''}`);
  if (r.firstLosses) log(`  first losses: ${JSON.stringify(r.firstLosses)}`);
  if (a.json) appendFileSync(a.json, JSON.stringify(r) + '\n');
}
const sum = (k) => results.reduce((n, r) => n + r[k], 0);
const summary = {
  mode: a.mode, direct: a.direct, cuts: results.length, seed: a.seed,
  acks: sum('acks'), ackedBlocksChecked: sum('ackedBlocks'), losses: sum('losses'),
  cutsWithLoss: results.filter((r) => r.losses > 0).length, torn: sum('torn'),
  seconds: Math.round((Date.now() - t0) / 1000),
};
console.log(JSON.stringify(summary));
const ok = a['expect-loss'] ? summary.cutsWithLoss > 0 : summary.losses === 0;
log(ok ? 'PASS' : a['expect-loss'] ? 'FAIL: the negative control lost nothing: this setup cannot detect a loss' : 'FAIL: acknowledged blocks lost');
process.exit(ok ? 0 : 1);
