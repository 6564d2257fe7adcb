/**
 * One queue pair on the host side: the SQ ring the host fills and the CQ ring
 * it drains, a request table (CID = slot index), PRP lists built into
 * per-slot pages, and the doorbells.
 *
 * Submission writes the SQE and rings the SQ tail doorbell (or, while
 * plugged, leaves the doorbell for `unplug()` — one write for many commands).
 * Completions are reaped right after the doorbell write (a memory namespace
 * completes inside it) and from the CQ's interrupt; the phase tag tells new
 * entries from old ones, and the CQ head doorbell is written once per batch.
 */
import { debuglog } from 'node:util';
import type { Transport } from './transport.js';
import type { DmaArena, DmaBuffer } from '../dma-arena.js';
import { CQE_SIZE, Cqe, SQE_SIZE, Sqe, decodeCompletion, encodeCommand, type Command, type Completion } from '../spec/command.js';
import { cqHeadDoorbell, sqTailDoorbell } from '../spec/registers.js';
import { PRP_ENTRY_SIZE } from '../spec/queues.js';
import { writeU64 } from '../spec/layout.js';
import { NvmqError, statusToError } from './errors.js';

const trace = debuglog('nvmq');

/** Fields of a command; the queue pair assigns the CID and, when given data, the PRPs. */
export type CommandFields = Partial<Omit<Command, 'cid'>> & { opcode: number };

export interface DataSpec {
  /** Bytes to send (host → controller) or a buffer to fill (controller → host). */
  buffer: Uint8Array;
  direction: 'to-device' | 'from-device';
}

export interface QueuePairOptions {
  transport: Transport;
  qid: number;
  /** Entries in each ring (1's based). */
  entries: number;
  dstrd: number;
  /** Host memory page size (CC.MPS). */
  pageSize: number;
  /** The largest transfer the host will build PRPs for. */
  maxTransfer: number;
  /** Request slots; at most entries - 1 (a full SQ keeps one slot empty). */
  slots?: number;
}

interface Slot {
  resolve: (c: Completion) => void;
  reject: (e: Error) => void;
  opcode: number;
  bounce: DmaBuffer | undefined;
  readBack: Uint8Array | undefined;
}

export class QueuePair {
  readonly qid: number;
  readonly entries: number;
  readonly slots: number;
  readonly sq: DmaBuffer;
  readonly cq: DmaBuffer;
  /** Counters for tests and metrics: doorbell writes, completions found by polling vs interrupt, spurious CQEs. */
  readonly stats = { sqDoorbells: 0, cqDoorbells: 0, polled: 0, interrupted: 0, spurious: 0 };

  protected readonly transport: Transport;
  protected readonly arena: DmaArena;
  private readonly pageSize: number;
  readonly maxTransfer: number;
  private readonly sqDoorbell: number;
  private readonly cqDoorbell: number;
  private readonly table: Array<Slot | undefined>;
  private readonly freeSlots: number[];
  private readonly slotWaiters: Array<{ resolve: (cid: number) => void; reject: (e: Error) => void }> = [];
  private readonly prpPages: DmaBuffer[];
  private readonly prpPagesPerSlot: number;
  private sqTail = 0;
  private cqHead = 0;
  private cqPhase = 1;
  private plugDepth = 0;
  private unrung = 0;
  private dead: Error | undefined;

  constructor(opts: QueuePairOptions) {
    this.transport = opts.transport;
    this.arena = opts.transport.arena;
    this.qid = opts.qid;
    this.entries = opts.entries;
    this.pageSize = opts.pageSize;
    this.maxTransfer = opts.maxTransfer;
    this.slots = Math.min(opts.slots ?? opts.entries - 1, opts.entries - 1, 0xffff);
    if (this.slots < 1) throw new RangeError(`queue ${opts.qid}: needs at least 2 entries, got ${opts.entries}`);
    this.sqDoorbell = sqTailDoorbell(opts.qid, opts.dstrd);
    this.cqDoorbell = cqHeadDoorbell(opts.qid, opts.dstrd);
    this.sq = this.arena.alloc(opts.entries * SQE_SIZE);
    this.cq = this.arena.alloc(opts.entries * CQE_SIZE);
    this.table = new Array<Slot | undefined>(this.slots);
    this.freeSlots = [];
    for (let i = this.slots - 1; i >= 0; i--) this.freeSlots.push(i);
    // Each list page holds pageSize/8 entries, the last of which chains to the next page.
    const perPage = this.pageSize / PRP_ENTRY_SIZE;
    const dataPages = Math.ceil(this.maxTransfer / this.pageSize) + 1;
    this.prpPagesPerSlot = dataPages <= 2 ? 0 : Math.max(1, Math.ceil((dataPages - 1) / (perPage - 1)));
    this.prpPages = [];
    for (let i = 0; i < this.slots * this.prpPagesPerSlot; i++) this.prpPages.push(this.arena.alloc(this.pageSize));
  }

  /** Commands submitted and not yet completed. */
  get outstanding(): number {
    return this.slots - this.freeSlots.length;
  }

  /** Delays SQ doorbell writes until the matching `unplug()` (doorbell batching). */
  plug(): void {
    this.plugDepth++;
  }

  unplug(): void {
    if (this.plugDepth === 0) throw new Error('unplug() without plug()');
    if (--this.plugDepth === 0 && this.unrung > 0) this.ringSq();
  }

  /**
   * Submits one command and resolves with its completion, whatever its status
   * (passthrough semantics). `raw` writes a whole 64-byte SQE verbatim except
   * the CID, for tests that need malformed commands.
   */
  async submitRaw(cmd: CommandFields | { raw: Uint8Array }, data?: DataSpec): Promise<Completion> {
    if (this.dead) throw this.dead;
    const cid = this.freeSlots.pop() ?? (await this.waitForSlot());
    let bounce: DmaBuffer | undefined;
    let readBack: Uint8Array | undefined;
    let prp1 = 0;
    let prp2 = 0;
    try {
      if (data && data.buffer.length > 0) {
        if (data.buffer.length > this.maxTransfer) {
          throw new NvmqError('NVMQ_INVALID_ARGUMENT', `transfer of ${data.buffer.length} bytes exceeds the queue's maximum of ${this.maxTransfer}`);
        }
        let region: Uint8Array = data.buffer;
        if (!this.arena.contains(data.buffer)) {
          // Bounce path: a buffer outside the DMA arena is copied through one inside it.
          bounce = this.arena.alloc(data.buffer.length);
          region = bounce.bytes.subarray(0, data.buffer.length);
          if (data.direction === 'to-device') region.set(data.buffer);
          else readBack = data.buffer;
        }
        [prp1, prp2] = this.buildPrps(cid, this.arena.iovaOf(region.byteOffset), region.length);
      }
    } catch (e) {
      if (bounce) this.arena.release(bounce);
      this.releaseSlot(cid);
      throw e;
    }

    const at = this.sq.offset + this.sqTail * SQE_SIZE;
    const dv = this.arena.view;
    let opcode: number;
    if ('raw' in cmd) {
      this.arena.bytes.set(cmd.raw.subarray(0, SQE_SIZE), at);
      dv.setUint16(at + Sqe.CID.offset, cid, true);
      opcode = cmd.raw[0] ?? 0;
    } else {
      const fields = data && data.buffer.length > 0 ? { ...cmd, prp1, prp2 } : cmd;
      encodeCommand(dv, at, { ...fields, cid });
      opcode = cmd.opcode;
    }
    this.sqTail = (this.sqTail + 1) % this.entries;
    const done = new Promise<Completion>((resolve, reject) => {
      this.table[cid] = { resolve, reject, opcode, bounce, readBack };
    });
    this.unrung++;
    if (this.plugDepth === 0) this.ringSq();
    return done;
  }

  /** Submits and throws the status as a typed error when it is not success. */
  async submit(cmd: CommandFields, data?: DataSpec): Promise<Completion> {
    const c = await this.submitRaw(cmd, data);
    if (c.status !== 0) throw statusToError(c.status, { opcode: cmd.opcode, qid: this.qid, cid: c.cid });
    return c;
  }

  private ringSq(): void {
    this.unrung = 0;
    this.stats.sqDoorbells++;
    this.transport.write32(this.sqDoorbell, this.sqTail);
    // Poll straight away: a memory namespace has already completed.
    this.stats.polled += this.processCompletions();
  }

  /** The interrupt handler for this queue's vector. */
  onInterrupt(): void {
    this.stats.interrupted += this.processCompletions();
  }

  /** Reaps every new CQE (phase tag matches), then writes the CQ head doorbell once. Returns how many. */
  processCompletions(): number {
    const dv = this.arena.view;
    let n = 0;
    for (;;) {
      const at = this.cq.offset + this.cqHead * CQE_SIZE;
      if ((dv.getUint16(at + Cqe.STATUS.offset, true) & 1) !== this.cqPhase) break;
      const c = decodeCompletion(dv, at);
      if (++this.cqHead === this.entries) {
        this.cqHead = 0;
        this.cqPhase ^= 1;
      }
      n++;
      const slot = c.cid < this.slots ? this.table[c.cid] : undefined;
      if (!slot) {
        // The controller broke the spec: a CID we have not submitted.
        this.stats.spurious++;
        trace('qid %d: completion for CID %d, which is not outstanding', this.qid, c.cid);
        continue;
      }
      this.table[c.cid] = undefined;
      if (slot.bounce) {
        if (slot.readBack && c.status === 0) slot.readBack.set(slot.bounce.bytes.subarray(0, slot.readBack.length));
        this.arena.release(slot.bounce);
      }
      this.releaseSlot(c.cid);
      slot.resolve(c);
    }
    if (n > 0) {
      this.stats.cqDoorbells++;
      this.transport.write32(this.cqDoorbell, this.cqHead);
    }
    return n;
  }

  private waitForSlot(): Promise<number> {
    return new Promise((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
  }

  /** A freed slot goes straight to the oldest waiter, so nobody can take it in between. */
  private releaseSlot(cid: number): void {
    const w = this.slotWaiters.shift();
    if (w) w.resolve(cid);
    else this.freeSlots.push(cid);
  }

  /**
   * PRP1 / PRP2 for a contiguous region of the arena. Beyond two pages PRP2
   * points at the slot's list pages, chained when one page of entries is not
   * enough (4.3).
   */
  private buildPrps(cid: number, iova: number, length: number): [number, number] {
    const ps = this.pageSize;
    const first = ps - (iova % ps);
    if (length <= first) return [iova, 0];
    const rest = length - first;
    const second = iova + first;
    if (rest <= ps) return [iova, second];
    const pages = Math.ceil(rest / ps);
    const perPage = ps / PRP_ENTRY_SIZE;
    const dv = this.arena.view;
    let listIndex = cid * this.prpPagesPerSlot;
    let list = this.prpPages[listIndex]!;
    let slot = 0;
    for (let i = 0; i < pages; i++) {
      if (slot === perPage - 1 && pages - i > 1) {
        const next = this.prpPages[++listIndex]!;
        writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, next.iova);
        list = next;
        slot = 0;
      }
      writeU64(dv, list.offset + slot * PRP_ENTRY_SIZE, second + i * ps);
      slot++;
    }
    return [iova, this.prpPages[cid * this.prpPagesPerSlot]!.iova];
  }

  /**
   * Fails every outstanding command and waiter (controller reset, queue deleted); the queue is unusable afterwards.
   * Call only once the controller can no longer write to this queue's buffers (CSTS.RDY clear, or the queue deleted).
   */
  fail(err: Error): void {
    this.dead = err;
    for (let cid = 0; cid < this.slots; cid++) {
      const slot = this.table[cid];
      if (!slot) continue;
      this.table[cid] = undefined;
      if (slot.bounce) this.arena.release(slot.bounce);
      slot.reject(err);
    }
    for (const w of this.slotWaiters.splice(0)) w.reject(err);
  }

  /** Returns ring and PRP memory to the arena. */
  releaseMemory(): void {
    this.arena.release(this.sq);
    this.arena.release(this.cq);
    for (const p of this.prpPages) this.arena.release(p);
    this.prpPages.length = 0;
  }
}
