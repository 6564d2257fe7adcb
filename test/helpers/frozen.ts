/**
 * A file system that really stalls writes: ext4 on a loop device, frozen by
 * the test (`fsfreeze -f`), so every write that reaches it waits in the
 * kernel until `thaw()`. Files are made on it before the freeze; reads keep
 * working. Each freeze is thawed within `safetyMs` by a detached process
 * even if the test never thaws it (a blocked write could otherwise keep the
 * process from exiting). Needs root, losetup, mkfs.ext4 and fsfreeze.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface FrozenFs {
  /** Where the file system is mounted. */
  dir: string;
  freeze(): void;
  thaw(): void;
  /**
   * Thaws after `ms` from another process: for a test whose thread will be
   * blocked meanwhile (a reset on io_uring waits in the kernel for the
   * writes its ring holds).
   */
  thawAfter(ms: number): void;
}

export function freezableFs(dir: string, cleanups: Array<() => unknown>, safetyMs = 30_000): FrozenFs {
  const backing = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  fs.writeFileSync(backing, '');
  fs.truncateSync(backing, 32 << 20);
  execFileSync('mkfs.ext4', ['-q', backing]);
  const loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
  cleanups.push(() => execFileSync('losetup', ['--detach', loop]));
  execFileSync('mount', [loop, mnt]);
  let frozen = false;
  const thaw = (): void => {
    if (frozen) execFileSync('fsfreeze', ['-u', mnt]);
    frozen = false;
  };
  cleanups.push(() => execFileSync('umount', [mnt]));
  return {
    dir: mnt,
    freeze: () => {
      execFileSync('fsfreeze', ['-f', mnt]);
      frozen = true;
      // Registered after whatever uses the file system, so it runs before they close (last registered first).
      cleanups.push(thaw);
      spawn('sh', ['-c', `sleep ${safetyMs / 1000}; fsfreeze -u ${mnt} 2>/dev/null`], { detached: true, stdio: 'ignore' }).unref();
    },
    thaw,
    thawAfter: (ms) => {
      spawn('sh', ['-c', `sleep ${ms / 1000}; fsfreeze -u ${mnt} 2>/dev/null`], { detached: true, stdio: 'ignore' }).unref();
      // The process thaws it: the cleanup must not try again (fsfreeze -u of a thawed file system fails).
      frozen = false;
    },
  };
}
