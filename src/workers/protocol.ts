/**
 * What the engine's main thread and its pool workers say to each other: the
 * boot data a worker starts with, the grant protocol on the pool's channel
 * (attach → grant / refused → attached / attach-failed), and the tasks a
 * worker runs.
 */
import type { DeviceHandle } from '../engine/engine-device.js';
import type { QueuePairHandle } from '../engine/host/queue-pair.js';
import type { NamespaceInfo } from '../engine/host/identify.js';
import type { WaitMode } from '../engine/host/waiter.js';
import type { MessagePort } from 'node:worker_threads';
import type { WireError } from '../engine/errors.js';
import type { ThreadTimeouts } from './deadline-channel.js';

/** What any thread needs to attach to the engine's controller, besides its grant. */
export interface ThreadBoot {
  /** The engine's controller: in this process, or remote (each thread connects its own queue). */
  controller: DeviceHandle;
  namespaces: NamespaceInfo[];
  /** How the thread's queue pair waits for completions (EngineOptions.waitMode). */
  waitMode?: WaitMode;
  /** The thread's command timeout and where it reports commands past it (deadline-channel.ts). */
  timeouts?: ThreadTimeouts;
}

/** What a pool worker receives when it starts: it asks for its grant on `channel`. */
export interface WorkerBoot extends ThreadBoot {
  channel: string;
}

/**
 * What an application's own thread attaches with (`engine.attachHandle()`):
 * post it to the thread with `port` in the transfer list. The thread asks
 * for its grant on `port`; when the thread ends, the port closes and the
 * engine takes its queue back.
 */
export interface AttachHandle extends ThreadBoot {
  port: MessagePort;
}

/** What an attached thread says on its port. */
export type AttachedMessage = { type: 'attach' | 'attached' | 'detach'; threadId: number } | { type: 'attach-failed'; threadId: number; error: WireError };

/** What the engine answers on an attached thread's port. */
export type AttachReply = ({ type: 'grant' } & QueueGrant) | { type: 'refused'; message: string; code?: string } | { type: 'detached' };

/** The main thread's answer to a worker asking for its queue. */
export interface QueueGrant {
  threadId: number;
  /** Where the worker counts the commands it executes (so a death can be accounted for). */
  threadSlot: number;
  queue: QueuePairHandle;
  vector: number;
  pool: { offset: number; size: number };
  /** A remote controller's association as of this grant (the thread Connects its queue to it). */
  association?: { cntlid: number; inCapsule: number; epoch: number };
}

/** What workers post on the pool's channel. */
export type WorkerMessage = { type: 'attach' | 'attached'; threadId: number } | { type: 'attach-failed'; threadId: number; error: WireError };

/** A task for a pool worker: a module of the application's, run with the worker's queue pair. */
export interface IoTask {
  kind: 'run';
  module: string;
  args: unknown;
}
