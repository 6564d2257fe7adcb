/**
 * The host's receive fast path: the PDUs of every command (CapsuleResp,
 * C2HData, R2T) in the form nvmq's and Linux's targets send them without
 * digests are taken straight out of the socket's chunks, with no object per
 * PDU, and C2HData is copied once, from the chunk into the command's
 * buffer, even when it spans chunks. Its header alone decides where its
 * data goes, so the data is never held back to be reassembled first.
 *
 * Anything else (ICResp, TermReq, a header in any other form, digests) goes
 * to the connection's PduReader from its first byte on, which checks it
 * (and reports the error) as the binding asks; the fast path takes over
 * again once the reader has nothing left. A header is taken only when every
 * check the reader makes holds for it, so the two never disagree.
 */
import { C2HDataPdu, CapsuleRespPdu, PduFlag, PduType, R2TPdu, TcpCommonHeader } from '../../spec/tcp-pdu.js';

/** Every PDU the fast path takes has a 24-byte header. */
const HLEN = 24;
const CH_SIZE = TcpCommonHeader.$size;
const DATA_FLAGS = PduFlag.LAST_PDU | PduFlag.SUCCESS;
const NO_DATA: Uint8Array = new Uint8Array(0);

/** The little-endian 32-bit field at `at` of `b`. */
export const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
export const u16 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);

/** What the fast path hands on. Each method may throw a PduError (the connection is over then). */
export interface ReceiveSink {
  /** A CapsuleResp, its header at `at` of `h`. */
  onResponse(h: Uint8Array, at: number): void;
  /** An R2T, its header at `at` of `h`. */
  onR2T(h: Uint8Array, at: number): void;
  /** A C2HData's header at `at` of `h`: where its data goes (checked against the command). */
  dataDest(h: Uint8Array, at: number): Uint8Array;
  /** The C2HData of command `cid` is in; `flags` its header's. */
  dataEnd(cid: number, flags: number): void;
  /** Bytes the fast path does not take, from a PDU's first byte: for the PduReader (a view, valid during the call only). */
  slow(bytes: Uint8Array): void;
  /** The connection ended: nothing more is read. */
  readonly stopped: boolean;
}

/**
 * Whether the PDU whose first `n` (>= 8) header bytes are at `at` of `h` is
 * one the fast path takes: the reader's checks of the common header (and,
 * once all 24 bytes are in, of DATAL / R2TL) hold for it, without digests.
 */
function takes(h: Uint8Array, at: number, n: number, maxPduBytes: number): boolean {
  const type = h[at]!;
  const flags = h[at + 1]!;
  if (h[at + 2] !== HLEN) return false;
  const pdo = h[at + 3]!;
  const plen = u32(h, at + 4);
  if (type === PduType.CAPSULE_RESP) return flags === 0 && pdo === 0 && plen === HLEN;
  if (type === PduType.R2T) return flags === 0 && pdo === 0 && plen === HLEN && (n < HLEN || u32(h, at + R2TPdu.R2TL.offset) !== 0);
  if (type !== PduType.C2H_DATA) return false;
  // SUCCESS only with LAST_PDU; the data right after the header; DATAL all of it.
  if ((flags & ~DATA_FLAGS) !== 0 || flags === PduFlag.SUCCESS || pdo !== HLEN || plen <= HLEN || plen > maxPduBytes) return false;
  return n < HLEN || u32(h, at + C2HDataPdu.DATAL.offset) === plen - HLEN;
}

export class FastReceiver {
  /** A header split between chunks, while it is assembled. */
  private readonly hdr = new Uint8Array(HLEN);
  private hdrLen = 0;
  /** A C2HData's data being copied: where, and how much is still to come. */
  private dest = NO_DATA;
  private destAt = 0;
  private left = 0;
  private cid = 0;
  private flags = 0;

  constructor(
    private readonly sink: ReceiveSink,
    private readonly maxPduBytes: number,
  ) {}

  /** Takes the first `n` bytes of `c`; what it keeps is copied (`c` may be reused after the call). */
  push(c: Uint8Array, n: number): void {
    let at = 0;
    while (at < n && !this.sink.stopped) {
      if (this.left > 0) {
        const k = Math.min(this.left, n - at);
        // A plain Uint8Array's subarray and set(): no Buffer made, no argument checks of Buffer.copy().
        this.dest.set(c.subarray(at, at + k), this.destAt);
        at += k;
        this.destAt += k;
        this.left -= k;
        if (this.left === 0) {
          this.dest = NO_DATA;
          this.sink.dataEnd(this.cid, this.flags);
        }
        continue;
      }
      let h: Uint8Array = c;
      let ho = at;
      if (this.hdrLen === 0 && n - at >= HLEN) {
        if (!takes(c, at, HLEN, this.maxPduBytes)) return this.sink.slow(c.subarray(at, n));
        at += HLEN;
      } else {
        const k = Math.min(HLEN - this.hdrLen, n - at);
        for (let i = 0; i < k; i++) this.hdr[this.hdrLen + i] = c[at + i]!;
        this.hdrLen += k;
        at += k;
        if (this.hdrLen >= CH_SIZE && !takes(this.hdr, 0, this.hdrLen, this.maxPduBytes)) {
          const held = this.hdr.slice(0, this.hdrLen);
          this.hdrLen = 0;
          this.sink.slow(held);
          if (at < n) this.sink.slow(c.subarray(at, n));
          return;
        }
        if (this.hdrLen < HLEN) return;
        this.hdrLen = 0;
        h = this.hdr;
        ho = 0;
      }
      const type = h[ho]!;
      if (type === PduType.CAPSULE_RESP) {
        this.sink.onResponse(h, ho);
      } else if (type === PduType.R2T) {
        this.sink.onR2T(h, ho);
      } else {
        this.dest = this.sink.dataDest(h, ho);
        this.destAt = u32(h, ho + C2HDataPdu.DATAO.offset);
        this.left = u32(h, ho + C2HDataPdu.DATAL.offset);
        this.cid = u16(h, ho + C2HDataPdu.CCCID.offset);
        this.flags = h[ho + 1]!;
      }
    }
  }
}

/** Where a CapsuleResp's CQE starts. */
export const CQE_AT = CapsuleRespPdu.CQE.offset;
