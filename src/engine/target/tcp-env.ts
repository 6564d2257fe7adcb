/**
 * What an NVMe/TCP connection (tcp-connection.ts) is given by the thread
 * serving it: the queue's controller, the limits, the hooks to move a queue
 * to another thread, and the metrics row; and what a moved queue carries.
 */
import type { Socket } from 'node:net';
import type { IoQueuePair } from '../host/io-queue-pair.js';
import type { NamespaceInfo } from '../host/identify.js';
import type { FabricsResponse } from './capsule.js';
import type { ConnectTarget } from './connect.js';
import type { TcpCounters } from './tcp-metrics.js';
import type { QueueExecutor } from '../device/executor.js';

/** The controller's executor in the serving thread, as a connection uses it (QueueExecutor.submitDirect). */
export type DirectEntry = Pick<QueueExecutor, 'submitDirect' | 'plug' | 'unplug' | 'completesInline'>;

/** In-capsule data an admin queue takes (NVMe/TCP: 8 KiB, enough for a Connect's 1024 bytes). */
export const ADMIN_IN_CAPSULE_BYTES = 8192;
/** A connection that has not connected a queue this long after it was accepted is closed (its ICReq and Connect are due at once). */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Bytes waiting to be sent past which the connection stops reading until the host catches up. */
/**
 * DMA buffer bytes one connection's commands may hold at once (data being
 * written, asked for by R2T, read, or waiting to be sent); later commands
 * wait their turn. The I/O thread's DMA pool is shared by its connections:
 * a host that never sends its write data, or never reads its responses,
 * holds this much of it, not its queue size times MDTS.
 */
export const MAX_HELD_BYTES = 1 << 20;
export const SEND_BACKLOG_BYTES = 8 << 20;
/** SQHD in every response where the host disabled SQ flow control (Fabrics 1.1, Connect CATTR). */
export const SQHD_DISABLED = 0xffff;

/**
 * The controller a connection's queue belongs to, as the connection uses it:
 * the FabricsController itself on the thread that accepted the connection,
 * a stand-in in a worker serving a moved I/O queue (tcp-worker.ts).
 */
export interface QueueOwner {
  readonly cntlid: number;
  readonly hostnqn: string;
  readonly isGone: boolean;
  /** An admin-queue capsule (the admin queue never moves). */
  execute(sqe: Uint8Array, data?: Uint8Array): Promise<FabricsResponse>;
  /** A Fabrics capsule on queue `qid`. */
  fabricsCommand(sqe: Uint8Array, qid: number): FabricsResponse;
  removeIoQueue(qid: number): void;
  disconnect(): void;
}

/** What another thread needs to go on serving a connected I/O queue: the negotiated wire and queue state, and the bytes read already. */
export interface MovedQueue {
  hdgst: boolean;
  ddgst: boolean;
  hpda: number;
  cntlid: number;
  hostnqn: string;
  qid: number;
  entries: number;
  sqhd: number;
  sqFlowOff: boolean;
  /** Bytes received after the Connect capsule, not yet parsed. */
  unread: Uint8Array;
  /** The host's label slot in the target's metrics. */
  hostSlot: number;
}

/** What a connection needs from the target that accepted it. */
export interface ConnectionEnv {
  /** Where a Connect may go: the subsystem, the discovery service. */
  targets: readonly ConnectTarget[];
  /** The serving thread's local I/O queue pair (made on first use). */
  ioQueue(): Promise<IoQueuePair>;
  /**
   * The executor of the controller behind `q` when this thread runs it (an
   * I/O thread attached to an in-process controller): I/O commands then go
   * to it directly, without the pair's SQ, PRPs or reaping; otherwise (the
   * main thread, a remote controller) through `q` as raw commands.
   */
  executorOf?(q: IoQueuePair): DirectEntry | undefined;
  namespaces: ReadonlyMap<number, NamespaceInfo>;
  /** MAXH2CDATA offered in the ICResp. */
  maxH2CData: number;
  /** In-capsule data an I/O command capsule may carry (IOCCSZ − 64). */
  inCapsuleDataBytes: number;
  /** The largest transfer of one command (the local controller's MDTS). */
  maxTransferBytes: number;
  /** The connection is gone. */
  closed(c: { readonly reason: string | undefined }): void;
  /**
   * An I/O queue was connected and its Connect answered: another thread may
   * take the connection over (the socket is paused, nothing else is read
   * here). Returns how to close it there, or undefined to serve it here.
   */
  moveQueue?(conn: { readonly socket: Socket }, q: MovedQueue): ((reason: string) => void) | undefined;
  /** This thread's row of the target's metrics, if it keeps any. */
  counters?: TcpCounters;
  /** The metrics label slot of a host NQN (the thread that answers Connects). */
  hostSlot?(hostnqn: string): number;
  /**
   * Set when the socket reads into one buffer it reuses (net.Socket
   * `onread`, no allocation per read): the connection sets `onChunk`, which
   * the socket's callback calls with what it read; nothing of a chunk is
   * kept past that call.
   */
  readBuffer?: { onChunk: ((chunk: Uint8Array) => void) | undefined };
  /** How long an accepted connection may take to connect a queue (default CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
}
