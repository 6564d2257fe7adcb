/**
 * An I/O queue pair: the NVM command set on top of a QueuePair, in logical
 * blocks of the namespaces the driver identified.
 */
import { QueuePair, type QueuePairOptions, type QueuePairHandle, type CommandFields, type CompletionCallback, type DataSpec } from './queue-pair.js';
import type { Transport } from './transport.js';
import type { NamespaceInfo } from './identify.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { RwCdw12, DsmCdw11, DsmRange, DSM_RANGE_SIZE, DSM_MAX_RANGES } from '../spec/queues.js';
import { withBits, writeU64 } from '../spec/layout.js';
import type { Completion } from '../spec/command.js';
import { NvmqError } from './errors.js';

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

const MAX_NLB = 0x10000;

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
    if (!ns) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `namespace ${nsid} is not active (active: ${[...this.namespaces.keys()].join(', ') || 'none'})`);
    return ns;
  }

  /** The Read / Write command for `nlb` blocks at `slba` moving `buffer`, after checking them. */
  private rw(opcode: number, nsid: number, slba: number, nlb: number, buffer: Uint8Array, fua: boolean): CommandFields {
    const ns = this.ns(nsid);
    checkBlocks(slba, nlb);
    if (buffer.length !== nlb * ns.lbaSize) {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `buffer of ${buffer.length} bytes does not hold ${nlb} blocks of ${ns.lbaSize} bytes`);
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
    return this.submit(cmd, { buffer, direction: 'from-device' });
  }

  write(nsid: number, slba: number, nlb: number, buffer: Uint8Array, opts: WriteOptions = {}): Promise<Completion> {
    let cmd: CommandFields;
    try {
      cmd = this.rw(NvmOpcode.WRITE, nsid, slba, nlb, buffer, opts.fua ?? false);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.submit(cmd, { buffer, direction: 'to-device' });
  }

  /**
   * read() without a Promise: `done(err, completion)` runs once the command
   * completes, from the completion path, never inside this call. Bad
   * arguments throw here. For closed loops at high IOPS, where a Promise
   * and its reaction per command are a measurable share of the cost.
   */
  readCallback(nsid: number, slba: number, nlb: number, buffer: Uint8Array, done: CompletionCallback): void {
    this.submitCallback(this.rw(NvmOpcode.READ, nsid, slba, nlb, buffer, false), { buffer, direction: 'from-device' }, done);
  }

  /** write() without a Promise: see readCallback(). */
  writeCallback(nsid: number, slba: number, nlb: number, buffer: Uint8Array, done: CompletionCallback, opts: WriteOptions = {}): void {
    this.submitCallback(this.rw(NvmOpcode.WRITE, nsid, slba, nlb, buffer, opts.fua ?? false), { buffer, direction: 'to-device' }, done);
  }

  /** Flushes one namespace, or every namespace with NSID FFFFFFFFh. */
  async flush(nsid: number): Promise<void> {
    if (nsid !== 0xffffffff) this.ns(nsid);
    await this.submit({ opcode: NvmOpcode.FLUSH, nsid });
  }

  async writeZeroes(nsid: number, slba: number, nlb: number, opts: WriteZeroesOptions = {}): Promise<void> {
    const ns = this.ns(nsid);
    checkBlocks(slba, nlb);
    let cdw12 = withBits(0, RwCdw12.NLB, nlb - 1);
    if (opts.deallocate) cdw12 = withBits(cdw12, RwCdw12.DEAC, 1);
    if (opts.fua) cdw12 = withBits(cdw12, RwCdw12.FUA, 1);
    await this.submit({ opcode: NvmOpcode.WRITE_ZEROES, nsid, cdw10: slba % 0x1_0000_0000, cdw11: Math.floor(slba / 0x1_0000_0000), cdw12 }, undefined, nlb * ns.lbaSize);
  }

  /** Dataset Management with the Deallocate attribute over up to 256 ranges. */
  async deallocate(nsid: number, ranges: readonly LbaRange[]): Promise<void> {
    const ns = this.ns(nsid);
    if (ranges.length === 0 || ranges.length > DSM_MAX_RANGES) {
      throw new NvmqError('NVMQ_INVALID_ARGUMENT', `deallocate takes 1 to ${DSM_MAX_RANGES} ranges, got ${ranges.length}`);
    }
    const data = new Uint8Array(ranges.length * DSM_RANGE_SIZE);
    const dv = new DataView(data.buffer);
    let blocks = 0;
    ranges.forEach((r, i) => {
      if (!Number.isSafeInteger(r.slba) || r.slba < 0 || !Number.isInteger(r.nlb) || r.nlb < 1 || r.nlb > 0xffffffff) {
        throw new NvmqError('NVMQ_INVALID_ARGUMENT', `range ${i}: slba ${r.slba}, nlb ${r.nlb} is not a valid range`);
      }
      dv.setUint32(i * DSM_RANGE_SIZE + DsmRange.NLB.offset, r.nlb, true);
      writeU64(dv, i * DSM_RANGE_SIZE + DsmRange.SLBA.offset, r.slba);
      blocks += r.nlb;
    });
    await this.submit(
      { opcode: NvmOpcode.DATASET_MANAGEMENT, nsid, cdw10: ranges.length - 1, cdw11: withBits(0, DsmCdw11.AD, 1) },
      { buffer: data, direction: 'to-device' },
      blocks * ns.lbaSize,
    );
  }

  /**
   * A buffer in the DMA arena (this thread's pool in a worker): reads and
   * writes through it move no bytes on the host side. Give it back with
   * `releaseBuffer()`.
   */
  allocBuffer(bytes: number): Uint8Array {
    return this.arena.alloc(bytes).bytes.subarray(0, bytes);
  }

  releaseBuffer(buffer: Uint8Array): void {
    const offset = this.arena.offsetOf(buffer);
    this.arena.release({ iova: this.arena.iovaOf(offset), offset, size: buffer.length, bytes: buffer });
  }

  /** Raw I/O command (as `nvme io-passthru`): the whole completion, whatever its status. */
  passthru(cmd: CommandFields | { raw: Uint8Array }, data?: DataSpec): Promise<Completion> {
    return this.submitRaw(cmd, data);
  }
}

function checkBlocks(slba: number, nlb: number): void {
  if (!Number.isSafeInteger(slba) || slba < 0) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `slba must be a non-negative integer, got ${slba}`);
  if (!Number.isInteger(nlb) || nlb < 1 || nlb > MAX_NLB) throw new NvmqError('NVMQ_INVALID_ARGUMENT', `nlb must be 1..${MAX_NLB}, got ${nlb}`);
}
