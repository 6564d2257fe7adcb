// Length-prefixed frames for the plain TCP request/response exchange (the Node TCP limit the NVMe/TCP
// target is compared with). A frame starts with its total length (u32 LE) and a tag (u32 LE, the slot),
// then the rest of its header and its data:
//   read:  request 72 bytes (header only)              response 24-byte header + 4096 data
//   write: request 72-byte header + 4096 data          response 24 bytes
// the sizes of an NVMe/TCP CapsuleCmd and of a C2HData or CapsuleResp PDU header.
export const REQUEST_HEADER = 72;
export const RESPONSE_HEADER = 24;

/**
 * Whole frames out of a byte stream arriving in chunks of any size, without copying a frame that lies in
 * one chunk; a frame split across chunks is assembled in a scratch buffer (as the PDU reader does).
 * `next()` returns a view valid until the following call, or null.
 */
export class FrameReader {
  constructor(maxFrame) {
    this.chunks = [];
    this.first = 0;
    this.head = 0;
    this.buffered = 0;
    this.scratch = new Uint8Array(maxFrame);
    this.lenBuf = new Uint8Array(4);
    this.lenView = new DataView(this.lenBuf.buffer);
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next() {
    if (this.buffered < 8) return null;
    let c = this.chunks[this.first];
    let len;
    if (c.length - this.head >= 4) {
      len = c[this.head] | (c[this.head + 1] << 8) | (c[this.head + 2] << 16) | (c[this.head + 3] << 24);
      len >>>= 0;
    } else {
      this.copyOut(this.lenBuf, 4);
      len = this.lenView.getUint32(0, true);
    }
    if (len < 8 || len > this.scratch.length) throw new Error(`frame of ${len} bytes`);
    if (this.buffered < len) return null;
    let out;
    if (c.length - this.head >= len) {
      out = c.subarray(this.head, this.head + len);
    } else {
      this.copyOut(this.scratch, len);
      out = this.scratch.subarray(0, len);
    }
    this.consume(len);
    return out;
  }

  copyOut(dst, n) {
    let at = 0;
    for (let i = this.first, off = this.head; at < n; i++, off = 0) {
      const c = this.chunks[i];
      const k = Math.min(c.length - off, n - at);
      dst.set(c.subarray(off, off + k), at);
      at += k;
    }
  }

  consume(n) {
    this.buffered -= n;
    while (n > 0) {
      const left = this.chunks[this.first].length - this.head;
      if (left > n) {
        this.head += n;
        return;
      }
      n -= left;
      this.first++;
      this.head = 0;
    }
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first > 64) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}

/** Frame tag (slot) of a frame. */
export const frameTag = (f) => (f[4] | (f[5] << 8) | (f[6] << 16) | (f[7] << 24)) >>> 0;
