/**
 * One read-write opener per image at a time, across processes and within one.
 *
 * Two engines writing one image (two processes, or two opens in one process)
 * would interleave writes and metadata no one ordered; a read-write open
 * therefore claims the image, and a second read-write open fails with
 * NVMQ_IMAGE_BUSY naming the path and, where it is known, the holder's pid.
 *
 * Read-only opens claim nothing and are not refused, even while a writer
 * holds the image: they cannot damage it, and what they see is what a reader
 * of any shared block device sees (blocks as they are at the moment of the
 * read, possibly mid-way through a writer's command). Refusing them would
 * buy nothing for the image and would stop `nvmq identify` from looking at an
 * image in use. They also never create anything (not even a lock file).
 *
 * How the claim is made, and why:
 *
 * - Not flock(2) / fcntl locks: Node.js has neither, and the native addon is
 *   optional (three builds: io_uring, without liburing, none), so the lock
 *   must work in plain JavaScript, and the same way in every build so that
 *   they exclude one another.
 * - Regular files: a lock file `<image>.nvmq.lock` beside the image's real
 *   path (a symlink and its target share one lock). It appears with its
 *   content in one step (publish.ts): written to a temporary file and
 *   fsynced, then link(2)ed to the lock's name, which fails with EEXIST when
 *   the lock exists (O_EXCL's guarantee: of two openers at once exactly one
 *   creates it), then the directory is fsynced. So a lock that survives a
 *   crash always names its holder (an empty one could not be judged, and
 *   would hold the image until removed by hand); that holder is then stale
 *   (another boot). On a file system without hard links it is created with
 *   O_EXCL and then written.
 * - The content names the holder: pid, the process start time from
 *   /proc/<pid>/stat (field 22), the boot id, the PID namespace and the host.
 *   A lock whose process is gone, a zombie, or a different process under the
 *   same pid (its start time differs), or that was taken before the last
 *   boot, is stale: a holder killed with SIGKILL never blocks the next open.
 *   A lock from another host or PID namespace cannot be judged from here: it
 *   is treated as held, and the message says which file to remove.
 * - Taking over a stale lock is the one step that removes a file another
 *   process may also be looking at. POSIX has no compare-and-delete: two
 *   takers that each judged the lock stale and then removed (or renamed)
 *   whatever was at its name could remove a lock the other had just made. So
 *   the removal runs in a critical section: each taker announces itself with
 *   its own file (`<lock>.break.<pid>.<nonce>`, made the same way) and lists
 *   the directory; it proceeds only if it sees no other live announcement,
 *   else withdraws and retries after a random pause. Two takers cannot both
 *   proceed: each lists only once its own announcement exists, and keeps it
 *   until it leaves, so whichever began listing later sees the other's.
 *   Inside, the lock is read again and removed only if still stale (while it
 *   is stale nobody else can replace it: creating fails while it exists, and
 *   only a taker inside the section removes it). Then the taker competes for
 *   the lock as any opener does. No live lock is ever removed.
 * - Temporary files and announcements a process left when it died (killed
 *   mid-way, or a crash) are removed by the next opener that takes the lock,
 *   judged by the holder their content names, as announcements are.
 * - In one thread the claim also records the image's dev + ino, so a second
 *   name for the same file (a hard link, another mount) is caught too. Across
 *   threads and processes two hard-linked names have two lock files: a known
 *   limit (the same name is caught: the lock names this process's pid).
 * - Block devices get no lock file (nothing is written into /dev): they are
 *   opened with O_EXCL, which the kernel grants to one opener at a time and
 *   refuses with EBUSY while another holds it or a file system on it is
 *   mounted; it ends with the descriptor, so it can never go stale.
 *
 * The claim is released by close() and discard() (close() keeps it on an
 * image it created after prepareDiscard(), so that nobody opens the image
 * before discard() removes it); a process that dies without either leaves a
 * stale lock file that the next opener takes over.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ImageError } from './backend.js';
import { publishFile } from './publish.js';

export const LOCK_SUFFIX = '.nvmq.lock';

/** What a lock file says about the process that holds it. */
interface Holder {
  pid: number;
  /** Start time in clock ticks after boot (/proc/<pid>/stat field 22); null where /proc is not readable. */
  start: string | null;
  boot: string | null;
  pidns: string | null;
  host: string;
  nonce: string;
}

type Verdict = { state: 'alive' | 'dead' } | { state: 'unknown'; why: string };

let me: Omit<Holder, 'nonce'> | undefined;

function readOr(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** State (field 3) and start time (field 22) of a process; undefined when there is none; null without /proc. */
function procStat(pid: number): { state: string; start: string } | null | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields 3.. follow its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

function self(): Omit<Holder, 'nonce'> {
  if (me) return me;
  let pidns: string | null = null;
  try {
    pidns = fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    // No /proc: the pid alone identifies the holder.
  }
  me = {
    pid: process.pid,
    start: procStat(process.pid)?.start ?? null,
    boot: readOr('/proc/sys/kernel/random/boot_id'),
    pidns,
    host: os.hostname(),
  };
  return me;
}

function judge(h: Holder): Verdict {
  const m = self();
  if (h.host !== m.host) return { state: 'unknown', why: `on host ${h.host}` };
  if (h.boot !== null && m.boot !== null && h.boot !== m.boot) return { state: 'dead' };
  if (h.pidns !== null && m.pidns !== null && h.pidns !== m.pidns) return { state: 'unknown', why: `in another PID namespace (${h.pidns})` };
  const p = procStat(h.pid);
  if (p === undefined) return { state: 'dead' };
  if (p === null) {
    try {
      process.kill(h.pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return { state: 'dead' };
    }
    return { state: 'alive' };
  }
  if (p.state === 'Z' || p.state === 'X') return { state: 'dead' };
  if (h.start !== null && p.start !== h.start) return { state: 'dead' };
  return { state: 'alive' };
}

/** The holder a lock (or announcement) file names; 'gone' when there is no such file, undefined when it names none. */
function readHolder(file: string): Holder | 'gone' | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw e;
  }
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    if (!Number.isSafeInteger(h.pid) || h.pid! <= 0 || typeof h.host !== 'string' || typeof h.nonce !== 'string') return undefined;
    return { pid: h.pid!, start: str(h.start), boot: str(h.boot), pidns: str(h.pidns), host: h.host, nonce: h.nonce };
  } catch {
    return undefined;
  }
}

function lockFailed(image: string, file: string, e: unknown): ImageError {
  const why = (e as NodeJS.ErrnoException).code ?? String(e);
  return new ImageError('NVMQ_IMAGE_LOCK_FAILED', `cannot lock ${image} for writing: creating ${file} failed (${why}); nvmq keeps a lock file beside an image it opens read-write`, { cause: e });
}

/** Creates `file` holding `content`, atomically and durably (publish.ts); false when it exists. */
function createWith(image: string, file: string, content: string): boolean {
  try {
    return publishFile(file, content) !== undefined;
  } catch (e) {
    throw lockFailed(image, file, e);
  }
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The image named for a busy error: by whom, and how to clear a lock that cannot be judged. */
export function busyError(image: string, holder: string): ImageError {
  return new ImageError('NVMQ_IMAGE_BUSY', `${image} is open read-write ${holder}`);
}

function describeHolder(h: Holder | undefined, verdict: Verdict, file: string): string {
  if (!h) return `by an unknown process: ${file} names no holder (remove it if no nvmq process has the image open)`;
  if (verdict.state === 'unknown') return `by pid ${h.pid} ${verdict.why}, which cannot be checked from here (remove ${file} if that process is gone)`;
  return `by pid ${h.pid}${h.pid === process.pid ? ' (this process)' : ''} (lock ${file})`;
}

/** Per thread: dev:ino of every image held read-write, with the path it was opened by. */
const heldHere = new Map<string, string>();

function checkNotHeldHere(image: string, inode: string): void {
  const other = heldHere.get(inode);
  if (other !== undefined) throw busyError(image, `in this process (pid ${process.pid}${other === image ? '' : `, as ${other}`})`);
}

/**
 * A read-write claim on an image: for a regular file its lock file, and the
 * image's inode in this thread's registry once bound. release() gives both
 * up; idempotent.
 */
export class ImageClaim {
  private released = false;
  private inode: string | undefined;
  private constructor(
    readonly image: string,
    /** The lock file; null for a block device (O_EXCL holds it). */
    readonly lockFile: string | null,
    private readonly nonce: string,
  ) {}

  /**
   * Claims `image` for writing. `lockTarget` is the path the lock file goes
   * beside (the image's real path), null for a block device; `st`, when the
   * image exists, lets a second open in this process fail before any lock
   * file is touched. Throws NVMQ_IMAGE_BUSY when the image is held,
   * NVMQ_IMAGE_LOCK_FAILED when no lock file can be made.
   */
  static take(image: string, lockTarget: string | null, st?: fs.Stats): ImageClaim {
    if (st) checkNotHeldHere(image, `${st.dev}:${st.ino}`);
    const lockFile = lockTarget === null ? null : lockTarget + LOCK_SUFFIX;
    return new ImageClaim(image, lockFile, lockFile === null ? '' : acquire(image, lockFile));
  }

  /** Records the image's inode (the file now under the claim); NVMQ_IMAGE_BUSY if this process holds it under another name. */
  bind(st: fs.Stats): void {
    const inode = `${st.dev}:${st.ino}`;
    if (inode === this.inode) return;
    checkNotHeldHere(this.image, inode);
    if (this.inode !== undefined) heldHere.delete(this.inode);
    heldHere.set(inode, this.image);
    this.inode = inode;
  }

  get held(): boolean {
    return !this.released;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.inode !== undefined) heldHere.delete(this.inode);
    if (this.lockFile === null) return;
    // Only our own lock: nobody removes a live lock, so anything else there means ours is already gone.
    const h = readHolder(this.lockFile);
    if (typeof h === 'object' && h.nonce === this.nonce) fs.rmSync(this.lockFile, { force: true });
  }
}

/**
 * Rounds acquire() tries before giving up. A round ends without a result only
 * while the lock is stale or vanishing and other openers are taking it over
 * too (a live holder ends the loop at once with NVMQ_IMAGE_BUSY), and each
 * such race is settled within a few rounds; 200 rounds of at most
 * RETRY_PAUSE_MAX_MS is about a second of contention at the worst, after
 * which the opener gets an error to retry on rather than spinning forever.
 */
const ACQUIRE_ATTEMPTS = 200;
/**
 * Pause after losing the takeover's critical section to another taker: a
 * random 1..RETRY_PAUSE_MAX_MS ms, so that takers who met do not meet again
 * in lockstep. Short, since a taker stays in the section for only a few
 * system calls; the pause blocks the thread (the open is synchronous).
 */
const RETRY_PAUSE_MAX_MS = 10;

/** Creates the lock file `file` for `image`, taking over a stale one; returns the nonce it holds. */
function acquire(image: string, file: string): string {
  const nonce = randomBytes(8).toString('hex');
  const content = JSON.stringify({ ...self(), nonce, image }) + '\n';
  for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
    if (createWith(image, file, content)) {
      sweepQuietly(file);
      return nonce;
    }
    const h = readHolder(file);
    if (h === 'gone') continue;
    const verdict: Verdict = h ? judge(h) : { state: 'unknown', why: '' };
    if (verdict.state !== 'dead') throw busyError(image, describeHolder(h, verdict, file));
    if (!removeStale(image, file, content)) sleepMs(1 + Math.floor(Math.random() * RETRY_PAUSE_MAX_MS));
  }
  throw busyError(image, `by other openers taking over the stale ${file} at the same time; try again`);
}

/** After taking the lock: what dead processes left beside it goes (best effort: litter never blocks an open). */
function sweepQuietly(file: string): void {
  try {
    sweep(file);
  } catch {
    // Left for the next opener.
  }
}

/**
 * The takeover's critical section (see the header): announce, check that no
 * other live taker is announced, remove the lock if it is still stale.
 * False when another taker was seen (the caller pauses and retries).
 */
function removeStale(image: string, file: string, content: string): boolean {
  const mine = `${file}.break.${process.pid}.${randomBytes(4).toString('hex')}`;
  if (!createWith(image, mine, content)) return false;
  try {
    if (sweep(file, mine)) return false;
    const h = readHolder(file);
    if (typeof h === 'object' && judge(h).state === 'dead') fs.rmSync(file, { force: true });
    return true;
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/**
 * Looks at the takeover announcements and temporary files beside the lock
 * `file` (but `mine`), removes those of dead processes (litter: no live
 * process will use them) and says whether another live taker is announced.
 */
function sweep(file: string, mine?: string): boolean {
  const dir = path.dirname(file);
  const prefix = path.basename(file) + '.';
  let contended = false;
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith(prefix) || path.join(dir, name) === mine) continue;
    const isTaker = name.startsWith(prefix + 'break.');
    if (!isTaker && !name.endsWith('.tmp')) continue;
    const other = path.join(dir, name);
    const h = readHolder(other);
    if (h === 'gone') continue;
    if (h && judge(h).state === 'dead') fs.rmSync(other, { force: true });
    else if (isTaker) contended = true;
  }
  return contended;
}
