/**
 * A thread serving NVMe/TCP I/O queues for the target (tcp-target.ts). It
 * attaches to the engine as an application thread does (`attach()`: a queue
 * pair of its own, its own io_uring, the controller's I/O path run here),
 * and takes connected I/O queues from the main thread: each arrives as a
 * duplicate of the accepted socket's descriptor with the queue's state
 * (`MovedQueue`), and is served here to its end. Messages:
 *
 *   main → here: { type: 'serve', id, fd, queue }   go on serving a queue
 *                { type: 'close', id, reason }     its controller ended it
 *                { type: 'stop' }                  close everything, detach, end
 *   here → main: { type: 'ready' }                  attached
 *                { type: 'disconnected', id }      the host disconnected the queue (its QID is free)
 *                { type: 'ended', id, reason }     a connection ended here
 *
 * A reset of the engine fails this thread's queue pair: commands in flight
 * end with Command Interrupted (the host retries them) and the next command
 * attaches again.
 */
import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type AttachedQueue } from '../../workers/attach.js';
import type { AttachHandle } from '../../workers/protocol.js';
import { ioQueueFabricsCommand } from './controller-core.js';
import { TcpConnection, type ConnectionEnv, type MovedQueue, type QueueOwner } from './tcp-connection.js';
import { TcpCounters } from './tcp-metrics.js';

export interface TcpWorkerData {
  handle: AttachHandle;
  maxH2CData: number;
  inCapsuleDataBytes: number;
  maxTransferBytes: number;
  /** The target's metrics counters, and this thread's row in them. */
  counters: SharedArrayBuffer;
  thread: number;
}

export type ToTcpWorker = { type: 'serve'; id: number; fd: number; queue: MovedQueue } | { type: 'close'; id: number; reason: string } | { type: 'stop' };
export type FromTcpWorker = { type: 'ready' } | { type: 'ended'; id: number; reason: string } | { type: 'disconnected'; id: number };

const port = parentPort!;
const data = workerData as TcpWorkerData;
let queue: AttachedQueue = await attach(data.handle);
let reattaching: Promise<AttachedQueue> | undefined;

/** This thread's queue pair; after a reset failed it, a fresh one (attached once for every waiting command). */
async function ioQueue(): Promise<AttachedQueue> {
  if (!queue.failed) return queue;
  reattaching ??= (async () => {
    await queue.detach().catch(() => {});
    queue = await attach(data.handle);
    return queue;
  })().finally(() => {
    reattaching = undefined;
  });
  return reattaching;
}

/**
 * The one buffer every socket of this thread reads into (net.Socket
 * `onread`): no allocation (and, for a chunk of write data, no fresh pages
 * to fault in) per read. A connection keeps nothing of a chunk past its
 * callback (ConnectionEnv.readBuffer).
 */
const READ_BYTES = 256 << 10;
const readInto = Buffer.allocUnsafeSlow(READ_BYTES);

const connections = new Map<number, TcpConnection>();
const ids = new Map<TcpConnection, number>();
const env: ConnectionEnv = {
  targets: [],
  ioQueue,
  executorOf: (q) => (q as AttachedQueue).executor,
  namespaces: new Map(data.handle.namespaces.map((n) => [n.nsid, n])),
  maxH2CData: data.maxH2CData,
  inCapsuleDataBytes: data.inCapsuleDataBytes,
  maxTransferBytes: data.maxTransferBytes,
  counters: new TcpCounters(data.counters, data.thread),
  closed: (closed) => {
    const c = closed as TcpConnection;
    const id = ids.get(c);
    if (id === undefined) return;
    ids.delete(c);
    connections.delete(id);
    port.postMessage({ type: 'ended', id, reason: c.reason ?? 'closed' } satisfies FromTcpWorker);
  },
};

/** The queue's controller as seen from here: I/O-queue Fabrics commands need nothing of it; the main thread hears when the queue ends. */
function owner(m: MovedQueue, id: number): QueueOwner {
  return {
    cntlid: m.cntlid,
    hostnqn: m.hostnqn,
    isGone: false,
    execute: () => Promise.reject(new Error('an admin capsule on an I/O queue connection')),
    fabricsCommand: (sqe) => {
      const r = ioQueueFabricsCommand(sqe);
      // Before the response goes out: the host may connect the QID again as soon as it has it.
      if (r.disconnect) port.postMessage({ type: 'disconnected', id } satisfies FromTcpWorker);
      return r.response;
    },
    // The main thread forgets the queue when this connection ends ('ended').
    removeIoQueue: () => {},
    disconnect: () => {},
  };
}

port.on('message', (m: ToTcpWorker) => {
  if (m.type === 'serve') {
    const link: NonNullable<ConnectionEnv['readBuffer']> = { onChunk: undefined };
    const onread = { buffer: readInto, callback: (n: number) => void link.onChunk?.(new Uint8Array(readInto.buffer, readInto.byteOffset, n)) };
    const socket = new net.Socket({ fd: m.fd, readable: true, writable: true, onread } as net.SocketConstructorOpts);
    const c = TcpConnection.adopt(socket, { ...env, readBuffer: link }, m.queue, owner(m.queue, m.id));
    connections.set(m.id, c);
    ids.set(c, m.id);
    // Ended while its first bytes were parsed (a PDU in error).
    if (c.reason !== undefined) env.closed(c);
  } else if (m.type === 'close') {
    connections.get(m.id)?.close(m.reason);
  } else {
    for (const c of [...connections.values()]) c.close('the target is closing');
    void queue.detach().finally(() => port.close());
  }
});
port.postMessage({ type: 'ready' } satisfies FromTcpWorker);
