// A minimal NVMe/TCP host in plain JavaScript over node:net, built on nvmq's own wire layer (the compiled
// encoders and the PDU reader in host mode, dist/engine/target/). Enough to bring up a controller and run
// 4 KiB reads and writes in a closed loop: ICReq / ICResp, admin Connect, Property Set CC.EN, Property Get
// CSTS until RDY, I/O Connect, then Read (data back in C2HData) and Write (data in the capsule).
//
//   const host = await NvmeTcpHost.connect({ host, port, subnqn, digests, queueSize });
//   host.io.onComplete = (cid, status) => ...;
//   host.io.send(...host.io.capsule(cid).patch(lba));   // see IoCapsule
//   host.close();
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { PduReader } from '../../dist/engine/target/pdu.js';
import { capsuleEntry, decodeIcResp, decodeTermReq } from '../../dist/engine/target/pdu-fields.js';
import { encodeCapsuleCmd, encodeIcReq } from '../../dist/engine/target/pdu-encode.js';
import { CapsuleCmdPdu, PduFlag, PduType, C2HDataPdu } from '../../dist/engine/spec/tcp-pdu.js';
import { ConnectData, ConnectSqe, FABRICS_OPCODE, FabricsSqe, FabricsType, PropertySqe, Property, SGL_ID_IN_CAPSULE, SGL_ID_TRANSPORT, SglDescriptor, CONNECT_DATA_SIZE, CNTLID_DYNAMIC } from '../../dist/engine/spec/fabrics.js';
import { Cqe, Sqe, SQE_SIZE } from '../../dist/engine/spec/command.js';
import { Cc, Csts } from '../../dist/engine/spec/registers.js';
import { NvmOpcode } from '../../dist/engine/spec/opcodes.js';
import { readField, writeField } from '../../dist/engine/spec/layout.js';
import { crc32c } from '../../dist/engine/shared/crc32c.js';

export const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:6e766d71-6265-6e63-6800-746370000001';
/** PSDT 01b: SGLs for the data (what a fabrics host sets in byte 1). */
const PSDT_SGL = 0x40;
const SLBA_AT = CapsuleCmdPdu.SQE.offset + Sqe.CDW10.offset;
const HLEN = CapsuleCmdPdu.$size;

const dv = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const u16 = (b, at) => b[at] | (b[at + 1] << 8);

function setSgl(sqe, sglId, length) {
  const at = FabricsSqe.SGL1.offset;
  writeField(dv(sqe), at, SglDescriptor.LENGTH, length);
  sqe[at + SglDescriptor.SGL_ID.offset] = sglId;
}

/**
 * One NVMe/TCP connection (one queue): the reader, completions by CID, the bring-up's awaited commands.
 * The socket reads into one buffer it reuses (openSocket: `onread`), as a kernel host receives into pages
 * it owns: no allocation per read; the reader copies a partial PDU out of it (`reusedChunks`).
 */
class Queue {
  constructor(socket, digests) {
    this.socket = socket;
    this.digests = digests;
    this.wire = { hdgst: digests, ddgst: digests, pda: 0 };
    this.reader = new PduReader({ maxPduBytes: (128 << 10) + 1024, side: 'host', reusedChunks: true });
    this.waiting = new Map();
    this.icResp = null;
    this.failure = null;
    /** The fast path's completion callback: (cid, status, dw0). */
    this.onComplete = null;
    socket.setNoDelay(true);
    socket.onChunk = (chunk) => this.onData(chunk);
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('the target closed the connection')));
  }

  fail(e) {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    this.onFailure?.(e);
  }

  onData(chunk) {
    this.reader.push(chunk);
    try {
      for (let pdu = this.reader.next(); pdu !== null; pdu = this.reader.next()) {
        switch (pdu.type) {
          case PduType.CAPSULE_RESP: {
            // The CQE's fields read by bytes: no DataView per response.
            const cqe = capsuleEntry(pdu);
            const sf = (u16(cqe, Cqe.SF.offset) >>> Cqe.SF.shift) & ((1 << Cqe.SF.bits) - 1);
            this.complete(u16(cqe, Cqe.CID.offset), sf, (u16(cqe, Cqe.DW0.offset) | (u16(cqe, Cqe.DW0.offset + 2) << 16)) >>> 0);
            break;
          }
          case PduType.C2H_DATA: {
            // The data is a view of the received chunk: nothing is copied (the limit's client copies none either).
            if (pdu.flags & PduFlag.SUCCESS) this.complete(readField(pdu.view, 0, C2HDataPdu.CCCID), 0, 0);
            else if (this.waiting.size > 0) {
              const w = this.waiting.get(readField(pdu.view, 0, C2HDataPdu.CCCID));
              if (w) w.data = pdu.data.slice();
            }
            break;
          }
          case PduType.IC_RESP: {
            this.icResp = decodeIcResp(pdu);
            this.reader.setDigests(this.icResp.hdgst, this.icResp.ddgst);
            const w = this.waiting.get(-1);
            this.waiting.delete(-1);
            w?.resolve(this.icResp);
            break;
          }
          case PduType.C2H_TERM_REQ: {
            const t = decodeTermReq(pdu);
            throw new Error(`C2HTermReq: FES ${t.fes}, FEI ${t.fei}`);
          }
          default:
            throw new Error(`unexpected PDU type 0x${pdu.type.toString(16)}`);
        }
      }
    } catch (e) {
      this.fail(e);
      this.socket.destroy();
    }
  }

  complete(cid, status, dw0) {
    const w = this.waiting.size > 0 ? this.waiting.get(cid) : undefined;
    if (w) {
      this.waiting.delete(cid);
      w.resolve({ status, dw0, data: w.data });
    } else this.onComplete(cid, status, dw0);
  }

  async initialize() {
    const p = new Promise((resolve, reject) => this.waiting.set(-1, { resolve, reject }));
    this.socket.write(encodeIcReq({ hpda: 0, hdgst: this.digests, ddgst: this.digests, maxr2t: 0 }));
    const r = await p;
    if (r.hdgst !== this.digests || r.ddgst !== this.digests) throw new Error('the target did not grant the digests asked for');
  }

  /** One command of the bring-up, awaited; its status must be success. */
  async command(sqe, data, what) {
    const cid = readField(dv(sqe), 0, Sqe.CID);
    const p = new Promise((resolve, reject) => this.waiting.set(cid, { resolve, reject, data: undefined }));
    this.write(encodeCapsuleCmd(sqe, data, this.wire));
    const r = await p;
    if (r.status !== 0) throw new Error(`${what} failed: status 0x${r.status.toString(16)}`);
    return r;
  }

  /** Segments of one PDU (or of several, concatenated) in one corked write: a single writev. */
  write(segments) {
    const s = this.socket;
    s.cork();
    for (let i = 0; i < segments.length; i++) s.write(segments[i]);
    s.uncork();
  }
}

function connectSqe(cid, qid, sqsize, cattr) {
  const sqe = new Uint8Array(SQE_SIZE);
  const v = dv(sqe);
  writeField(v, 0, FabricsSqe.OPC, FABRICS_OPCODE);
  sqe[1] = PSDT_SGL;
  writeField(v, 0, FabricsSqe.CID, cid);
  writeField(v, 0, FabricsSqe.FCTYPE, FabricsType.CONNECT);
  setSgl(sqe, SGL_ID_IN_CAPSULE, CONNECT_DATA_SIZE);
  writeField(v, 0, ConnectSqe.QID, qid);
  writeField(v, 0, ConnectSqe.SQSIZE, sqsize);
  writeField(v, 0, ConnectSqe.CATTR, cattr);
  writeField(v, 0, ConnectSqe.KATO, 0);
  return sqe;
}

function connectData(hostid, cntlid, subnqn) {
  const d = new Uint8Array(CONNECT_DATA_SIZE);
  d.set(hostid, ConnectData.HOSTID.offset);
  writeField(dv(d), 0, ConnectData.CNTLID, cntlid);
  d.set(new TextEncoder().encode(subnqn), ConnectData.SUBNQN.offset);
  d.set(new TextEncoder().encode(HOSTNQN), ConnectData.HOSTNQN.offset);
  return d;
}

function propertySqe(cid, fctype, prop, value = 0) {
  const sqe = new Uint8Array(SQE_SIZE);
  const v = dv(sqe);
  writeField(v, 0, FabricsSqe.OPC, FABRICS_OPCODE);
  writeField(v, 0, FabricsSqe.CID, cid);
  writeField(v, 0, FabricsSqe.FCTYPE, fctype);
  writeField(v, 0, PropertySqe.ATTRIB, prop.size === 8 ? 1 : 0);
  writeField(v, 0, PropertySqe.OFST, prop.offset);
  v.setUint32(PropertySqe.VALUE.offset, value, true);
  return sqe;
}

async function openSocket(host, port) {
  const buffer = Buffer.allocUnsafeSlow(256 << 10);
  // With onread no 'data' event comes by itself: it is emitted once the queue has handled the chunk, for
  // callers that act then (client.mjs sends what the completions issued).
  const callback = (n) => {
    const chunk = new Uint8Array(buffer.buffer, buffer.byteOffset, n);
    socket.onChunk(chunk);
    socket.emit('data', chunk);
  };
  const socket = net.connect({ host, port, noDelay: true, onread: { buffer, callback } });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/**
 * A prepared I/O command capsule of one slot (its CID fixed): the PDU's segments are encoded once, and
 * each command patches the SLBA in the header (and the header digest when negotiated). Write data is the
 * slot's own constant buffer, so its data digest is computed once.
 */
class IoCapsule {
  constructor(cid, write, nsid, wire, data) {
    const sqe = new Uint8Array(SQE_SIZE);
    const v = dv(sqe);
    writeField(v, 0, Sqe.OPC, write ? NvmOpcode.WRITE : NvmOpcode.READ);
    sqe[1] = PSDT_SGL;
    writeField(v, 0, Sqe.CID, cid);
    writeField(v, 0, Sqe.NSID, nsid);
    writeField(v, 0, Sqe.CDW12, 0); // NLB 0's based: one block of 4 KiB
    setSgl(sqe, write ? SGL_ID_IN_CAPSULE : SGL_ID_TRANSPORT, data.length);
    this.segments = write ? encodeCapsuleCmd(sqe, data, wire) : encodeCapsuleCmd(sqe, undefined, wire);
    this.header = this.segments[0];
    this.view = dv(this.header);
    this.hdgst = wire.hdgst === true;
  }

  patch(lba) {
    this.view.setUint32(SLBA_AT, lba >>> 0, true);
    this.view.setUint32(SLBA_AT + 4, Math.floor(lba / 0x100000000), true);
    if (this.hdgst) this.view.setUint32(HLEN, crc32c(this.header.subarray(0, HLEN)), true);
    return this.segments;
  }
}

export class NvmeTcpHost {
  static async connect({ host = '127.0.0.1', port, subnqn, digests = false, queueSize = 128, sqFlowControl = true }) {
    const hostid = randomBytes(16);
    hostid[0] |= 1;
    const admin = new Queue(await openSocket(host, port), digests);
    await admin.initialize();
    let cid = 0;
    const c = await admin.command(connectSqe(cid++, 0, 31, 0), connectData(hostid, CNTLID_DYNAMIC, subnqn), 'admin Connect');
    const cntlid = c.dw0 & 0xffff;
    const cc = (1 << Cc.EN.shift) | (6 << Cc.IOSQES.shift) | (4 << Cc.IOCQES.shift);
    await admin.command(propertySqe(cid++, FabricsType.PROPERTY_SET, Property.CC, cc), undefined, 'Property Set CC');
    for (let i = 0; ; i++) {
      const r = await admin.command(propertySqe(cid++, FabricsType.PROPERTY_GET, Property.CSTS), undefined, 'Property Get CSTS');
      if ((r.dw0 >>> Csts.RDY.shift) & 1) break;
      if (i > 1000) throw new Error('CSTS.RDY never came');
      await new Promise((r) => setTimeout(r, 1));
    }
    const io = new Queue(await openSocket(host, port), digests);
    await io.initialize();
    const cattr = sqFlowControl ? 0 : 1 << 2;
    await io.command(connectSqe(0, 1, queueSize - 1, cattr), connectData(hostid, cntlid, subnqn), 'I/O Connect');
    return new NvmeTcpHost(admin, io, cntlid);
  }

  constructor(admin, io, cntlid) {
    this.admin = admin;
    this.io = io;
    this.cntlid = cntlid;
  }

  /** The prepared capsule of slot `cid` for 4 KiB reads or writes of namespace `nsid`. */
  capsule(cid, write, nsid, data) {
    return new IoCapsule(cid, write, nsid, this.io.wire, data);
  }

  close() {
    this.io.socket.destroy();
    this.admin.socket.destroy();
  }
}
