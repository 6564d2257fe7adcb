/**
 * Commands outstanding on a controller, counted from the register writes the
 * host makes: an SQ tail doorbell adds the entries it moves past, a CQ head
 * doorbell takes away the completions it consumes. Queue sizes come from AQA
 * (admin) and from the Create I/O SQ / CQ commands the host places in the
 * admin SQ. A transport without interrupts polls while this is above zero,
 * and holds the event loop only then.
 *
 * Asynchronous Event Requests stay outstanding until an event: they are not
 * counted, so a host that keeps one armed does not keep polling. Their
 * completions are not told apart from others, so the count can run low when
 * one completes: the transport also polls slowly while it is zero.
 */
import { Aqa, Cc, DOORBELL_BASE, Regs } from '../../spec/registers.js';
import { bitsOf } from '../../spec/layout.js';
import { AdminOpcode } from '../../spec/opcodes.js';
import { SQE_SIZE } from '../../spec/command.js';
import type { DmaArena } from '../../dma-arena.js';

/** 16-bit QIDs and queue sizes: a ring of unknown size counts modulo this. */
const UNKNOWN_SIZE = 0x10000;

interface Ring {
  size: number;
  /** Last doorbell value written. */
  at: number;
}

export class OutstandingCommands {
  /** Commands submitted and not yet consumed from a CQ. */
  count = 0;
  private readonly sqs = new Map<number, Ring>();
  private readonly cqs = new Map<number, Ring>();
  /** IOVA of the admin SQ (ASQ). */
  private asq = 0;

  constructor(
    private readonly arena: DmaArena,
    private readonly stride: number,
  ) {}

  /**
   * I/O queue `qid` of `entries` was created by another thread's admin
   * queue: this one rings it, so its ring sizes come from here.
   */
  track(qid: number, entries: number): void {
    this.sqs.set(qid, { size: entries, at: 0 });
    this.cqs.set(qid, { size: entries, at: 0 });
  }

  /** Accounts a 32-bit register write (before or after it reaches the device). */
  write32(offset: number, value: number): void {
    if (offset >= DOORBELL_BASE) return this.doorbell(offset, value);
    if (offset === Regs.AQA.offset) {
      this.sqs.set(0, { size: bitsOf(value, Aqa.ASQS) + 1, at: 0 });
      this.cqs.set(0, { size: bitsOf(value, Aqa.ACQS) + 1, at: 0 });
    } else if (offset === Regs.ASQ.offset) {
      this.asq = (this.asq - (this.asq % 0x1_0000_0000)) + (value >>> 0);
    } else if (offset === Regs.ASQ.offset + 4) {
      this.asq = (this.asq % 0x1_0000_0000) + (value >>> 0) * 0x1_0000_0000;
    } else if (offset === Regs.CC.offset && bitsOf(value, Cc.EN) === 0) {
      // Disabled: every queue is gone, and with it what was outstanding.
      this.count = 0;
      this.sqs.clear();
      this.cqs.clear();
    }
  }

  private doorbell(offset: number, value: number): void {
    const index = Math.floor((offset - DOORBELL_BASE) / this.stride);
    const qid = index >> 1;
    if (index & 1) {
      const cq = this.ring(this.cqs, qid);
      this.count = Math.max(0, this.count - this.advance(cq, value));
      return;
    }
    const sq = this.ring(this.sqs, qid);
    const from = sq.at;
    const n = this.advance(sq, value);
    this.count += qid === 0 ? n - this.snoopAdmin(from, n, sq.size) : n;
  }

  private ring(map: Map<number, Ring>, qid: number): Ring {
    let r = map.get(qid);
    if (!r) map.set(qid, (r = { size: UNKNOWN_SIZE, at: 0 }));
    return r;
  }

  /** Entries the doorbell moved past, and the ring's new position. */
  private advance(r: Ring, value: number): number {
    const n = (value - r.at + r.size) % r.size;
    r.at = value % r.size;
    return n;
  }

  /** Learns I/O queue sizes from the admin commands [from, from + n); returns how many are AERs. */
  private snoopAdmin(from: number, n: number, size: number): number {
    let aers = 0;
    for (let i = 0; i < n; i++) {
      const at = this.arena.translate(this.asq + ((from + i) % size) * SQE_SIZE, SQE_SIZE);
      if (at < 0) continue;
      const opcode = this.arena.bytes[at]!;
      const cdw10 = this.arena.view.getUint32(at + 40, true);
      const qid = cdw10 & 0xffff;
      const entries = (cdw10 >>> 16) + 1;
      if (opcode === AdminOpcode.CREATE_IO_SQ) this.sqs.set(qid, { size: entries, at: 0 });
      else if (opcode === AdminOpcode.CREATE_IO_CQ) this.cqs.set(qid, { size: entries, at: 0 });
      else if (opcode === AdminOpcode.ASYNC_EVENT_REQUEST) aers++;
    }
    return aers;
  }
}
