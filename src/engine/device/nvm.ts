/**
 * NVM command set (NVMe 1.4, section 6): Flush, Write, Read, Write Zeroes and
 * Dataset Management. Every check runs before any data moves, so a rejected
 * command touches neither host memory nor media; an accepted one touches only
 * the LBAs it addresses.
 *
 * Durability: a command that is to be durable when it completes (a Flush; a
 * Write or Write Zeroes with FUA; any Write, Write Zeroes or deallocating
 * Dataset Management while the volatile write cache is disabled) is made so
 * by its backend (fdatasync, RWF_DSYNC) before it completes. When such a
 * sync fails, data the namespace had acknowledged may never reach the medium,
 * and the kernel reports that failure once: the namespace's media state
 * (health.ts) records it for every thread, and from then on its flushes fail
 * with Write Fault and its writes with Namespace is Write Protected.
 */
import type { CommandEntry, IoContext } from './context.js';
import { INVALID_FIELD, INVALID_NAMESPACE, LBA_OUT_OF_RANGE, PRP_OFFSET_INVALID, WRITE_FAULT, WRITE_PROTECTED } from './status.js';
import type { Request } from './queues.js';
import type { Namespace } from './namespace.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { bitsOf, readU64 } from '../spec/layout.js';
import { RwCdw12, DsmCdw10, DsmCdw11, DsmRange, DSM_RANGE_SIZE } from '../spec/nvm-commands.js';
import { NSID_BROADCAST } from '../spec/identify.js';
import { CommandEffect } from '../spec/log-pages.js';
import { BackendError, type BlockIo, type IoDone } from './backends/backend.js';

export function nvmCommands(): Map<number, CommandEntry<IoContext>> {
  const t = new Map<number, CommandEntry<IoContext>>();
  const add = (opcode: number, handler: CommandEntry<IoContext>['handler'], effects = 0): void => {
    t.set(opcode, { opcode, handler, effects });
  };
  add(NvmOpcode.FLUSH, executeFlush);
  add(NvmOpcode.WRITE, executeWrite, CommandEffect.LBCC);
  add(NvmOpcode.READ, executeRead);
  add(NvmOpcode.WRITE_ZEROES, executeWriteZeroes, CommandEffect.LBCC);
  add(NvmOpcode.DATASET_MANAGEMENT, executeDatasetManagement, CommandEffect.LBCC);
  return t;
}

function namespaceOf(c: IoContext, req: Request): Namespace | undefined {
  return c.namespace(req.cmd.nsid);
}

/** SLBA from CDW10 (low) and CDW11 (high), recorded for the error log. */
function slbaOf(req: Request): number {
  const slba = req.cmd.cdw10 + req.cmd.cdw11 * 0x1_0000_0000;
  req.lba = slba;
  return slba;
}

/** NLB (0's based in CDW12) as a count of blocks. */
function nlbOf(req: Request): number {
  return bitsOf(req.cmd.cdw12, RwCdw12.NLB) + 1;
}

/** FUA, or any write while the volatile write cache is disabled: durable before it completes. */
function fuaOf(c: IoContext, req: Request): boolean {
  return bitsOf(req.cmd.cdw12, RwCdw12.FUA) === 1 || !c.writeCacheEnabled;
}

function inRange(ns: Namespace, slba: number, nlb: number): boolean {
  return slba + nlb <= ns.blocks;
}

function executeRead(c: IoContext, req: Request): number {
  return readWrite(c, req, false);
}

function executeWrite(c: IoContext, req: Request): number {
  return readWrite(c, req, true);
}

function readWrite(c: IoContext, req: Request, write: boolean): number {
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  const nlb = nlbOf(req);
  const slba = slbaOf(req);
  const length = nlb * ns.lbaSize;
  if (length > c.maxTransfer) return INVALID_FIELD;
  if (!inRange(ns, slba, nlb)) return LBA_OUT_OF_RANGE;
  if (write && ns.writeProtected) return WRITE_PROTECTED;
  const m = c.mapData(req, length);
  if (m.status) return m.status;
  // O_DIRECT namespaces: data must start on a sector boundary (later PRP entries are page aligned).
  if (req.cmd.prp1 % ns.backend.alignment !== 0) return PRP_OFFSET_INVALID;
  req.bytes = length;
  const pos = slba * ns.lbaSize;
  const io = c.blockIo(req, ns);
  if (write) {
    const fua = fuaOf(c, req);
    if (fua) c.backendOp(req, (done) => io.write(pos, m.segments, true, synced(ns, done, false)));
    else {
      ns.media.noteCached();
      c.backendOp(req, (done) => io.write(pos, m.segments, false, done));
    }
  } else {
    c.backendOp(req, (done) => io.read(pos, m.segments, done));
  }
  return 0;
}

/**
 * Wraps the completion of an operation that was to make data durable (a
 * fdatasync, a FUA write). A failure other than a cancellation means data
 * the namespace acknowledged may be lost, with one exception: running out of
 * space in a durable write (`flush` false) when no write was ever cached,
 * where every acknowledged write was already durable and nothing can be
 * lost. A flush's failure completes as Write Fault whatever the errno (the
 * kernel could not write cached data back). A success that comes after the
 * namespace was marked is a Write Fault too: it may have run beside the
 * failing sync, and the kernel reports a write-back error to one sync only.
 */
function synced(ns: Namespace, done: IoDone, flush: boolean): IoDone {
  return (err) => {
    if (!err) return done(ns.media.lost ? lostError(ns) : null);
    if (err.kind === 'aborted' || (err.kind === 'no-space' && !flush && !ns.media.cached)) return done(err);
    const e = flush && err.kind !== 'write' ? new BackendError('write', err.message, err.errno) : err;
    ns.media.markLost();
    done(e);
  };
}

/** The error a flush or durable write of a namespace that may have lost data completes with. */
function lostError(ns: Namespace): BackendError {
  return new BackendError('write', `namespace ${ns.nsid} may have lost acknowledged data`);
}

/** Makes every completed write of `ns` durable; fails at once, with Write Fault, once data may have been lost. */
function flushNamespace(c: IoContext, req: Request, ns: Namespace): number {
  if (ns.media.lost) return WRITE_FAULT;
  const io = c.blockIo(req, ns);
  c.backendOp(req, (done) => io.flush(synced(ns, done, true)));
  return 0;
}

function executeFlush(c: IoContext, req: Request): number {
  if (req.cmd.nsid === NSID_BROADCAST) {
    // Every namespace is flushed; one that may have lost data fails the command.
    let status = 0;
    for (const ns of c.namespaces.values()) status = flushNamespace(c, req, ns) || status;
    return status;
  }
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  return flushNamespace(c, req, ns);
}

/**
 * `done` for a command that changes blocks, made durable by a flush after the
 * change when `durable` (FUA, or the write cache disabled); otherwise the
 * change is cached, as noted in the namespace's media state.
 */
function thenFlush(ns: Namespace, io: BlockIo, durable: boolean, done: IoDone): IoDone {
  if (!durable) {
    ns.media.noteCached();
    return done;
  }
  return (err) => (err ? done(err) : ns.media.lost ? done(lostError(ns)) : io.flush(synced(ns, done, true)));
}

function executeWriteZeroes(c: IoContext, req: Request): number {
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  const nlb = nlbOf(req);
  const slba = slbaOf(req);
  if (!inRange(ns, slba, nlb)) return LBA_OUT_OF_RANGE;
  if (ns.writeProtected) return WRITE_PROTECTED;
  const deac = bitsOf(req.cmd.cdw12, RwCdw12.DEAC) === 1;
  const fua = fuaOf(c, req);
  const io = c.blockIo(req, ns);
  // FUA: a flush after the zeroes have landed makes them durable.
  c.backendOp(req, (done) => io.writeZeroes(slba * ns.lbaSize, nlb * ns.lbaSize, deac, thenFlush(ns, io, fua, done)));
  return 0;
}

/**
 * Dataset Management (6.7): only the Deallocate attribute does anything; the
 * integral-read/write hints are accepted and ignored. Every range is checked
 * before the first one is deallocated, and each range is its own backend
 * operation: the command completes when all have. With the write cache
 * disabled the ranges are deallocated one after the other and a flush
 * follows, so that reads return zeroes for them after a power loss too.
 */
function executeDatasetManagement(c: IoContext, req: Request): number {
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  const nr = bitsOf(req.cmd.cdw10, DsmCdw10.NR) + 1;
  const ad = bitsOf(req.cmd.cdw11, DsmCdw11.AD) === 1;
  const { status, data } = c.receiveFromHost(req, nr * DSM_RANGE_SIZE);
  if (status) return status;
  if (!ad) return 0;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i < nr; i++) {
    const base = i * DSM_RANGE_SIZE;
    const nlb = dv.getUint32(base + DsmRange.NLB.offset, true);
    const slba = readU64(dv, base + DsmRange.SLBA.offset);
    if (nlb === 0) continue;
    if (!inRange(ns, slba, nlb)) {
      req.lba = slba;
      return LBA_OUT_OF_RANGE;
    }
    ranges.push([slba, nlb]);
  }
  if (ranges.length === 0) return 0;
  if (ns.writeProtected) return WRITE_PROTECTED;
  const io = c.blockIo(req, ns);
  if (c.writeCacheEnabled) {
    ns.media.noteCached();
    for (const [slba, nlb] of ranges) c.backendOp(req, (done) => io.deallocate(slba * ns.lbaSize, nlb * ns.lbaSize, done));
    return 0;
  }
  c.backendOp(req, (done) => {
    const next = (i: number): void => {
      if (i === ranges.length) return thenFlush(ns, io, true, done)(null);
      const [slba, nlb] = ranges[i]!;
      io.deallocate(slba * ns.lbaSize, nlb * ns.lbaSize, (err) => (err ? done(err) : next(i + 1)));
    };
    next(0);
  });
  return 0;
}

