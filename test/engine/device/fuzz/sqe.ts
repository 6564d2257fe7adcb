/**
 * SQE bytes for the fuzz tests, little endian with exact 64-bit fields:
 * written out from the spec, not taken from src/engine/spec.
 */


// ------------------------------------------------------------------ SQE encoding (little endian, 64-bit fields exact)

interface SqeFields {
  opcode: number;
  fuse: number;
  psdt: number;
  nsid: number;
  cdw2: number;
  cdw3: number;
  mptr: bigint;
  prp1: bigint;
  prp2: bigint;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
}

export function encode(f: SqeFields): Uint8Array {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, ((f.opcode & 0xff) | ((f.fuse & 3) << 8) | ((f.psdt & 3) << 14)) >>> 0, true);
  dv.setUint32(4, f.nsid >>> 0, true);
  dv.setUint32(8, f.cdw2 >>> 0, true);
  dv.setUint32(12, f.cdw3 >>> 0, true);
  dv.setBigUint64(16, f.mptr, true);
  dv.setBigUint64(24, f.prp1, true);
  dv.setBigUint64(32, f.prp2, true);
  [f.cdw10, f.cdw11, f.cdw12, f.cdw13, f.cdw14, f.cdw15].forEach((v, i) => dv.setUint32(40 + 4 * i, v >>> 0, true));
  return b;
}

interface Decoded {
  opcode: number;
  fuse: number;
  psdt: number;
  nsid: number;
  prp1: bigint;
  prp2: bigint;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
}

export function decode(b: Uint8Array): Decoded {
  const dv = new DataView(b.buffer, b.byteOffset, 64);
  const cdw0 = dv.getUint32(0, true);
  return {
    opcode: cdw0 & 0xff,
    fuse: (cdw0 >>> 8) & 3,
    psdt: (cdw0 >>> 14) & 3,
    nsid: dv.getUint32(4, true),
    prp1: dv.getBigUint64(24, true),
    prp2: dv.getBigUint64(32, true),
    cdw10: dv.getUint32(40, true),
    cdw11: dv.getUint32(44, true),
    cdw12: dv.getUint32(48, true),
    cdw13: dv.getUint32(52, true),
  };
}
