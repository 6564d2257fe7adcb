// Crash-safe metadata: the sidecar and the lock appear whole or not at all and never replace anything, a
// failure between writing and publishing leaves nothing behind, temporary files a crash left are never taken
// for the sidecar and never block an open. Real files, a real full tmpfs (root, as CI has), and real system
// call failures and crashes injected with strace into a child process opening the image (no fs mocks).
import { describe, it, expect } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileBackend } from '../../../../src/engine/device/backends/file.js';
import { isNvmqImage } from '../../../../src/engine/device/backends/image.js';
import { isTempOf, publishFile, removeTemps } from '../../../../src/engine/device/backends/publish.js';
import { haveTool, scratch, treeOf } from '../../../helpers/harness.js';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/image-holder.mjs', import.meta.url));
const { cleanups, dir } = scratch();

/** A process that is gone: its pid and start time name no live process. */
function deadHolder(image: string): string {
  const dead = spawnSync(process.execPath, ['-e', '0']);
  const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return JSON.stringify({ pid: dead.pid, start: null, boot, pidns: fs.readlinkSync('/proc/self/ns/pid'), host: os.hostname(), nonce: 'dead', image }) + '\n';
}

type Outcome = { ok: true; pid: number } | { ok: false; code: string; message: string } | undefined;

/**
 * Opens `options` with FileBackend in a child process under strace (which traces `trace` into `log`, and
 * injects `inject`, a list of strace -e / -P arguments), then closes it; returns what the open said
 * (undefined when the process died first) and how the process ended.
 */
function openTraced(options: object, strace: { log?: string; trace?: string; inject?: string[] }): { outcome: Outcome; signal: NodeJS.Signals | null } {
  const args = ['-f', '-qq', '-y', '-o', strace.log ?? '/dev/null', '-e', `trace=${strace.trace ?? 'link'}`, ...(strace.inject ?? []), process.execPath, FIXTURE, JSON.stringify(options)];
  const r = spawnSync('strace', args, { input: '', encoding: 'utf8', timeout: 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  // strace exits as its tracee did: a tracee killed by SIGKILL kills strace the same way.
  return { outcome: line === undefined ? undefined : (JSON.parse(line) as Outcome), signal: r.signal };
}

const SIDECAR_TEMP = /^a\.img\.nvmq\.json\.\d+\.[0-9a-f]{8}\.tmp$/;

describe('publishFile', () => {
  it('writes the whole content under the name, 0644, and leaves no temporary file', () => {
    const d = dir();
    const file = path.join(d, 'x.json');
    const st = publishFile(file, '{"a":1}\n');
    expect(st).toBeDefined();
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    expect(fs.statSync(file).ino).toBe(st!.ino);
    expect(fs.readdirSync(d)).toEqual(['x.json']);
  });

  it('never replaces a name that is there (a file, a directory, a symlink, a dangling one), and leaves nothing of its own', () => {
    const d = dir();
    const elsewhere = dir();
    fs.writeFileSync(path.join(d, 'file'), 'theirs\n');
    fs.mkdirSync(path.join(d, 'directory'));
    fs.writeFileSync(path.join(elsewhere, 'target'), 'theirs too\n');
    fs.symlinkSync(path.join(elsewhere, 'target'), path.join(d, 'symlink'));
    fs.symlinkSync(path.join(elsewhere, 'missing'), path.join(d, 'dangling'));
    const before = treeOf(d);
    const outside = treeOf(elsewhere);
    for (const name of ['file', 'directory', 'symlink', 'dangling']) expect(publishFile(path.join(d, name), 'mine\n')).toBeUndefined();
    expect(treeOf(d)).toEqual(before);
    expect(treeOf(elsewhere)).toEqual(outside);
  });

  it('knows its temporary names, and removeTemps() removes only those', () => {
    const d = dir();
    const file = path.join(d, 'a.img.nvmq.json');
    expect(isTempOf(file, 'a.img.nvmq.json.123.0123abcd.tmp')).toBe(true);
    for (const name of ['a.img.nvmq.json', 'a.img.nvmq.json.bak', 'a.img.nvmq.json.123.0123abcd', 'a.img.nvmq.json.x.0123abcd.tmp', 'a.img.nvmq.json.123.0123ABCD.tmp', 'b.img.nvmq.json.123.0123abcd.tmp', 'a.img.nvmq.lock.123.0123abcd.tmp']) {
      expect(isTempOf(file, name), name).toBe(false);
    }
    for (const name of ['a.img.nvmq.json.1.00000000.tmp', 'a.img.nvmq.json.2.ffffffff.tmp', 'a.img.nvmq.json.bak', 'a.img.nvmq.lock.3.00000000.tmp']) fs.writeFileSync(path.join(d, name), '{');
    fs.mkdirSync(path.join(d, 'a.img.nvmq.json.4.00000000.tmp'));
    removeTemps(file);
    expect(fs.readdirSync(d).sort()).toEqual(['a.img.nvmq.json.4.00000000.tmp', 'a.img.nvmq.json.bak', 'a.img.nvmq.lock.3.00000000.tmp']);
  });
});

describe('a failure between writing the sidecar and publishing it leaves nothing behind', () => {
  it('a full file system: the temporary sidecar is made but its write fails; no image, sidecar, temporary file or lock stays', () => {
    // One page of data: the lock takes it, so the temporary sidecar is created (inodes are free) and writing it fails.
    const mnt = dir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'nvmq-test', mnt]);
    cleanups.push(() => execFileSync('umount', [mnt]));
    const img = path.join(mnt, 'a.img');
    let caught: unknown;
    try {
      new FileBackend({ path: img, size: 1 << 20 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'NVMQ_IMAGE_SIDECAR_FAILED', path: img, message: `cannot create ${img}: writing its sidecar ${img}.nvmq.json failed (write: ENOSPC)` });
    expect(treeOf(mnt)).toEqual({});
    // publishFile itself, the same way: the error is the system call's, and no temporary file stays.
    expect(() => publishFile(path.join(mnt, 'b.json'), 'x'.repeat(8192))).toThrow(expect.objectContaining({ code: 'ENOSPC', syscall: 'write' }));
    expect(treeOf(mnt)).toEqual({});
  });

  // The fsyncs of a creation, in order: the lock's temporary file, the directory, the image, the directory, the
  // sidecar's temporary file (the 5th), the directory once the sidecar is linked (the 6th).
  it.skipIf(!haveTool('strace')).each([
    ['link(2) of the sidecar', 'link', ['-P', 'SIDECAR', '-e', 'inject=link:error=EIO']],
    ['fsync(2) of the temporary sidecar', 'fsync', ['-e', 'inject=fsync:error=EIO:when=5']],
    ['fsync(2) of the directory after the link (the sidecar it published is taken back too)', 'fsync', ['-e', 'inject=fsync:error=EIO:when=6']],
  ] as const)('%s failing (EIO, injected): the open fails in one line and leaves the directory as it was', (_what, syscall, inject) => {
    const d = dir();
    fs.writeFileSync(path.join(d, 'keep.txt'), 'not nvmq\n');
    const before = treeOf(d);
    const img = path.join(d, 'a.img');
    const { outcome } = openTraced({ path: img, size: 1 << 20 }, { trace: syscall, inject: inject.map((a) => a.replace('SIDECAR', `${img}.nvmq.json`)) });
    expect(outcome).toEqual({ ok: false, code: 'NVMQ_IMAGE_SIDECAR_FAILED', message: `cannot create ${img}: writing its sidecar ${img}.nvmq.json failed (${syscall}: EIO)` });
    expect(treeOf(d)).toEqual(before);
  });
});

describe('temporary files a crash left', () => {
  it('are never the sidecar, do not block an open, and go with the next read-write open; read-only opens leave them', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    await new FileBackend({ path: img, size: 1 << 20 }).close();
    const sidecar = fs.readFileSync(img + '.nvmq.json', 'utf8');
    // A crash mid-write (a short temporary file), a crash after the link (the temporary name is a second name of
    // the sidecar), a lock's temporary file of a dead process, and a file nvmq did not make, which stays.
    fs.writeFileSync(img + '.nvmq.json.999999.0badc0de.tmp', '{"format":"nvmq-im');
    fs.linkSync(img + '.nvmq.json', img + '.nvmq.json.999998.deadbeef.tmp');
    fs.writeFileSync(img + '.nvmq.lock.999997.00c0ffee.tmp', deadHolder(img));
    fs.writeFileSync(img + '.nvmq.json.bak', 'someone\'s backup\n');
    const littered = treeOf(d);
    expect(isNvmqImage(img)).toBe(true);
    await new FileBackend({ path: img, readOnly: true }).close();
    expect(treeOf(d)).toEqual(littered);
    const rw = new FileBackend({ path: img });
    expect(rw.image.created).toBe(false);
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json', 'a.img.nvmq.json.bak', 'a.img.nvmq.lock']);
    await rw.close();
    expect(fs.readFileSync(img + '.nvmq.json', 'utf8')).toBe(sidecar);
    expect(isNvmqImage(img)).toBe(true);
  });

  it('a complete temporary sidecar beside an image without its sidecar is not taken for one; beside no image it does not block creating', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    const content = JSON.stringify({ format: 'nvmq-image', version: 1, size: 1 << 20 }) + '\n';
    fs.writeFileSync(img, Buffer.alloc(0));
    fs.truncateSync(img, 1 << 20);
    fs.writeFileSync(img + '.nvmq.json.999999.0badc0de.tmp', content);
    expect(isNvmqImage(img)).toBe(false);
    expect(() => new FileBackend({ path: img })).toThrow(expect.objectContaining({ code: 'NVMQ_REFUSING_TO_OVERWRITE' }));
    expect(fs.existsSync(img + '.nvmq.json')).toBe(false);
    fs.rmSync(img);
    const b = new FileBackend({ path: img, size: 1 << 20 });
    expect(b.image.created).toBe(true);
    await b.close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });
});

describe.skipIf(!haveTool('strace'))('crashes (SIGKILL injected at a system call) and the next open', () => {
  it('killed after the sidecar is linked, before its temporary name is removed: the next open works, and clears the leftovers', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    // The unlinks of a creation: the lock's temporary name, then the sidecar's.
    const { outcome, signal } = openTraced({ path: img, size: 1 << 20 }, { trace: 'unlink', inject: ['-e', 'inject=unlink:signal=SIGKILL:when=2'] });
    expect(outcome).toBeUndefined();
    expect(signal).toBe('SIGKILL');
    const names = fs.readdirSync(d).sort();
    expect(names.slice(0, 3)).toEqual(['a.img', 'a.img.nvmq.json', expect.stringMatching(SIDECAR_TEMP)]);
    expect(names.slice(3)).toEqual(['a.img.nvmq.lock']);
    expect(fs.statSync(path.join(d, names[2]!)).ino).toBe(fs.statSync(img + '.nvmq.json').ino);
    expect(isNvmqImage(img)).toBe(true);
    const b = new FileBackend({ path: img, size: 1 << 20 });
    expect(b.image.created).toBe(false);
    expect(b.size).toBe(1 << 20);
    await b.close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });

  it('killed before the sidecar is linked: the image is not nvmq\'s (its creation did not finish), and the temporary sidecar is not read as one', async () => {
    const d = dir();
    const img = path.join(d, 'a.img');
    const { outcome, signal } = openTraced({ path: img, size: 1 << 20 }, { inject: ['-P', `${img}.nvmq.json`, '-e', 'inject=link:signal=SIGKILL'] });
    expect(outcome).toBeUndefined();
    expect(signal).toBe('SIGKILL');
    const names = fs.readdirSync(d).sort();
    expect(names).toEqual(['a.img', expect.stringMatching(SIDECAR_TEMP), 'a.img.nvmq.lock']);
    // The temporary sidecar is whole (it was fsynced before the link), and still not the sidecar.
    expect(JSON.parse(fs.readFileSync(path.join(d, names[1]!), 'utf8'))).toMatchObject({ format: 'nvmq-image', size: 1 << 20 });
    expect(isNvmqImage(img)).toBe(false);
    expect(() => new FileBackend({ path: img })).toThrow(expect.objectContaining({ code: 'NVMQ_REFUSING_TO_OVERWRITE' }));
    // Removing the unfinished image, as for any file nvmq did not make, lets the next open create it.
    fs.rmSync(img);
    await new FileBackend({ path: img, size: 1 << 20 }).close();
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });
});

describe.skipIf(!haveTool('strace'))('what reaches the disk, and in which order (strace)', () => {
  /** The traced calls on `d`'s files, in order, with temporary names written <name>.TMP. */
  function eventsIn(log: string, d: string): string[] {
    const tmp = /\.\d+\.[0-9a-f]{8}\.tmp\b/g;
    const out: string[] = [];
    for (const raw of fs.readFileSync(log, 'utf8').split('\n')) {
      const line = raw.replace(/^\d+\s+/, '').replaceAll(d + '/', '').replaceAll(d, '.').replace(tmp, '.TMP');
      let m: RegExpMatchArray | null;
      if ((m = line.match(/^openat\(AT_FDCWD<[^>]*>, "([^"]+)", ([A-Z_|]+)/)) && /O_CREAT/.test(m[2]!)) out.push(`create${/O_EXCL/.test(m[2]!) ? '-excl' : ''} ${m[1]}`);
      else if ((m = line.match(/^(fsync|fdatasync|ftruncate)\(\d+<([^>]+)>/))) out.push(`${m[1]} ${m[2]}`);
      else if ((m = line.match(/^(link|rename|renameat2?)\("([^"]+)", "([^"]+)"\)/))) out.push(`${m[1]} ${m[2]} ${m[3]}`);
      else if ((m = line.match(/^unlink\("([^"]+)"\)/))) out.push(`unlink ${m[1]}`);
    }
    return out;
  }

  it('creating an image: the lock and the sidecar are fsynced under a temporary name, linked, then the directory is fsynced; the image is durable first', async () => {
    const d = dir();
    const log = path.join(dir(), 'trace');
    const img = path.join(d, 'a.img');
    const { outcome } = openTraced({ path: img, size: 1 << 20 }, { log, trace: 'openat,fsync,fdatasync,ftruncate,link,linkat,unlink,unlinkat,rename,renameat,renameat2' });
    expect(outcome).toMatchObject({ ok: true });
    expect(eventsIn(log, d)).toEqual([
      'create-excl a.img.nvmq.lock.TMP',
      'fsync a.img.nvmq.lock.TMP',
      'link a.img.nvmq.lock.TMP a.img.nvmq.lock',
      'unlink a.img.nvmq.lock.TMP',
      'fsync .',
      'create-excl a.img',
      'ftruncate a.img',
      'fsync a.img',
      'fsync .',
      'create-excl a.img.nvmq.json.TMP',
      'fsync a.img.nvmq.json.TMP',
      'link a.img.nvmq.json.TMP a.img.nvmq.json',
      'unlink a.img.nvmq.json.TMP',
      'fsync .',
      'unlink a.img.nvmq.lock',
    ]);
  });

  it('on a file system without hard links (link(2) refused with EPERM, injected): both are created in place with O_EXCL, fsynced, then the directory', async () => {
    const d = dir();
    const log = path.join(dir(), 'trace');
    const img = path.join(d, 'a.img');
    const { outcome } = openTraced({ path: img, size: 1 << 20 }, { log, trace: 'openat,fsync,fdatasync,ftruncate,link,unlink,rename,renameat,renameat2', inject: ['-e', 'inject=link:error=EPERM'] });
    expect(outcome).toMatchObject({ ok: true });
    const events = eventsIn(log, d).filter((e) => !e.startsWith('link ') && !e.includes('.TMP'));
    expect(events).toEqual(['create-excl a.img.nvmq.lock', 'fsync a.img.nvmq.lock', 'fsync .', 'create-excl a.img', 'ftruncate a.img', 'fsync a.img', 'fsync .', 'create-excl a.img.nvmq.json', 'fsync a.img.nvmq.json', 'fsync .', 'unlink a.img.nvmq.lock']);
    expect(isNvmqImage(img)).toBe(true);
    expect(fs.readdirSync(d).sort()).toEqual(['a.img', 'a.img.nvmq.json']);
  });
});
