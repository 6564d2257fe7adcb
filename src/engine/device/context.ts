/**
 * What a command handler is given. Handlers return an NVMe status (or HELD
 * when the command completes later) and reach the controller only through
 * these contexts: an I/O command the executing thread's queue executor
 * (`IoContext`), an admin command that plus the admin queue's state on the
 * main thread (`AdminContext`).
 */
import type { DmaArena } from '../dma-arena.js';
import type { BlockIo, IoDone } from './backends/backend.js';
import type { Namespace } from './namespace.js';
import type { CompletionQueue, Request, SubmissionQueue } from './queues.js';
import type { ControllerConfig } from './config.js';
import type { SharedState } from './shared-state.js';
import type { AdminState } from './admin-state.js';
import type { ErrorLog, HealthCounters } from './health.js';

/** A command table as an array indexed by opcode, for dispatch without hashing. */
export function byOpcode<C>(table: ReadonlyMap<number, CommandEntry<C>>): Array<CommandEntry<C> | undefined> {
  const out = new Array<CommandEntry<C> | undefined>(256).fill(undefined);
  for (const [opcode, entry] of table) out[opcode] = entry;
  return out;
}

export interface CommandEntry<C> {
  readonly opcode: number;
  readonly handler: (c: C, req: Request) => number;
  /** Commands Supported and Effects bits beyond CSUPP (Figure 206). */
  readonly effects: number;
}

/** What an I/O command needs: its namespace, its data, and backend operations. */
export interface IoContext {
  /** The active namespace `nsid`, if any. */
  namespace(nsid: number): Namespace | undefined;
  readonly namespaces: ReadonlyMap<number, Namespace>;
  /** MDTS in bytes, or Infinity. */
  readonly maxTransfer: number;
  /** Volatile Write Cache Enable. */
  readonly writeCacheEnabled: boolean;
  /** Maps the command's PRPs for `length` bytes. */
  mapData(req: Request, length: number): { status: number; segments: Uint8Array[] };
  /** Controller → host copy of a small structure (Identify, log pages); bytes past `data` are zero. */
  sendToHost(req: Request, data: Uint8Array, length?: number): number;
  /** Host → controller copy of a small structure (DSM ranges). */
  receiveFromHost(req: Request, length: number): { status: number; data: Uint8Array };
  /** `ns`'s backend operations for `req`'s queue in this thread (through its io_uring where it has one). */
  blockIo(req: Request, ns: Namespace): BlockIo;
  /**
   * Runs one backend operation of `req`: the command holds until `done` is
   * called, once. A backend that throws fails the operation with Internal Error.
   */
  backendOp(req: Request, op: (done: IoDone) => void): void;
}

/** The executor's queue operations the admin command set uses. */
export interface QueueControl extends IoContext {
  /** The SQ / CQ with this QID, or undefined when it does not exist. */
  sq(qid: number): SubmissionQueue | undefined;
  cq(qid: number): CompletionQueue | undefined;
  /** A view for creating a queue (Create I/O SQ / CQ). */
  sqSlot(qid: number): SubmissionQueue;
  cqSlot(qid: number): CompletionQueue;
  /** Drops one hold on `req` with a status; the completion is posted when the last hold goes. */
  release(req: Request, status: number): void;
  /** Takes `req` out of the in-flight accounting without completing it (a held AER). */
  detach(req: Request): void;
  /** Posts `req`'s completion into the room reserved when it was fetched. */
  postCompletion(req: Request, status: number): void;
  /** This thread's executing requests of an SQ (for Abort). */
  requestsOf(qid: number): readonly Request[];
  /** Tears down this thread's io_uring for `qid`, completing what it held. */
  retireRing(qid: number): void;
}

/** The shared controller words an admin command reads or sets. */
export type AdminShared = Pick<SharedState, 'regs' | 'epoch' | 'pageSize' | 'setWriteCacheEnabled' | 'nextSqGeneration'>;

/** What an admin command needs, on the main thread. */
export interface AdminContext {
  readonly io: QueueControl;
  readonly config: ControllerConfig;
  readonly shared: AdminShared;
  readonly admin: AdminState;
  readonly arena: DmaArena;
  readonly health: HealthCounters;
  readonly errorLog: ErrorLog;
  /** Identify NN: the largest NSID. */
  readonly maxNsid: number;
  /** The opcodes and effects of the admin (true) or I/O command set, for the Commands Supported and Effects log. */
  commandTable(admin: boolean): ReadonlyMap<number, { opcode: number; effects: number }>;
}
