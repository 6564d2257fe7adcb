/**
 * Opening the files and devices namespaces live in, without ever clobbering
 * something nvmq did not create.
 *
 * An image nvmq creates is a sparse raw file (so fio can read the same file)
 * with a sidecar `<path>.nvmq.json` that marks it as nvmq's. An existing file
 * without that sidecar, or any block device, is opened for writing only when
 * the caller says `force`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SIDECAR_SUFFIX = '.nvmq.json';
const SIDECAR_FORMAT = 'nvmq-image';

export interface ImageOptions {
  path: string;
  /** Size in bytes: used when the image has to be created, and checked against an existing one. */
  size?: number | undefined;
  /** Size in bytes for a new image when `size` is not given; never checked against an existing one. */
  defaultSize?: number | undefined;
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
}

export class ImageError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ImageError';
    this.code = code;
  }
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
function blockDeviceSize(st: fs.Stats): number {
  const major = Math.floor(st.rdev / 256) & 0xfff;
  const minor = (st.rdev & 0xff) | ((Math.floor(st.rdev / 0x100000) & 0xfff) << 8);
  const text = fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}

export function openImage(opts: ImageOptions): OpenedImage {
  const p = opts.path;
  const readOnly = opts.readOnly ?? false;
  const extra = opts.extraFlags ?? 0;
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }

  if (!st) {
    if (opts.create === false || readOnly) throw new ImageError('NVMQ_IMAGE_NOT_FOUND', `${p} does not exist`);
    const size = opts.size ?? opts.defaultSize;
    if (size === undefined || !Number.isSafeInteger(size) || size <= 0) {
      throw new ImageError('NVMQ_INVALID_ARGUMENT', `creating ${p} needs a positive size in bytes, got ${String(size)}`);
    }
    fs.mkdirSync(path.dirname(path.resolve(p)), { recursive: true });
    // 'wx': never replace a file that appeared since the stat. Created without the extra flags (a file
    // system that refuses O_DIRECT would fail the open after creating the file), then reopened with them.
    let fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    try {
      fs.ftruncateSync(fd, size);
      fs.writeFileSync(sidecarPath(p), JSON.stringify({ format: SIDECAR_FORMAT, version: 1, size, created: new Date().toISOString() }, null, 2) + '\n');
      if (extra !== 0) {
        const again = openWith(p, fs.constants.O_RDWR | extra, extra);
        fs.closeSync(fd);
        fd = again;
      }
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(p, { force: true });
      fs.rmSync(sidecarPath(p), { force: true });
      throw e;
    }
    return { fd, path: p, size, created: true, blockDevice: false, readOnly: false };
  }

  const blockDevice = st.isBlockDevice();
  if (!blockDevice && !st.isFile()) throw new ImageError('NVMQ_INVALID_ARGUMENT', `${p} is neither a regular file nor a block device`);
  if (!readOnly && !opts.force && (blockDevice || !isNvmqImage(p))) {
    throw new ImageError(
      'NVMQ_REFUSING_TO_OVERWRITE',
      `refusing to write to ${p}: nvmq did not create it (no ${path.basename(sidecarPath(p))}); pass --force (force: true) to use it anyway`,
    );
  }
  const size = blockDevice ? blockDeviceSize(st) : st.size;
  if (opts.size !== undefined && opts.size !== size) {
    throw new ImageError('NVMQ_IMAGE_SIZE_MISMATCH', `${p} is ${size} bytes, not the ${opts.size} asked for`);
  }
  const fd = openWith(p, (readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | extra, extra);
  return { fd, path: p, size, created: false, blockDevice, readOnly };
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
