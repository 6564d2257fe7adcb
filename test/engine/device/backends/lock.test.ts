// One read-write opener per image: opens in this process, in child processes (holding, SIGKILLed, racing,
// with and without the native addon) and on a real loop device. Read-only openers are let through.
import { describe, it, expect } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import { scratch } from '../../../helpers/harness.js';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/image-holder.mjs', import.meta.url));

const { cleanups, dir } = scratch();

type Outcome = { ok: true; pid: number } | { ok: false; code: string; message: string };

interface Holder {
  child: ChildProcess;
  /** Resolves once the module is loaded (with `go`: the process waits for go() before opening). */
  loaded: Promise<void>;
  outcome: Promise<Outcome>;
  go(): void;
  /** Ends stdin: the holder closes the image and exits. */
  release(): Promise<number | null>;
  kill(): Promise<void>;
}

/** A child process that opens `options` with FileBackend and holds the image until released. */
function holder(options: object, opts: { go?: boolean; env?: NodeJS.ProcessEnv } = {}): Holder {
  const child = spawn(process.execPath, [FIXTURE, JSON.stringify(options), ...(opts.go ? ['go'] : [])], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...opts.env } });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  });
  let onLoaded!: () => void;
  let onOutcome!: (o: Outcome) => void;
  const loaded = new Promise<void>((r) => (onLoaded = r));
  const outcome = new Promise<Outcome>((resolve, reject) => {
    onOutcome = resolve;
    void exited.then((code) => reject(new Error(`holder exited (${code}) before opening`)));
  });
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, nl)) as { loaded?: true } & Outcome;
      buf = buf.slice(nl + 1);
      if (msg.loaded) onLoaded();
      else onOutcome(msg);
    }
  });
  if (!opts.go) onLoaded();
  return {
    child,
    loaded,
    outcome,
    go: () => child.stdin!.write('go\n'),
    release: () => {
      child.stdin!.end();
      return exited;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function newImage(d: string, name = 'a.img'): Promise<string> {
  const img = path.join(d, name);
  await new FileBackend({ path: img, size: 1 << 20 }).close();
  return img;
}

function lockOf(img: string): { pid: number } & Record<string, unknown> {
  return JSON.parse(fs.readFileSync(img + '.nvmq.lock', 'utf8')) as { pid: number };
}

function busy(message: string | RegExp): unknown {
  return expect.objectContaining({ code: 'NVMQ_IMAGE_BUSY', message: typeof message === 'string' ? message : expect.stringMatching(message) });
}

describe('image lock, in one process', () => {
  it('a second read-write open is refused by the same path, a symlink or a hard link; read-only is let through; close releases', async () => {
    const d = dir();
    const img = await newImage(d);
    const first = new FileBackend({ path: img });
    expect(lockOf(img).pid).toBe(process.pid);
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write in this process (pid ${process.pid})`));
    fs.symlinkSync(img, path.join(d, 'link.img'));
    expect(() => new FileBackend({ path: path.join(d, 'link.img'), force: true })).toThrow(busy(`${path.join(d, 'link.img')} is open read-write in this process (pid ${process.pid}, as ${img})`));
    fs.linkSync(img, path.join(d, 'hard.img'));
    expect(() => new FileBackend({ path: path.join(d, 'hard.img'), force: true })).toThrow(busy(/hard\.img is open read-write in this process/));
    const names = fs.readdirSync(d).sort();
    const reader = new FileBackend({ path: img, readOnly: true });
    expect(fs.readdirSync(d).sort()).toEqual(names);
    await reader.close();
    await first.close();
    expect(fs.existsSync(img + '.nvmq.lock')).toBe(false);
    await new FileBackend({ path: path.join(d, 'link.img'), force: true }).close();
    await new FileBackend({ path: img }).discard();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json', 'hard.img', 'link.img']);
  });

  it('judges a lock by its holder: a reused pid, a previous boot and a dead process are stale; a live one, another host or an unreadable lock are not', async () => {
    const d = dir();
    const img = await newImage(d);
    const lock = img + '.nvmq.lock';
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const pidns = fs.readlinkSync('/proc/self/ns/pid');
    const startOf = (pid: number): string => {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    };
    const parent = process.ppid;
    const holderOf = (over: object): string => JSON.stringify({ pid: parent, start: startOf(parent), boot, pidns, host: os.hostname(), nonce: 'n', ...over });
    const expectStale = async (content: string): Promise<void> => {
      fs.writeFileSync(lock, content);
      const b = new FileBackend({ path: img });
      expect(lockOf(img).pid).toBe(process.pid);
      await b.close();
      expect(fs.existsSync(lock)).toBe(false);
    };
    // The parent process is alive: with its own start time it holds the image, with another it is a different process.
    fs.writeFileSync(lock, holderOf({}));
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write by pid ${parent} (lock ${lock})`));
    await expectStale(holderOf({ start: String(Number(startOf(parent)) + 1) }));
    await expectStale(holderOf({ boot: '00000000-0000-0000-0000-000000000000' }));
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.once('exit', r));
    await expectStale(holderOf({ pid: dead.pid, start: null }));
    fs.writeFileSync(lock, holderOf({ host: 'elsewhere' }));
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write by pid ${parent} on host elsewhere, which cannot be checked from here (remove ${lock} if that process is gone)`));
    fs.writeFileSync(lock, 'not a lock');
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write by an unknown process: ${lock} names no holder (remove it if no nvmq process has the image open)`));
    fs.rmSync(lock);
  });

  it('a lock file that cannot be made is NVMQ_IMAGE_LOCK_FAILED, and the image is not opened; reading needs none', async () => {
    // root writes to any directory: a read-only bind mount is a directory nobody can write.
    const ro = dir();
    const img = await newImage(ro);
    execFileSync('mount', ['--bind', ro, ro]);
    cleanups.push(() => execFileSync('umount', [ro]));
    execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
    expect(() => new FileBackend({ path: img })).toThrow(
      expect.objectContaining({ code: 'NVMQ_IMAGE_LOCK_FAILED', message: `cannot lock ${img} for writing: creating ${img}.nvmq.lock failed (EROFS); nvmq keeps a lock file beside an image it opens read-write` }),
    );
    await new FileBackend({ path: img, readOnly: true }).close();
  });
});

describe('image lock, across processes', () => {
  it('a child holding the image makes a second read-write open fail naming its pid; read-only is let through; free once it closes', async () => {
    const d = dir();
    const img = await newImage(d);
    const h = holder({ path: img });
    const got = await h.outcome;
    expect(got).toEqual({ ok: true, pid: h.child.pid });
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write by pid ${h.child.pid} (lock ${img}.nvmq.lock)`));
    await new FileBackend({ path: img, readOnly: true }).close();
    expect(await h.release()).toBe(0);
    expect(fs.existsSync(img + '.nvmq.lock')).toBe(false);
    await new FileBackend({ path: img }).close();
  });

  it('the lock works the same without the native addon: a child without it and this process exclude each other', async () => {
    const d = dir();
    const img = await newImage(d);
    const mine = new FileBackend({ path: img });
    const h = holder({ path: img }, { env: { NVMQ_DISABLE_NATIVE: '1' } });
    expect(await h.outcome).toEqual({ ok: false, code: 'NVMQ_IMAGE_BUSY', message: `${img} is open read-write by pid ${process.pid} (lock ${img}.nvmq.lock)` });
    await h.release();
    await mine.close();
    const h2 = holder({ path: img }, { env: { NVMQ_DISABLE_NATIVE: '1' } });
    expect(await h2.outcome).toMatchObject({ ok: true });
    expect(() => new FileBackend({ path: img })).toThrow(busy(`${img} is open read-write by pid ${h2.child.pid} (lock ${img}.nvmq.lock)`));
    await h2.release();
  });

  it('the lock of a holder killed with SIGKILL is taken over by the next open', async () => {
    const d = dir();
    const img = await newImage(d);
    const h = holder({ path: img });
    await h.outcome;
    await h.kill();
    expect(lockOf(img).pid).toBe(h.child.pid);
    const b = new FileBackend({ path: img });
    expect(lockOf(img).pid).toBe(process.pid);
    await b.close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });

  it.each([
    ['an existing image', 'existing'],
    ['the stale lock of a killed holder', 'stale'],
    ['an image none of them finds (each would create it)', 'new'],
  ] as const)('openers racing for %s: exactly one wins, the others are told who', async (_what, start) => {
    const d = dir();
    const img = path.join(d, 'a.img');
    for (let round = 0; round < 2; round++) {
      if (start !== 'new') await newImage(d);
      if (start === 'stale') {
        const dead = holder({ path: img });
        await dead.outcome;
        await dead.kill();
      }
      const racers = Array.from({ length: 4 }, () => holder({ path: img, size: 1 << 20 }, { go: true }));
      await Promise.all(racers.map((r) => r.loaded));
      for (const r of racers) r.go();
      const outcomes = await Promise.all(racers.map((r) => r.outcome));
      const winners = outcomes.filter((o) => o.ok);
      expect(winners).toHaveLength(1);
      const winner = (winners[0] as { pid: number }).pid;
      for (const o of outcomes.filter((x) => !x.ok)) expect(o).toEqual({ ok: false, code: 'NVMQ_IMAGE_BUSY', message: `${img} is open read-write by pid ${winner} (lock ${img}.nvmq.lock)` });
      expect(lockOf(img).pid).toBe(winner);
      await Promise.all(racers.map((r) => r.release()));
      // No announcement or temporary file is left behind.
      expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
      fs.rmSync(img);
      fs.rmSync(img + '.nvmq.json');
    }
  });
});

describe('block devices: O_EXCL, no lock file', () => {
  function loopDevice(size = 8 << 20): string {
    const backing = path.join(dir(), 'backing.img');
    fs.writeFileSync(backing, Buffer.alloc(size));
    const dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    cleanups.push(() => execFileSync('losetup', ['--detach', dev]));
    return dev;
  }

  it('a second read-write open, here or in another process, is refused; read-only is let through; close releases', async () => {
    const dev = loopDevice();
    // Only nvmq's own names are checked: other test files attach and detach loop devices in /dev meanwhile.
    const nvmqInDev = (): string[] => fs.readdirSync('/dev').filter((n) => n.includes('.nvmq.'));
    expect(nvmqInDev()).toEqual([]);
    const first = new FileBackend({ path: dev, force: true });
    expect(() => new FileBackend({ path: dev, force: true })).toThrow(busy(`${dev} is open read-write in this process (pid ${process.pid})`));
    const h = holder({ path: dev, force: true });
    expect(await h.outcome).toEqual({ ok: false, code: 'NVMQ_IMAGE_BUSY', message: `${dev} is open read-write by another process, or mounted (the kernel refused O_EXCL with EBUSY)` });
    await h.release();
    const reader = holder({ path: dev, readOnly: true });
    expect(await reader.outcome).toMatchObject({ ok: true });
    await reader.release();
    expect(nvmqInDev()).toEqual([]);
    await first.close();
    const again = holder({ path: dev, force: true });
    expect(await again.outcome).toMatchObject({ ok: true });
    expect(() => new FileBackend({ path: dev, force: true })).toThrow(busy(/by another process, or mounted/));
    await again.release();
  });

  it('a device with a mounted file system is refused even with force', () => {
    const dev = loopDevice(16 << 20);
    execFileSync('mkfs.ext4', ['-q', dev]);
    const mnt = dir();
    execFileSync('mount', [dev, mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    expect(() => new FileBackend({ path: dev, force: true })).toThrow(busy(/by another process, or mounted/));
  });
});
