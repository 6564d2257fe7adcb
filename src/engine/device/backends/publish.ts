/**
 * The files nvmq writes beside an image (the sidecar, the lock file, a lock
 * takeover's announcement) appear whole or not at all, to a reader now and
 * after a crash, and never take the place of anything already there.
 *
 * publishFile(file, content), in this order:
 *
 * 1. The content goes to a temporary file in the same directory,
 *    `<file>.<pid>.<8 hex digits>.tmp`, created with O_EXCL: a fresh name, so
 *    never someone else's file and never through a symlink.
 * 2. fsync(2) of that file: its bytes are on the medium before any name
 *    points at them, so a crash can never leave `<file>` empty or short.
 * 3. link(2) of the temporary file to `<file>`: the name appears in one step
 *    with the whole content, and link fails with EEXIST when anything has the
 *    name already (a file, a directory, a symlink, dangling or not). That is
 *    O_EXCL's guarantee, which the usual rename(2) would not give: rename
 *    replaces what it finds, and these files are created, never replaced (a
 *    lock must exclude a second creator; a sidecar that is not this open's is
 *    refused, not overwritten). renameat2's RENAME_NOREPLACE would do too,
 *    but Node.js has no binding for it and the native addon is optional.
 * 4. unlink(2) of the temporary name, then fsync(2) of the directory: the
 *    new name is durable before publishFile() returns.
 *
 * Every failure removes the temporary file, and a name this call published
 * before a later step failed; the error is the system call's.
 *
 * On a file system without hard links (link fails with EPERM, EOPNOTSUPP,
 * ENOTSUP or ENOSYS: FAT, some FUSE file systems) the file is created at its
 * name with O_EXCL, written and fsynced, then the directory: still never a
 * replacement, and durable once publishFile() returns, but a crash between
 * the create and the fsync can leave it short there.
 *
 * A temporary file a crash leaves behind is never read as the file (readers
 * open the exact name). Its owner clears it: image.ts removes the sidecar's
 * (removeTemps(), under the image's claim, where no live opener writes one),
 * lock.ts those of dead processes (their content names the process).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** link(2) errors that mean "this file system has no hard links". */
const NO_HARD_LINKS = new Set(['EPERM', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS']);
/** fsync(2) errors on a directory that mean "this file system does not sync directories" (it has nothing to make durable, or cannot). */
const NO_DIRECTORY_SYNC = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP']);
/** Fresh temporary names tried when one is taken (4 random bytes: a clash is a leftover with the same pid, and rare). */
const TEMP_ATTEMPTS = 4;

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** Whether the directory entry `name` is one of publishFile()'s temporary names for `file`. */
export function isTempOf(file: string, name: string): boolean {
  const prefix = path.basename(file) + '.';
  return name.startsWith(prefix) && /^\d+\.[0-9a-f]{8}\.tmp$/.test(name.slice(prefix.length));
}

/**
 * Writes `content` to `file` as the header says; returns the new file's
 * stat, or undefined (and writes nothing) when `file` already exists.
 */
export function publishFile(file: string, content: string, mode = 0o644): fs.Stats | undefined {
  const { tmp, fd } = createTemp(file, mode);
  let st: fs.Stats;
  try {
    try {
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
      st = fs.fstatSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.linkSync(tmp, file);
  } catch (e) {
    removeQuietly(tmp);
    const code = errno(e);
    const atLink = (e as NodeJS.ErrnoException).syscall === 'link';
    if (atLink && code === 'EEXIST') return undefined;
    if (atLink && code !== undefined && NO_HARD_LINKS.has(code)) return createInPlace(file, content, mode);
    throw e;
  }
  try {
    fs.unlinkSync(tmp);
    syncDirectory(path.dirname(file));
  } catch (e) {
    removeQuietly(tmp);
    removeIfSame(file, st);
    throw e;
  }
  return st;
}

function createTemp(file: string, mode: number): { tmp: string; fd: number } {
  for (let attempt = 1; ; attempt++) {
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      return { tmp, fd: fs.openSync(tmp, 'wx', mode) };
    } catch (e) {
      if (errno(e) !== 'EEXIST' || attempt === TEMP_ATTEMPTS) throw e;
    }
  }
}

/** Without hard links: O_EXCL at the name itself, the content, fsync, the directory. */
function createInPlace(file: string, content: string, mode: number): fs.Stats | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', mode);
  } catch (e) {
    if (errno(e) === 'EEXIST') return undefined;
    throw e;
  }
  const st = fs.fstatSync(fd);
  try {
    try {
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    syncDirectory(path.dirname(file));
  } catch (e) {
    removeIfSame(file, st);
    throw e;
  }
  return st;
}

/**
 * fsync(2) of a directory, so that the names created in it (and removed
 * from it) survive a crash. Skipped where the file system cannot sync a
 * directory, and where the directory cannot be opened for reading (one the
 * caller may write but not list): there is nothing more that can be done.
 */
export function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (e) {
    if (errno(e) === 'EACCES') return;
    throw e;
  }
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    const code = errno(e);
    if (code === undefined || !NO_DIRECTORY_SYNC.has(code)) throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Removes every temporary file publishFile() may have left for `file` (a
 * crash between its steps). Only for a caller that knows no live process is
 * publishing `file` (image.ts, under the image's claim). Best effort: what
 * cannot be removed stays, and is never read as `file` anyway.
 */
export function removeTemps(file: string): void {
  const dir = path.dirname(file);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!isTempOf(file, name)) continue;
    const p = path.join(dir, name);
    try {
      if (fs.lstatSync(p).isFile()) fs.unlinkSync(p);
    } catch {
      // Gone already, or not ours to remove after all.
    }
  }
}

function removeQuietly(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch {
    // Not there (never made, or removed already).
  }
}

/** Removes `p` only while it is still the file `st` describes. */
function removeIfSame(p: string, st: fs.Stats): void {
  try {
    const now = fs.lstatSync(p);
    if (now.isFile() && now.dev === st.dev && now.ino === st.ino) fs.unlinkSync(p);
  } catch {
    // Gone already.
  }
}
