/**
 * The send side of a host connection: PDUs are gathered into one output
 * buffer and go to the socket as one write once the microtasks queued so far
 * have run. The completions of one received chunk and the submissions they
 * make run in the microtasks after that chunk's 'data' event, so the
 * capsules of all their doorbells leave in one write right after that
 * chunk, before the next one is read: the target works on them while the
 * host reads the rest of its responses. (Holding them to the end of the
 * event-loop turn made the host and the target take turns, a whole queue's
 * worth at a time.)
 *
 * The output buffer is never written twice: each write takes the bytes
 * gathered since the last one, and a full buffer is replaced by a new one,
 * so the socket may keep what it was given as long as it needs. Larger
 * data (over COPY_MAX_BYTES) goes by reference, in order with what was
 * gathered.
 */
import type { Socket } from 'node:net';
import { microtask } from '../../shared/microtask.js';

/** Bytes of one output buffer. */
const OUT_BYTES = 64 << 10;
/** PDU segments up to this many bytes in all are copied into the output buffer; larger ones are written as they are. */
export const COPY_MAX_BYTES = 16 << 10;

export class HostOutput {
  /** The output buffer and a view of it: reserve() says where to write. */
  out: Buffer = Buffer.allocUnsafeSlow(OUT_BYTES);
  view = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
  private words = new Uint32Array(this.out.buffer, this.out.byteOffset, this.out.length >> 2);
  /** The source of the last copy() and its 32-bit view (undefined when it is not 4-byte aligned). */
  private src: Uint8Array | undefined;
  private srcWords: Uint32Array | undefined;
  /** Bytes of `out` written to the socket, and gathered. */
  private start = 0;
  private used = 0;
  private queued = false;
  /** Set once the socket is ending: nothing more is written. */
  private closed = false;

  constructor(private readonly socket: Socket) {}

  /** Room for `bytes` in `out`, to be filled now: returns where. The bytes go out with the next flush. */
  reserve(bytes: number): number {
    if (this.used + bytes > this.out.length) {
      this.flush();
      this.out = Buffer.allocUnsafeSlow(Math.max(OUT_BYTES, bytes));
      this.view = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
      this.words = new Uint32Array(this.out.buffer, this.out.byteOffset, this.out.length >> 2);
      this.start = this.used = 0;
    }
    if (!this.queued) {
      this.queued = true;
      microtask(this.flushQueued);
    }
    const at = this.used;
    this.used += bytes;
    return at;
  }

  /** Copies `n` bytes at `from` of `src` to `at` of `out` (reserved): by 32-bit words when both sides are aligned (an SQE in the arena). */
  copy(src: Uint8Array, from: number, at: number, n: number): void {
    if (src !== this.src) {
      this.src = src;
      this.srcWords = (src.byteOffset & 3) === 0 ? new Uint32Array(src.buffer, src.byteOffset, src.length >> 2) : undefined;
    }
    const sw = this.srcWords;
    const out = this.out;
    if (sw !== undefined && ((from | at | n) & 3) === 0) {
      const w = this.words;
      for (let i = 0, d = at >> 2, f = from >> 2; i < n >> 2; i++) w[d + i] = sw[f + i]!;
    } else {
      for (let i = 0; i < n; i++) out[at + i] = src[from + i]!;
    }
  }

  /** Sends a PDU's segments after what was gathered: copied when small, else by reference. */
  append(segments: readonly Uint8Array[]): void {
    let bytes = 0;
    for (const s of segments) bytes += s.length;
    if (bytes <= COPY_MAX_BYTES) {
      let at = this.reserve(bytes);
      for (const s of segments) {
        this.out.set(s, at);
        at += s.length;
      }
      return;
    }
    this.flush();
    if (this.closed) return;
    this.socket.cork();
    for (const s of segments) this.socket.write(s);
    this.socket.uncork();
  }

  /** Writes what was gathered. */
  flush(): void {
    if (this.used === this.start) return;
    const chunk = this.out.subarray(this.start, this.used);
    this.start = this.used;
    if (!this.closed) this.socket.write(chunk);
  }

  /** Ends the socket after what was gathered, with `last` if given; nothing is written afterwards. */
  end(last?: Uint8Array): void {
    this.flush();
    this.closed = true;
    if (last) this.socket.end(last);
    else this.socket.end();
  }

  /** Forgets what was gathered: the socket is gone. */
  drop(): void {
    this.closed = true;
    this.start = this.used;
  }

  private readonly flushQueued = (): void => {
    this.queued = false;
    this.flush();
  };
}
