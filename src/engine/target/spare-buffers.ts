/**
 * A connection's spare DMA buffers: those its finished commands gave back,
 * kept by size for its next commands, so that a command neither allocates
 * from the arena nor has a buffer zero-filled. They belong to one queue
 * pair's arena; when the pair changes (a reset failed it) or the connection
 * ends, they go back to the arena. It also counts the bytes the
 * connection's commands hold (taken and not given back), for its share of
 * the thread's DMA pool (MAX_HELD_BYTES).
 */
import type { IoQueuePair } from '../host/io-queue-pair.js';
import { MAX_HELD_BYTES } from './tcp-env.js';

/**
 * Bytes of spare buffers one connection keeps at most: a queue's worth of
 * 4 KiB commands. The arena is shared (by a thread's connections, and by its
 * other I/O): buffers kept idle are buffers another command cannot have.
 */
export const SPARE_BYTES = 512 << 10;

export class SpareBuffers {
  private readonly bySize = new Map<number, Uint8Array[]>();
  private owner: IoQueuePair | undefined;
  private bytes = 0;
  /** Bytes of DMA buffer taken and not yet given back. */
  held = 0;

  constructor(private readonly limit = SPARE_BYTES) {}

  /** A buffer of `bytes` in q's arena: a spare one, else a new one. */
  take(q: IoQueuePair, bytes: number): Uint8Array {
    if (q !== this.owner) this.drop();
    this.owner = q;
    this.held += bytes;
    const spare = this.bySize.get(bytes)?.pop();
    if (!spare) return q.allocBuffer(bytes);
    this.bytes -= bytes;
    return spare;
  }

  /** `buffer` (of q's arena) is free again: kept while q serves and the spare bytes stay within the limit, else back to the arena. */
  give(q: IoQueuePair, buffer: Uint8Array, keep: boolean): void {
    this.held -= buffer.length;
    if (keep && q === this.owner && !q.failed && this.bytes + buffer.length <= this.limit) {
      let list = this.bySize.get(buffer.length);
      if (!list) this.bySize.set(buffer.length, (list = []));
      list.push(buffer);
      this.bytes += buffer.length;
      return;
    }
    free(q, buffer);
  }

  /** Whether a command of `bytes` waits for its turn: the connection holds some, and this would pass its share. */
  mustWait(bytes: number): boolean {
    return this.held > 0 && this.held + bytes > MAX_HELD_BYTES;
  }

  /** Every spare buffer back to the arena. */
  drop(): void {
    const q = this.owner;
    if (q) for (const list of this.bySize.values()) for (const b of list) free(q, b);
    this.bySize.clear();
    this.bytes = 0;
    this.owner = undefined;
  }
}

function free(q: IoQueuePair, buffer: Uint8Array): void {
  try {
    q.releaseBuffer(buffer);
  } catch {
    // The pair was failed by a reset: its arena memory went with it.
  }
}
