/**
 * An I/O queue pair: the NVM command set on top of a QueuePair, in logical
 * blocks of the namespaces the driver identified.
 */
import { QueuePair, type QueuePairOptions, type QueuePairHandle, type CommandFields, type CompletionCallback, type DataSpec } from './queue-pair.js';
import type { Transport } from '../transport/transport.js';
import type { NamespaceInfo } from './identify.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { RwCdw12, DsmCdw11, DsmRange, DSM_RANGE_SIZE, DSM_MAX_RANGES } from '../spec/nvm-commands.js';
import { withBits, writeU64 } from '../spec/layout.js';
import type { Completion } from '../spec/command.js';
import { checkBlocks, checkCallback, checkInteger, flag, inactiveNsid, invalidArgument } from './arguments.js';

export interface WriteOptions {
  /** Force Unit Access: durable before completion. */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** Let the controller deallocate the blocks (DEAC). */
  deallocate?: boolean;
}

export interface LbaRange {
  slba: number;
  nlb: number;
}

/** One command of a batch (`IoQueuePair.batch`). */
export type BatchOp =
  | { op: 'read'; nsid: number; slba: number; nlb: number; buffer: Uint8Array }
  | { op: 'write'; nsid: number; slba: number; nlb: number; buffer: Uint8Array; fua?: boolean }
  | { op: 'flush'; nsid: number }
  | { op: 'writeZeroes'; nsid: number; slba: number; nlb: number; deallocate?: boolean; fua?: boolean };

/** A batch's outcome: each command's completion in order, or the first failure (in order) once all have ended. */
export type BatchCallback = (err: Error | null, completions: Array<Completion | undefined>) => void;

/** The most commands one batch takes. */
const MAX_BATCH = 65536;

const NSID_ALL = 0xffffffff;

export class IoQueuePair extends QueuePair {
  constructor(
    opts: QueuePairOptions,
    private readonly namespaces: ReadonlyMap<number, NamespaceInfo>,
    attach?: QueuePairHandle,
  ) {
    super(opts, attach);
  }

  /** The same queue pair in another thread (a worker), over that thread's transport. */
  static attach(transport: Transport, h: QueuePairHandle, namespaces: ReadonlyMap<number, NamespaceInfo>): IoQueuePair {
    return new IoQueuePair({ transport, qid: h.qid, entries: h.entries, dstrd: h.dstrd, pageSize: h.pageSize, maxTransfer: h.maxTransfer }, namespaces, h);
  }

  private ns(nsid: number): NamespaceInfo {
    const ns = this.namespaces.get(nsid);
    if (!ns) throw inactiveNsid(nsid, this.namespaces.keys());
    return ns;
  }

  /** The Read / Write command for `nlb` blocks at `slba` moving `buffer`, after checking them. */
  private rw(opcode: number, nsid: number, slba: number, nlb: number, buffer: Uint8Array, fua: boolean): CommandFields {
    const ns = this.ns(nsid);
    checkBlocks(slba, nlb);
    if (nlb * ns.lbaSize > this.maxTransfer) {
      throw invalidArgument('nlb', `1..${Math.floor(this.maxTransfer / ns.lbaSize)} (the queue's maximum transfer, ${this.maxTransfer} bytes, in ${ns.lbaSize}-byte blocks)`, nlb);
    }
    if (!(buffer instanceof Uint8Array) || buffer.length !== nlb * ns.lbaSize) {
      throw invalidArgument('buffer', `a Uint8Array of ${nlb * ns.lbaSize} bytes (nlb ${nlb} × ${ns.lbaSize}-byte blocks)`, buffer);
    }
    let cdw12 = withBits(0, RwCdw12.NLB, nlb - 1);
    if (fua) cdw12 = withBits(cdw12, RwCdw12.FUA, 1);
    return { opcode, nsid, cdw10: slba % 0x1_0000_0000, cdw11: Math.floor(slba / 0x1_0000_0000), cdw12 };
  }

  /** Reads `nlb` blocks from `slba` into `buffer` (zero copy when it lies in the DMA arena). */
  // read / write are not async functions: argument errors become rejections by hand, so a command costs one Promise.
  read(nsid: number, slba: number, nlb: number, buffer: Uint8Array): Promise<Completion> {
    let cmd: CommandFields;
    try {
      cmd = this.rw(NvmOpcode.READ, nsid, slba, nlb, buffer, false);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.enqueue(cmd, { buffer, direction: 'from-device' }, true, buffer.length);
  }

  write(nsid: number, slba: number, nlb: number, buffer: Uint8Array, opts?: WriteOptions): Promise<Completion> {
    let cmd: CommandFields;
    try {
      cmd = this.rw(NvmOpcode.WRITE, nsid, slba, nlb, buffer, flag(opts, 'fua'));
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.enqueue(cmd, { buffer, direction: 'to-device' }, true, buffer.length);
  }

  /**
   * read() without a Promise: `done(err, completion)` runs once the command
   * completes, from the completion path, never inside this call. Bad
   * arguments reach `done` too, as every refusal does (only a `done` that is
   * not a function throws here). For closed loops at high IOPS, where a
   * Promise and its reaction per command are a measurable share of the cost.
   */
  readCallback(nsid: number, slba: number, nlb: number, buffer: Uint8Array, done: CompletionCallback): void {
    checkCallback(done);
    let cmd: CommandFields;
    try {
      cmd = this.rw(NvmOpcode.READ, nsid, slba, nlb, buffer, false);
    } catch (e) {
      return this.refuse(e as Error, done);
    }
    this.enqueue(cmd, { buffer, direction: 'from-device' }, true, buffer.length, done);
  }

  /** write() without a Promise: see readCallback(). */
  writeCallback(nsid: number, slba: number, nlb: number, buffer: Uint8Array, done: CompletionCallback, opts?: WriteOptions): void {
    checkCallback(done);
    let cmd: CommandFields;
    try {
      cmd = this.rw(NvmOpcode.WRITE, nsid, slba, nlb, buffer, flag(opts, 'fua'));
    } catch (e) {
      return this.refuse(e as Error, done);
    }
    this.enqueue(cmd, { buffer, direction: 'to-device' }, true, buffer.length, done);
  }

  private flushCommand(nsid: number): CommandFields {
    if (nsid !== NSID_ALL && !this.namespaces.has(nsid)) throw inactiveNsid(nsid, this.namespaces.keys(), ' or 0xffffffff (all)');
    return { opcode: NvmOpcode.FLUSH, nsid };
  }

  private writeZeroesCommand(nsid: number, slba: number, nlb: number, opts?: WriteZeroesOptions): CommandFields {
    this.ns(nsid);
    checkBlocks(slba, nlb);
    let cdw12 = withBits(0, RwCdw12.NLB, nlb - 1);
    if (flag(opts, 'deallocate')) cdw12 = withBits(cdw12, RwCdw12.DEAC, 1);
    if (flag(opts, 'fua')) cdw12 = withBits(cdw12, RwCdw12.FUA, 1);
    return { opcode: NvmOpcode.WRITE_ZEROES, nsid, cdw10: slba % 0x1_0000_0000, cdw11: Math.floor(slba / 0x1_0000_0000), cdw12 };
  }

  /** Flushes one namespace, or every namespace with NSID FFFFFFFFh. */
  async flush(nsid: number): Promise<void> {
    await this.enqueue(this.flushCommand(nsid), undefined, true, 0);
  }

  async writeZeroes(nsid: number, slba: number, nlb: number, opts?: WriteZeroesOptions): Promise<void> {
    const cmd = this.writeZeroesCommand(nsid, slba, nlb, opts);
    await this.enqueue(cmd, undefined, true, nlb * this.ns(nsid).lbaSize);
  }

  /** What one batch entry submits, checked. */
  private batchEntry(o: BatchOp, i: number): { cmd: CommandFields; data: DataSpec | undefined; length: number } {
    if (typeof o !== 'object' || o === null) throw invalidArgument(`ops[${i}]`, "{ op: 'read' | 'write' | 'flush' | 'writeZeroes', ... }", o);
    switch (o.op) {
      case 'read':
        return { cmd: this.rw(NvmOpcode.READ, o.nsid, o.slba, o.nlb, o.buffer, false), data: { buffer: o.buffer, direction: 'from-device' }, length: o.buffer.length };
      case 'write':
        return { cmd: this.rw(NvmOpcode.WRITE, o.nsid, o.slba, o.nlb, o.buffer, flag(o, 'fua')), data: { buffer: o.buffer, direction: 'to-device' }, length: o.buffer.length };
      case 'flush':
        return { cmd: this.flushCommand(o.nsid), data: undefined, length: 0 };
      case 'writeZeroes':
        return { cmd: this.writeZeroesCommand(o.nsid, o.slba, o.nlb, o), data: undefined, length: o.nlb * this.ns(o.nsid).lbaSize };
      default:
        throw invalidArgument(`ops[${i}].op`, "'read', 'write', 'flush' or 'writeZeroes'", (o as { op: unknown }).op);
    }
  }

  /**
   * Submits every command of `ops` behind one SQ doorbell write (on the
   * io_uring path, one entry into the kernel) and calls `done` once, when
   * all have completed: their completions in order, or the first failure in
   * order. Every entry is checked before any is submitted: a bad one
   * refuses the whole batch (through `done`). Never calls `done` inside this call.
   */
  batchCallback(ops: readonly BatchOp[], done: BatchCallback): void {
    checkCallback(done);
    let entries: Array<{ cmd: CommandFields; data: DataSpec | undefined; length: number }>;
    try {
      if (!Array.isArray(ops) || ops.length === 0 || ops.length > MAX_BATCH) throw invalidArgument('ops', `an array of 1..${MAX_BATCH} commands`, ops);
      entries = ops.map((o, i) => this.batchEntry(o, i));
    } catch (e) {
      return this.refuse(e as Error, (err) => done(err, []));
    }
    const out = new Array<Completion | undefined>(entries.length);
    const errors = new Array<Error | undefined>(entries.length);
    let left = entries.length;
    const one = (i: number): CompletionCallback => (err, c) => {
      out[i] = c;
      errors[i] = err ?? undefined;
      if (--left === 0) done(errors.find((x) => x !== undefined) ?? null, out);
    };
    this.plug();
    try {
      entries.forEach((e, i) => this.enqueue(e.cmd, e.data, true, e.length, one(i)));
    } finally {
      this.unplug();
    }
  }

  /** batchCallback() as a Promise: resolves with the completions in order, rejects with the first failure once all have ended. */
  batch(ops: readonly BatchOp[]): Promise<Completion[]> {
    return new Promise((resolve, reject) => {
      try {
        this.batchCallback(ops, (err, completions) => (err ? reject(err) : resolve(completions as Completion[])));
      } catch (e) {
        reject(e as Error);
      }
    });
  }

  /** Dataset Management with the Deallocate attribute over up to 256 ranges. */
  async deallocate(nsid: number, ranges: readonly LbaRange[]): Promise<void> {
    const ns = this.ns(nsid);
    if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > DSM_MAX_RANGES) {
      throw invalidArgument('ranges', `an array of 1..${DSM_MAX_RANGES} { slba, nlb }`, ranges);
    }
    const data = new Uint8Array(ranges.length * DSM_RANGE_SIZE);
    const dv = new DataView(data.buffer);
    let blocks = 0;
    ranges.forEach((r: unknown, i) => {
      if (typeof r !== 'object' || r === null) throw invalidArgument(`ranges[${i}]`, '{ slba, nlb }', r);
      const { slba, nlb } = r as LbaRange;
      checkInteger(`ranges[${i}].slba`, slba, 0, Number.MAX_SAFE_INTEGER, 'a non-negative integer');
      checkInteger(`ranges[${i}].nlb`, nlb, 1, 0xffffffff);
      dv.setUint32(i * DSM_RANGE_SIZE + DsmRange.NLB.offset, nlb, true);
      writeU64(dv, i * DSM_RANGE_SIZE + DsmRange.SLBA.offset, slba);
      blocks += nlb;
    });
    await this.enqueue(
      { opcode: NvmOpcode.DATASET_MANAGEMENT, nsid, cdw10: ranges.length - 1, cdw11: withBits(0, DsmCdw11.AD, 1) },
      { buffer: data, direction: 'to-device' },
      true,
      blocks * ns.lbaSize,
    );
  }

  /**
   * A buffer in the DMA arena (this thread's pool in a worker): reads and
   * writes through it move no bytes on the host side. Give it back with
   * `releaseBuffer()`.
   */
  allocBuffer(bytes: number): Uint8Array {
    checkInteger('bytes', bytes, 1, this.arena.size, `an integer 1..${this.arena.size} (the DMA arena's size)`);
    return this.arena.alloc(bytes).bytes.subarray(0, bytes);
  }

  releaseBuffer(buffer: Uint8Array): void {
    const bad = (): Error => invalidArgument('buffer', 'a buffer allocBuffer() returned and not yet released', buffer);
    if (!(buffer instanceof Uint8Array) || !this.arena.contains(buffer)) throw bad();
    const offset = this.arena.offsetOf(buffer);
    try {
      this.arena.release({ iova: this.arena.iovaOf(offset), offset, size: buffer.length, bytes: buffer });
    } catch {
      // Not the start of an allocation (a slice of one, or released already).
      throw bad();
    }
  }

  /** Raw I/O command (as `nvme io-passthru`): the whole completion, whatever its status. */
  passthru(cmd: CommandFields | { raw: Uint8Array }, data?: DataSpec): Promise<Completion> {
    return this.submitRaw(cmd, data);
  }

  /** passthru() without a Promise: `done(err, completion)` runs once, never inside this call (see readCallback()). */
  passthruCallback(cmd: CommandFields | { raw: Uint8Array }, data: DataSpec | undefined, done: CompletionCallback): void {
    this.submitRawCallback(cmd, data, done);
  }
}
