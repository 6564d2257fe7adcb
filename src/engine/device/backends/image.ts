/**
 * Opening the files and devices namespaces live in, without ever clobbering
 * something nvmq did not create.
 *
 * An image nvmq creates is a sparse raw file (so fio can read the same file)
 * with a sidecar `<path>.nvmq.json` that marks it as nvmq's. An existing file
 * without that sidecar, or any block device, is opened for writing only when
 * the caller says `force`. A read-write open claims the image (lock.ts); a
 * read-only open creates nothing and claims nothing.
 *
 * An open either succeeds or leaves the file system as it found it: whatever
 * it created (directories, the image, its sidecar, the lock, a temporary
 * file) is removed when a later step fails, and discardImage() removes it
 * after a successful open whose image is not going to be used after all.
 * Only what this open created is ever removed, and nothing is ever written
 * over: the sidecar appears by link(2) from a temporary file (publish.ts),
 * which fails on any name already there, a symlink included, and a sidecar
 * left beside a missing image is refused (NVMQ_IMAGE_SIDECAR_EXISTS) rather
 * than replaced or deleted.
 *
 * Crashes: a new image is made durable before its sidecar is, and the
 * sidecar is published whole (publish.ts), so after a crash at any point an
 * image either has a complete sidecar and its full size, or has no sidecar
 * (its creation did not finish: it is not nvmq's, and holds nothing nvmq
 * wrote). A temporary sidecar a crash left is never read as the sidecar; the
 * next read-write open of the image removes it (under the claim no live
 * opener is writing one). Read-only opens leave it, as they change nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageError } from './backend.js';
import { ImageClaim, LOCK_SUFFIX, busyError } from './lock.js';
import { publishFile, removeTemps, syncDirectory } from './publish.js';
import { SUPPORTED_LBA_SIZES } from '../namespace.js';

export { ImageError };

export const SIDECAR_SUFFIX = '.nvmq.json';
const SIDECAR_FORMAT = 'nvmq-image';

export interface ImageOptions {
  path: string;
  /** Size in bytes: used when the image has to be created, and checked against an existing one. A whole number of LBAs. */
  size?: number | undefined;
  /** Size in bytes for a new image when `size` is not given, rounded up to a whole number of LBAs; never checked against an existing one. */
  defaultSize?: number | undefined;
  /** The namespace's LBA size (512 or 4096), when known: sizes are checked against it before anything is created. */
  lbaSize?: number | undefined;
  /** Create the image when it does not exist (default true). */
  create?: boolean | undefined;
  /** Write to a file or device nvmq did not create. */
  force?: boolean | undefined;
  readOnly?: boolean | undefined;
  /** Extra open(2) flags, such as O_DIRECT. */
  extraFlags?: number | undefined;
}

export interface OpenedImage {
  fd: number;
  path: string;
  size: number;
  created: boolean;
  blockDevice: boolean;
  readOnly: boolean;
  /** The read-write claim (lock), released by releaseImage(); absent for read-only opens. */
  claim?: ImageClaim | undefined;
  /** Directories this open created, deepest first. */
  createdDirs?: readonly string[] | undefined;
  /** dev:ino of the image, so that discarding it never removes a file that replaced it. */
  inode?: string | undefined;
  /** dev:ino of the sidecar this open created (only when it created the image): the one sidecar discarding may remove. */
  sidecarInode?: string | undefined;
  /** Where the lock goes (the image's real path), for retaking the claim to discard a closed image. */
  lockTarget?: string | undefined;
}

export function sidecarPath(p: string): string {
  return p + SIDECAR_SUFFIX;
}

export function isNvmqImage(p: string): boolean {
  try {
    const meta = JSON.parse(fs.readFileSync(sidecarPath(p), 'utf8')) as { format?: string };
    return meta.format === SIDECAR_FORMAT;
  } catch {
    return false;
  }
}

/** Size of a block device from sysfs (512-byte sectors), since stat reports 0. */
export function blockDeviceSize(rdev: number): number {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 0x100000) & 0xfff) << 8);
  const text = fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}

function invalid(message: string): ImageError {
  return new ImageError('NVMQ_INVALID_ARGUMENT', message);
}

/** Checks the arguments before anything is touched; returns the LBA size sizes are counted in (512 when not given). */
function checkArguments(opts: ImageOptions): number {
  if (typeof opts.path !== 'string' || opts.path === '') throw invalid(`path must be a file or block device path, got ${JSON.stringify(opts.path)}`);
  const lba = opts.lbaSize ?? 512;
  if (!(SUPPORTED_LBA_SIZES as readonly number[]).includes(lba)) throw invalid(`lbaSize must be 512 or 4096, got ${String(opts.lbaSize)}`);
  const max = Math.floor(Number.MAX_SAFE_INTEGER / lba) * lba;
  if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size < lba || opts.size % lba !== 0)) {
    throw invalid(`size must be a whole number of ${lba}-byte LBAs, ${lba}..${max} bytes, got ${String(opts.size)}`);
  }
  if (opts.defaultSize !== undefined && (!Number.isSafeInteger(opts.defaultSize) || opts.defaultSize <= 0 || opts.defaultSize > max)) {
    throw invalid(`defaultSize must be 1..${max} bytes, got ${String(opts.defaultSize)}`);
  }
  return lba;
}

/**
 * stat(2) of `p`, or undefined when nothing is there. With `{ link: true }`,
 * lstat(2): the name itself, so a symlink (even a dangling one) counts as there.
 */
function statIfThere(p: string, opts: { link?: boolean } = {}): fs.Stats | undefined {
  try {
    return opts.link ? fs.lstatSync(p) : fs.statSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return undefined;
  }
}

/** mkdir -p that returns the directories it created, deepest first. */
function makeDirs(dir: string): string[] {
  const first = fs.mkdirSync(dir, { recursive: true });
  if (first === undefined) return [];
  const made: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    made.push(d);
    if (d === first || d === path.dirname(d)) return made;
  }
}

/** The files an open created, each by dev:ino: removing them never removes a file that has taken a name since. */
interface Created {
  path: string;
  inode: string;
  /** Set only once this open has created the sidecar (O_EXCL): a sidecar it did not create is never removed. */
  sidecar?: string | undefined;
}

/** What an open in progress has made, so a failure can take it back. */
interface Undo {
  fds: number[];
  dirs: string[];
  claim?: ImageClaim;
  /** The image (and, once made, the sidecar) this open created. */
  created?: Created;
}

export function openImage(opts: ImageOptions): OpenedImage {
  const lba = checkArguments(opts);
  const undo: Undo = { fds: [], dirs: [] };
  try {
    return opts.readOnly ? openReadOnly(opts, lba) : openReadWrite(opts, lba, undo);
  } catch (e) {
    rollBack(undo);
    throw e;
  }
}

function openReadOnly(opts: ImageOptions, lba: number): OpenedImage {
  const p = opts.path;
  const st = statIfThere(p);
  if (!st) throw new ImageError('NVMQ_IMAGE_NOT_FOUND', `${p} does not exist (read-only: nothing is created)`, { path: p });
  const size = existingSize(p, st, opts, lba);
  const fd = openWith(p, fs.constants.O_RDONLY | (opts.extraFlags ?? 0), opts.extraFlags ?? 0);
  return { fd, path: p, size, created: false, blockDevice: st.isBlockDevice(), readOnly: true };
}

function openReadWrite(opts: ImageOptions, lba: number, undo: Undo): OpenedImage {
  const p = opts.path;
  const extra = opts.extraFlags ?? 0;
  const before = statIfThere(p);
  if (before?.isBlockDevice()) {
    checkWritable(p, before, opts);
    const size = existingSize(p, before, opts, lba);
    undo.claim = ImageClaim.take(p, null, before);
    undo.claim.bind(before);
    // O_EXCL on a block device is the kernel's exclusive claim (see lock.ts).
    let fd: number;
    try {
      fd = openWith(p, fs.constants.O_RDWR | fs.constants.O_EXCL | extra, extra);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EBUSY') throw busyError(p, 'by another process, or mounted (the kernel refused O_EXCL with EBUSY)');
      throw e;
    }
    return { fd, path: p, size, created: false, blockDevice: true, readOnly: false, claim: undo.claim };
  }
  if (before) {
    // Refused at once when plainly not nvmq's: no sidecar, and no lock (an image being created has its lock, not yet its sidecar).
    if (!before.isFile() || !fs.existsSync(fs.realpathSync(p) + LOCK_SUFFIX)) checkWritable(p, before, opts);
  } else {
    if (opts.create === false) throw notFound(p);
    creationSize(p, opts, lba);
    undo.dirs = makeDirs(path.dirname(path.resolve(p)));
  }
  // The lock goes beside the real path (a symlink and its target share it), and is taken before deciding
  // whether to create: of two openers creating one image, one creates it and the other is told who has it.
  const lockTarget = before ? fs.realpathSync(p) : path.join(fs.realpathSync(path.dirname(path.resolve(p))), path.basename(p));
  undo.claim = ImageClaim.take(p, lockTarget, before);
  // Under the claim, look again: another opener may have created, replaced or removed it meanwhile.
  const st = statIfThere(p);
  if (!st) {
    if (opts.create === false) throw notFound(p);
    return create(p, creationSize(p, opts, lba), extra, lockTarget, undo);
  }
  checkWritable(p, st, opts);
  undo.claim.bind(st);
  const size = existingSize(p, st, opts, lba);
  const fd = openWith(p, fs.constants.O_RDWR | extra, extra);
  removeTemps(sidecarPath(p));
  return { fd, path: p, size, created: false, blockDevice: false, readOnly: false, claim: undo.claim, inode: inodeOf(st), lockTarget };
}

function create(p: string, size: number, extra: number, lockTarget: string, undo: Undo): OpenedImage {
  // Under the claim no nvmq opener is creating or removing this image, so a sidecar here without its image is a
  // leftover (the image deleted by hand) or not nvmq's at all: refused before anything is created, never replaced.
  if (statIfThere(sidecarPath(p), { link: true })) throw sidecarExists(p);
  // O_EXCL: never replace a file that appeared since the stat. Created without the extra flags (a file system that
  // refuses O_DIRECT would fail the open after creating the file), then reopened with them.
  let fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
  undo.fds.push(fd);
  const st = fs.fstatSync(fd);
  undo.created = { path: p, inode: inodeOf(st) };
  undo.claim!.bind(st);
  fs.ftruncateSync(fd, size);
  // Durable before the sidecar can say the image is whole: its size, its name and the names of the directories made for it.
  fs.fsyncSync(fd);
  for (const d of new Set([path.dirname(path.resolve(p)), ...undo.dirs.map((made) => path.dirname(made))])) syncDirectory(d);
  if (extra !== 0) {
    fd = openWith(p, fs.constants.O_RDWR | extra, extra);
    fs.closeSync(undo.fds.pop()!);
    undo.fds.push(fd);
  }
  // Last: an image is nvmq's only once it is whole.
  writeSidecar(p, size, undo.created);
  removeTemps(sidecarPath(p));
  return {
    fd,
    path: p,
    size,
    created: true,
    blockDevice: false,
    readOnly: false,
    claim: undo.claim,
    createdDirs: undo.dirs,
    inode: undo.created.inode,
    sidecarInode: undo.created.sidecar,
    lockTarget,
  };
}

/**
 * Publishes the sidecar (publish.ts): whole or not at all, durable once this
 * returns, and never in place of a file already at its name (a dangling
 * symlink included). Records its dev:ino in `created`, so that a rollback
 * removes it and nothing else.
 */
function writeSidecar(p: string, size: number, created: Created): void {
  const sc = sidecarPath(p);
  const content = JSON.stringify({ format: SIDECAR_FORMAT, version: 1, size, created: new Date().toISOString() }, null, 2) + '\n';
  let st: fs.Stats | undefined;
  try {
    st = publishFile(sc, content);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ImageError('NVMQ_IMAGE_SIDECAR_FAILED', `cannot create ${p}: writing its sidecar ${sc} failed (${err.syscall ?? 'error'}: ${err.code ?? err.message})`, { cause: e, path: p });
  }
  if (!st) throw sidecarExists(p);
  created.sidecar = inodeOf(st);
}

function sidecarExists(p: string): ImageError {
  const sc = sidecarPath(p);
  return new ImageError(
    'NVMQ_IMAGE_SIDECAR_EXISTS',
    `${p} does not exist but ${sc} does: nvmq will not replace or remove a file it did not create; if that sidecar is left from an image deleted by hand, remove it, or use another path`,
    { path: p },
  );
}

function inodeOf(st: fs.Stats): string {
  return `${st.dev}:${st.ino}`;
}

function notFound(p: string): ImageError {
  return new ImageError('NVMQ_IMAGE_NOT_FOUND', `${p} does not exist (create: false)`, { path: p });
}

/** The size of a new image: `size`, or `defaultSize` rounded up to whole LBAs. */
function creationSize(p: string, opts: ImageOptions, lba: number): number {
  if (opts.size !== undefined) return opts.size;
  if (opts.defaultSize !== undefined) return Math.ceil(opts.defaultSize / lba) * lba;
  throw invalid(`creating ${p} needs size (a whole number of ${lba}-byte LBAs)`);
}

/** Refuses to write to what nvmq did not create, unless forced. */
function checkWritable(p: string, st: fs.Stats, opts: ImageOptions): void {
  if (!st.isBlockDevice() && !st.isFile()) throw invalid(`${p} is neither a regular file nor a block device`);
  if (!opts.force && (st.isBlockDevice() || !isNvmqImage(p))) {
    throw new ImageError(
      'NVMQ_REFUSING_TO_OVERWRITE',
      `refusing to write to ${p}: nvmq did not create it (no ${path.basename(sidecarPath(p))}); pass --force (force: true) to use it anyway`,
    );
  }
}

/** The size of an existing image, checked against `size` and the LBA size. */
function existingSize(p: string, st: fs.Stats, opts: ImageOptions, lba: number): number {
  if (!st.isBlockDevice() && !st.isFile()) throw invalid(`${p} is neither a regular file nor a block device`);
  const size = st.isBlockDevice() ? blockDeviceSize(st.rdev) : st.size;
  if (size < lba) throw new ImageError('NVMQ_IMAGE_TOO_SMALL', `${p} is ${size} bytes: it holds no ${lba}-byte LBA`);
  if (opts.size !== undefined && opts.size !== size) {
    throw new ImageError('NVMQ_IMAGE_SIZE_MISMATCH', `${p} is ${size} bytes, not the ${opts.size} asked for`);
  }
  return size;
}

/** open(2), with the file system's refusal of O_DIRECT (EINVAL) as a clear error. */
function openWith(p: string, flags: number, extra: number): number {
  try {
    return fs.openSync(p, flags);
  } catch (e) {
    const direct = fs.constants.O_DIRECT ?? 0;
    if ((e as NodeJS.ErrnoException).code === 'EINVAL' && direct !== 0 && (extra & direct) !== 0) {
      throw new ImageError('NVMQ_DIRECT_UNSUPPORTED', `${p}: the file system refuses O_DIRECT (direct: true); use a file system that supports it, or drop direct`);
    }
    throw e;
  }
}

/** Takes back a failed open, last step first; each step is tried even if one before it fails (the open's error is the one thrown). */
function rollBack(undo: Undo): void {
  const steps = [
    ...undo.fds.map((fd) => () => fs.closeSync(fd)),
    () => undo.created && removeImage(undo.created),
    () => undo.claim?.release(),
    () => removeDirs(undo.dirs),
  ];
  for (const step of steps) {
    try {
      step();
    } catch {
      // Nothing more can be done here about what this step left.
    }
  }
}

/**
 * Removes what an open created: its sidecar first (the image stops being
 * nvmq's, the reverse of creating), then the image. Each only if it is still
 * the regular file that open created (same dev:ino): a file that has taken
 * either name since, or a sidecar the open did not create, stays.
 */
function removeImage(created: Created): void {
  if (created.sidecar !== undefined) removeIfSame(sidecarPath(created.path), created.sidecar);
  removeIfSame(created.path, created.inode);
}

function removeIfSame(p: string, inode: string): void {
  const st = statIfThere(p, { link: true });
  if (st?.isFile() && inodeOf(st) === inode) fs.rmSync(p);
}

/** Removes the directories an open created, deepest first, as long as they are empty. */
function removeDirs(dirs: readonly string[]): void {
  for (const d of dirs) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
  }
}

/** Closes an image from openImage() and gives up its claim: a read-write open must end here, or its lock outlives it. */
export function closeImage(img: OpenedImage): void {
  try {
    fs.closeSync(img.fd);
  } finally {
    releaseImage(img);
  }
}

/** Gives up the claim of a read-write open (after its descriptor is closed). */
export function releaseImage(img: OpenedImage): void {
  img.claim?.release();
}

/**
 * Undoes a successful open whose descriptor is closed: if it created the
 * image, removes the image, the sidecar it created and the directories it
 * made (those still empty), then releases the claim. Several opens are
 * undone in the reverse order they were made in (a later one may have put
 * its image in a directory an earlier one created). Throws only what
 * removing throws.
 *
 * Safe only while the claim is still held (the descriptor closed without
 * releaseImage()): then nobody can have opened the image since this open
 * made it. After releaseImage() the claim is taken again first,
 * and if someone else holds the image by then it is theirs and stays; but
 * between the release and the retake another process may have opened the
 * image, used it and closed it again, and it is removed all the same. That
 * fallback remains only for callers that close before they discard (see
 * FileBackend.prepareDiscard()).
 */
export function discardImage(img: OpenedImage): void {
  if (!img.created || img.inode === undefined || img.lockTarget === undefined) return releaseImage(img);
  const created: Created = { path: img.path, inode: img.inode, sidecar: img.sidecarInode };
  let claim = img.claim;
  if (!claim?.held) {
    const st = statIfThere(img.path);
    // Gone already, or another file has its name: nothing of this open is left but, perhaps, empty directories.
    if (!st || inodeOf(st) !== img.inode) return removeDirs(img.createdDirs ?? []);
    try {
      claim = ImageClaim.take(img.path, img.lockTarget);
    } catch (e) {
      if (e instanceof ImageError && e.code === 'NVMQ_IMAGE_BUSY') return;
      throw e;
    }
  }
  try {
    removeImage(created);
  } finally {
    claim.release();
  }
  removeDirs(img.createdDirs ?? []);
}
