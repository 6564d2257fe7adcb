/**
 * NVM command set (NVMe 1.4, section 6): Flush, Write, Read, Write Zeroes and
 * Dataset Management. Every check runs before any data moves, so a rejected
 * command touches neither host memory nor media; an accepted one touches only
 * the LBAs it addresses.
 */
import type { CommandEntry, IoContext } from './context.js';
import { INVALID_FIELD, INVALID_NAMESPACE, LBA_OUT_OF_RANGE, PRP_OFFSET_INVALID, WRITE_PROTECTED } from './status.js';
import type { Request } from './queues.js';
import type { Namespace } from './namespace.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { bitsOf, readU64 } from '../spec/layout.js';
import { RwCdw12, DsmCdw10, DsmCdw11, DsmRange, DSM_RANGE_SIZE } from '../spec/nvm-commands.js';
import { NSID_BROADCAST } from '../spec/identify.js';
import { CommandEffect } from '../spec/log-pages.js';
import type { IoDone } from './backends/backend.js';

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
  if (write && ns.backend.readOnly) return WRITE_PROTECTED;
  const m = c.mapData(req, length);
  if (m.status) return m.status;
  // O_DIRECT namespaces: data must start on a sector boundary (later PRP entries are page aligned).
  if (req.cmd.prp1 % ns.backend.alignment !== 0) return PRP_OFFSET_INVALID;
  req.bytes = length;
  const pos = slba * ns.lbaSize;
  const io = c.blockIo(req, ns);
  if (write) {
    const fua = fuaOf(c, req);
    c.backendOp(req, (done) => io.write(pos, m.segments, fua, done));
  } else {
    c.backendOp(req, (done) => io.read(pos, m.segments, done));
  }
  return 0;
}

function executeFlush(c: IoContext, req: Request): number {
  if (req.cmd.nsid === NSID_BROADCAST) {
    for (const ns of c.namespaces.values()) c.backendOp(req, (done) => c.blockIo(req, ns).flush(done));
    return 0;
  }
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  c.backendOp(req, (done) => c.blockIo(req, ns).flush(done));
  return 0;
}

function executeWriteZeroes(c: IoContext, req: Request): number {
  const ns = namespaceOf(c, req);
  if (!ns) return INVALID_NAMESPACE;
  const nlb = nlbOf(req);
  const slba = slbaOf(req);
  if (!inRange(ns, slba, nlb)) return LBA_OUT_OF_RANGE;
  if (ns.backend.readOnly) return WRITE_PROTECTED;
  const deac = bitsOf(req.cmd.cdw12, RwCdw12.DEAC) === 1;
  const fua = fuaOf(c, req);
  const io = c.blockIo(req, ns);
  // FUA: a flush after the zeroes have landed makes them durable.
  const after = (done: IoDone): IoDone => (fua ? (err) => (err ? done(err) : io.flush(done)) : done);
  c.backendOp(req, (done) => io.writeZeroes(slba * ns.lbaSize, nlb * ns.lbaSize, deac, after(done)));
  return 0;
}

/**
 * Dataset Management (6.7): only the Deallocate attribute does anything; the
 * integral-read/write hints are accepted and ignored. Every range is checked
 * before the first one is deallocated, and each range is its own backend
 * operation: the command completes when all have.
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
  if (ranges.length > 0 && ns.backend.readOnly) return WRITE_PROTECTED;
  const io = c.blockIo(req, ns);
  for (const [slba, nlb] of ranges) {
    c.backendOp(req, (done) => io.deallocate(slba * ns.lbaSize, nlb * ns.lbaSize, done));
  }
  return 0;
}

