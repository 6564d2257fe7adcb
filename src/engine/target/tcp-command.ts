/**
 * A command of an NVMe/TCP connection between its capsule and its response
 * (tcp-connection.ts). An I/O queue reuses its records: one is taken when a
 * capsule arrives and given back once its response is out of the
 * connection's hands (written, or gathered for writing, with its DMA buffer
 * detached), so there are at most as many as commands in flight. What a
 * command of the local queue pair needs (the raw SQE, its data, the
 * completion callback) is made with the record, not per command.
 */
import type { IoQueuePair } from '../host/io-queue-pair.js';
import type { CompletionCallback, DataSpec } from '../host/queue-pair.js';
import { PduError } from '../errors.js';
import { SQE_SIZE } from '../spec/command.js';
import { Fes, H2CDataPdu, TcpCommonHeader } from '../spec/tcp-pdu.js';
import type { FabricsResponse } from './capsule.js';
import { DataDirection, clearDataPointer, errorStatus } from './local-io.js';
import type { DirectDone } from '../device/queues.js';
import type { DirectEntry } from './tcp-env.js';
import type { SpareBuffers } from './spare-buffers.js';
import type { Pdu } from './pdu.js';
import type { decodeDataPdu } from './pdu-fields.js';

export interface Command {
  cid: number;
  /** This connection's copy of the SQE (the local path clears its data pointer in place), and views of it. */
  readonly sqe: Uint8Array;
  readonly dv: DataView;
  readonly words: Uint32Array;
  direction: number;
  /** Bytes its SGL describes. */
  length: number;
  buffer: Uint8Array | undefined;
  /** Whether `buffer` is a DMA buffer of `q` to give back. */
  q: IoQueuePair | undefined;
  /** Its data is where it arrived (a write) or where its response is gathered (a read): no DMA buffer (IoPath.inline). */
  placed: boolean;
  /** H2CData bytes received so far (an R2T'd write). */
  received: number;
  ttag: number;
  /** Set when some of its H2CData failed the data digest: the rest is taken and dropped, then this is the response. */
  failed: FabricsResponse | undefined;
  /** The local queue pair's view of it: the raw SQE, its data (set per command), and where its completion goes. */
  readonly raw: { raw: Uint8Array };
  readonly data: DataSpec;
  local: CompletionCallback | undefined;
  /** Where its completion goes when the executor runs it directly (runDirect). */
  direct: DirectDone | undefined;
}

const NO_DATA = new Uint8Array(0);

/** What a record's local completion becomes: its status, DW0, DW1 and, for a read that succeeded, its data. */
export type CommandDone = (cmd: Command, status: number, dw0: number, dw1: number, data: Uint8Array | undefined) => void;

/** A command record; with `done`, its local completion callback (made once, here). */
export function commandRecord(cid: number, done?: CommandDone): Command {
  const sqe = new Uint8Array(SQE_SIZE);
  const cmd: Command = {
    cid,
    sqe,
    dv: new DataView(sqe.buffer),
    words: new Uint32Array(sqe.buffer),
    direction: 0,
    length: 0,
    buffer: undefined,
    q: undefined,
    placed: false,
    received: 0,
    ttag: -1,
    failed: undefined,
    raw: { raw: sqe },
    data: { buffer: NO_DATA, direction: 'to-device' },
    local: undefined,
    direct: undefined,
  };
  if (done) {
    cmd.direct = (status, dw0) => done(cmd, status, dw0, 0, status === 0 ? readData(cmd) : undefined);
    cmd.local = (err, c) => {
      if (err || !c) {
        const r = errorStatus(err);
        done(cmd, r.status, r.dw0, r.dw1, undefined);
      } else done(cmd, c.status, c.dw0, c.dw1, c.status === 0 ? readData(cmd) : undefined);
    };
  }
  return cmd;
}

/** The data a command that succeeded read, if it read any. */
function readData(cmd: Command): Uint8Array | undefined {
  return cmd.direction === DataDirection.FROM_DEVICE && cmd.buffer !== undefined && cmd.buffer.length > 0 ? cmd.buffer : undefined;
}

/** Makes a record the CID's new command, moving `length` bytes in `direction`. */
export function startCommand(cmd: Command, direction: number, length: number): void {
  cmd.direction = direction;
  cmd.length = length;
  cmd.received = 0;
  cmd.ttag = -1;
  cmd.failed = undefined;
  cmd.placed = false;
}

/**
 * Runs I/O command `cmd` on the local queue pair `q` (local-io.ts), its
 * data in `cmd.buffer` (a DMA buffer of q's arena, or none): the completion
 * goes to the record's callback, never inside this call.
 */
export function runOn(q: IoQueuePair, cmd: Command): void {
  clearDataPointer(cmd.sqe);
  const buffer = cmd.buffer;
  let data: DataSpec | undefined;
  if (buffer !== undefined && buffer.length > 0) {
    data = cmd.data;
    data.buffer = buffer;
    data.direction = cmd.direction === DataDirection.TO_DEVICE ? 'to-device' : 'from-device';
  }
  q.passthruCallback(cmd.raw, data, cmd.local!);
}

/**
 * Where a connection's I/O commands run: the serving thread's queue pair
 * `q`, and the executor behind it when this thread runs the controller
 * (ConnectionEnv.executorOf).
 */
export class IoPath {
  q: IoQueuePair | undefined;
  private exec: DirectEntry | undefined;

  constructor(
    private readonly executorOf: ((q: IoQueuePair) => DirectEntry | undefined) | undefined,
    private readonly spare: SpareBuffers,
  ) {}

  /** The queue pair to run I/O on, if one is known and not failed (a reset failed it: its spare buffers go with it). */
  usable(): IoQueuePair | undefined {
    if (this.q?.failed) {
      this.spare.drop();
      this.use(undefined);
    }
    return this.q;
  }

  use(q: IoQueuePair | undefined): void {
    this.q = q;
    this.exec = q && this.executorOf?.(q);
  }

  /** What holds back a received chunk's commands for one submission: the executor, else the pair. */
  get batch(): { plug(): void; unplug(): void } | undefined {
    return this.exec ?? this.q;
  }

  /** Whether `cmd` runs on q's executor and completes inside that call (a memory namespace): its data may then be a view that lasts only as long. */
  inline(q: IoQueuePair, cmd: Command): boolean {
    const exec = q === this.q ? this.exec : this.executorOf?.(q);
    return exec !== undefined && exec.completesInline(cmd.words[1]!);
  }

  /**
   * Runs I/O command `cmd` (its data in `cmd.buffer`, a DMA buffer of `q`)
   * on q's controller: through the executor (QueueExecutor.submitDirect for
   * q's SQ: no SQ entry, PRPs or reaping) when this thread has it, else as a
   * raw command of `q` (runOn). The completion goes to the record's callback,
   * inside this call for a memory namespace on the executor. False, running
   * nothing, when the executor cannot take it now (a reset, the pair's
   * deletion).
   */
  run(q: IoQueuePair, cmd: Command): boolean {
    // A pair a reset failed (an R2T'd write whose data came after it): its QID may name a new queue now.
    if (q.failed) return false;
    const exec = q === this.q ? this.exec : this.executorOf?.(q);
    if (exec === undefined) {
      runOn(q, cmd);
      return true;
    }
    const buffer = cmd.buffer;
    return exec.submitDirect(q.qid, cmd.words, buffer !== undefined && buffer.length > 0 ? buffer : undefined, cmd.direct!);
  }
}

/**
 * What is wrong with H2CData `h` for the R2T of `cmd` (undefined when it
 * awaits none, or a CCCID that is not its), as the fatal error that ends the
 * connection; undefined when it is the data the R2T asked for next.
 */
export function h2cDataError(pdu: Pdu, h: ReturnType<typeof decodeDataPdu>, cmd: Command | undefined, maxH2CData: number): PduError | undefined {
  const at = { pduType: pdu.type, offendingHeader: pdu.header };
  // Data for no R2T, out of order or past the transfer: the binding's Data Transfer Out of Range / sequence errors.
  if (!cmd || cmd.cid !== h.cccid) return new PduError(Fes.INVALID_HEADER_FIELD, H2CDataPdu.TTAG.offset, `H2CData for TTAG ${h.ttag} / CCCID ${h.cccid}, which no R2T asked for`, at);
  // More than MAXH2CDATA in one PDU: the limit the ICResp set (as the reader says for an oversized PLEN).
  if (h.datal > maxH2CData) return new PduError(Fes.DATA_TRANSFER_LIMIT_EXCEEDED, H2CDataPdu.DATAL.offset, `H2CData of ${h.datal} bytes, over MAXH2CDATA ${maxH2CData}`, at);
  if (h.datao !== cmd.received || h.datao + h.datal > cmd.length) {
    return new PduError(Fes.DATA_TRANSFER_OUT_OF_RANGE, H2CDataPdu.DATAO.offset, `H2CData at ${h.datao} (+${h.datal}) where ${cmd.received} of ${cmd.length} bytes were expected`, at);
  }
  // LAST_PDU marks the R2T's last H2CData, and only it.
  if (h.last !== (h.datao + h.datal === cmd.length)) {
    return new PduError(Fes.INVALID_HEADER_FIELD, TcpCommonHeader.FLAGS.offset, `H2CData at ${h.datao} (+${h.datal}) of ${cmd.length} bytes with LAST_PDU ${h.last ? 'set' : 'clear'}`, at);
  }
  return undefined;
}

/**
 * The CIDs of a connection's commands in flight: a bit per 16-bit CID (8 KiB)
 * and a count. A Map of them reallocated its hash table whenever the count
 * swung between a chunk's worth and half of it (every write-through at
 * depth 32): with the page faults of the fresh tables and the collections
 * they fed, about 1% of the target process's CPU at depth 32.
 */
export class CidSet {
  private readonly bits = new Uint32Array(65536 / 32);
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(cid: number): boolean {
    return (this.bits[cid >>> 5]! & (1 << (cid & 31))) !== 0;
  }

  /** Adds `cid` (a 16-bit CID); no change when it is in already. */
  add(cid: number): void {
    const i = cid >>> 5;
    const bit = 1 << (cid & 31);
    if ((this.bits[i]! & bit) !== 0) return;
    this.bits[i]! |= bit;
    this.count++;
  }

  /** Removes `cid`; no change when it is not in. */
  delete(cid: number): void {
    const i = cid >>> 5;
    const bit = 1 << (cid & 31);
    if ((this.bits[i]! & bit) === 0) return;
    this.bits[i]! &= ~bit;
    this.count--;
  }
}
