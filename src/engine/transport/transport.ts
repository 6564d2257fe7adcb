/**
 * How the host driver reaches a controller: 32/64-bit register accesses to
 * BAR0, DMA memory both sides can address, and interrupt vectors. The driver
 * uses nothing else, so another transport (NVMe/TCP, VFIO) is a new
 * implementation of this interface, not a rewrite of the driver.
 */
import type { DmaArena } from '../dma-arena.js';

/** The longest spin a transport's wait() is asked for: a second, in microseconds (the addon's ring.h kMaxSpinUs). */
export const MAX_SPIN_US = 1_000_000;

export interface Transport {
  /** Host memory the controller can reach (PRPs and queue rings point into it). */
  readonly arena: DmaArena;
  /** A short name for logs ("local", "tcp"). */
  readonly name: string;
  /**
   * How a command's data pointer (DPTR) is written: PRPs (default), or one
   * SGL Data Block descriptor, PSDT 01b, for a transport that must know a
   * command's data length from its SQE (NVMe/TCP).
   */
  readonly dataPointer?: 'prp' | 'sgl';
  /**
   * The transport finds completions by polling and runs the interrupt
   * handlers itself: I/O CQs are created with interrupts disabled (IEN 0,
   * vector 0), as a PCIe controller without MSI-X enabled requires.
   */
  readonly polled?: boolean;
  read32(offset: number): number;
  read64(offset: number): number;
  write32(offset: number, value: number): void;
  write64(offset: number, value: number): void;
  /**
   * Polled mode: lets a controller in this thread complete what its backends
   * have finished (io_uring completions, reaped without a system call).
   * Completions then appear in the CQs as usual. Optional.
   */
  poll?(): void;
  /**
   * Blocks the thread until a controller in this thread has something to
   * complete (an io_uring operation finished) or `timeoutMs` passes, then
   * completes it as poll() does; polls for up to `spinUs` (at most
   * MAX_SPIN_US) before it sleeps.
   * Returns at once when nothing in this thread can be waited for that way.
   * Optional.
   */
  wait?(timeoutMs: number, spinUs?: number): void;
  /** Operations in flight that wait() can wait for in this thread (0: wait() would return at once). Optional. */
  waitable?(): number;
  /**
   * Why creating I/O queue `qid` failed, when the transport knows more than
   * the completion's status (an NVMe/TCP connection refused). Optional.
   */
  queueError?(qid: number): Error | undefined;
  /**
   * I/O queue `qid`, about to be created, will be rung from another thread
   * (its own transport there): a transport that connects each queue in its
   * thread (NVMe/TCP) leaves that to the other thread. Optional.
   */
  queueOwnedElsewhere?(qid: number): void;
  /**
   * Between a reset's disable and the bring-up that follows: a transport
   * that reaches its controller over a network makes a new association
   * (reconnects). Rejects when it cannot; the reset then fails. Optional.
   */
  restart?(): Promise<void>;
  /** Installs (or removes) the handler run when the controller raises `vector`. */
  setInterruptHandler(vector: number, handler: (() => void) | undefined): void;
  close(): Promise<void>;
}
