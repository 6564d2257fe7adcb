/**
 * The send side of an NVMe/TCP connection: PDUs out on its socket, a
 * turn's worth in one writev (the socket is corked at the first PDU of an
 * event-loop turn and uncorked at its end: at depth, one system call for
 * many responses), and reading held back while the host does not read what
 * it was sent (past SEND_BACKLOG_BYTES unsent, until the socket drains), so
 * a host that only sends cannot grow the target's memory.
 */
import type { Socket } from 'node:net';
import { SEND_BACKLOG_BYTES } from './tcp-env.js';

export class TcpSender {
  private corked = false;
  private throttled = false;

  /** `reading()`: whether the connection still reads the host (it resumes reading after a drain only then). */
  constructor(
    private readonly socket: Socket,
    private readonly reading: () => boolean,
  ) {}

  /** Writes a PDU's segments; `done` once the socket is done with them. Returns the bytes. */
  send(segments: readonly Uint8Array[], done?: () => void): number {
    const s = this.socket;
    if (!this.corked) {
      this.corked = true;
      s.cork();
      setImmediate(this.uncork);
    }
    let bytes = 0;
    for (let i = 0; i < segments.length; i++) {
      bytes += segments[i]!.length;
      s.write(segments[i]!, i === segments.length - 1 ? done : undefined);
    }
    if (s.writableLength > SEND_BACKLOG_BYTES && !this.throttled && this.reading()) {
      this.throttled = true;
      s.pause();
      s.once('drain', () => {
        this.throttled = false;
        if (this.reading()) s.resume();
      });
    }
    return bytes;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
}
