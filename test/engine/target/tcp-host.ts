/**
 * A small NVMe/TCP host for the target's tests, over node:net: ICReq /
 * ICResp, Fabrics Connect, Property Get / Set, admin and NVM commands with
 * in-capsule data or R2T → H2CData, reads collected from C2HData. It uses
 * the project's encoders and a host-side PduReader, and every wait is
 * bounded (`next()` rejects after its timeout), so no test can hang on it.
 *
 * Commands run one at a time through `command()`; `send()` and `next()` are
 * there for anything a test wants to do by hand (malformed input, order).
 */
import * as net from 'node:net';
import { PduReader, type Pdu } from '../../../src/engine/target/pdu.js';
import { concatSegments, encodeCapsuleCmd, encodeH2CData, encodeIcReq, type WireOptions } from '../../../src/engine/target/pdu-encode.js';
import { decodeDataPdu, decodeIcResp, decodeR2T, decodeTermReq, type IcRespFields, type TermReqFields } from '../../../src/engine/target/pdu-fields.js';
import { PduType } from '../../../src/engine/spec/tcp-pdu.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../../dist/index.js';
import { TcpTarget, type TcpTargetOptions } from '../../../dist/engine/target/tcp-target.js';
import { CC_ENABLE, HOST_A, SUBNQN, adminSqe, connectData, connectSqe, hostId, propertySqe } from './helpers.js';

export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
/** Property offsets (NVMe 1.4, controller registers). */
export const PROP = { CAP: 0x00, VS: 0x08, CC: 0x14, CSTS: 0x1c } as const;

/** A received PDU, copied out of the reader (its views do not outlive the next read). */
export interface RxPdu {
  type: number;
  flags: number;
  plen: number;
  header: Uint8Array;
  view: DataView;
  data: Uint8Array;
  dataDigestError: boolean;
}

/** A completion as the host sees it: status without the phase bit (SCT 10:8, SC 7:0, DNR 14). */
export interface Completion {
  dw0: number;
  dw1: number;
  sqhd: number;
  sqid: number;
  cid: number;
  status: number;
  /** Read data from the C2HData PDUs (undefined when none came). */
  data?: Uint8Array;
  /** C2HData PDUs received for it, with their flags. */
  c2h: { datao: number; datal: number; last: boolean; success: boolean }[];
  /** R2Ts the target sent for it. */
  r2ts: { ttag: number; r2to: number; r2tl: number }[];
  /** True when the response was implied by C2HData SUCCESS (no CapsuleResp). */
  impliedBySuccess: boolean;
}

export interface HostOptions {
  hdgst?: boolean;
  ddgst?: boolean;
  /** HPDA, 0's based dwords. */
  hpda?: number;
  /** Skip the ICReq (tests that send their own). */
  noIcReq?: boolean;
  /** Default timeout of `next()`, ms. */
  timeoutMs?: number;
  /** Keep sending after the target ended its side (a host that does not close at once). */
  halfOpen?: boolean;
}

export interface CommandOptions {
  /** Data to the controller. */
  data?: Uint8Array;
  /** Put `data` in the capsule (SGL Data Block, Offset) rather than wait for an R2T. */
  inCapsule?: boolean;
  /** Bytes the command reads (a Transport SGL Data Block of that length). */
  readLength?: number;
  /** Override the SGL length (mismatch tests). */
  sglLength?: number;
  /** H2CData PDU size (default: MAXH2CDATA). */
  chunk?: number;
  /** Corrupt the data digest of the first H2CData / in-capsule data. */
  badDataDigest?: boolean;
  timeoutMs?: number;
}

const SGL_IN_CAPSULE = 0x01;
const SGL_TRANSPORT = 0x5a;

/** An SQE with NSID and CDW10..15; PSDT 01b (SGLs) as a fabrics host sends. */
export function sqe(opc: number, f: { nsid?: number; cdw10?: number; cdw11?: number; cdw12?: number; cdw13?: number; cdw14?: number; cdw15?: number } = {}): Uint8Array {
  const b = adminSqe(opc, f);
  b[1] = 0x40;
  new DataView(b.buffer).setUint32(60, f.cdw15 ?? 0, true);
  return b;
}

/** Sets SGL1: an in-capsule data block (offset 0) or a transport data block of `length` bytes. */
export function setSgl(s: Uint8Array, inCapsule: boolean, length: number): void {
  const dv = new DataView(s.buffer, s.byteOffset, 64);
  dv.setBigUint64(24, 0n, true);
  dv.setUint32(32, length, true);
  s.fill(0, 36, 39);
  s[39] = inCapsule ? SGL_IN_CAPSULE : SGL_TRANSPORT;
}

export const rwSqe = (opc: number, nsid: number, slba: number, nlb: number): Uint8Array => sqe(opc, { nsid, cdw10: slba >>> 0, cdw11: Math.floor(slba / 2 ** 32), cdw12: nlb - 1 });

/** Hosts not yet closed: `destroyAll()` ends them after a test, passed or failed. */
const open = new Set<TcpHost>();

export async function destroyAll(): Promise<void> {
  const all = [...open];
  for (const h of all) h.destroy();
  await Promise.all(all.map((h) => h.closed));
}

export class TcpHost {
  readonly socket: net.Socket;
  wire: WireOptions = {};
  icResp: IcRespFields | undefined;
  cntlid = -1;
  private reader: PduReader;
  private readonly queue: RxPdu[] = [];
  private waiter: (() => void) | undefined;
  private error: Error | undefined;
  private ended = false;
  private nextCid = 1;
  readonly closed: Promise<void>;
  readonly opts: HostOptions;

  private constructor(socket: net.Socket, opts: HostOptions) {
    this.socket = socket;
    this.opts = opts;
    this.reader = new PduReader({ maxPduBytes: 16 << 20, side: 'host', pda: opts.hpda ?? 0 });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    // The target ended its side: no more PDUs will come (a half-open host may still send).
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  /** Connects a socket to the target and, unless told not to, exchanges ICReq / ICResp. */
  static async open(port: number, opts: HostOptions = {}): Promise<TcpHost> {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: opts.halfOpen === true });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const h = new TcpHost(socket, opts);
    open.add(h);
    void h.closed.then(() => open.delete(h));
    if (!opts.noIcReq) await h.initialize();
    return h;
  }

  get isClosed(): boolean {
    return this.ended;
  }

  async initialize(): Promise<IcRespFields> {
    const hdgst = this.opts.hdgst === true;
    const ddgst = this.opts.ddgst === true;
    this.send(encodeIcReq({ hpda: this.opts.hpda ?? 0, hdgst, ddgst, maxr2t: 0 }));
    const p = await this.expect(PduType.IC_RESP);
    const r = decodeIcResp(asPdu(p));
    this.icResp = r;
    this.wire = { hdgst: r.hdgst, ddgst: r.ddgst, pda: r.cpda };
    this.reader.setDigests(r.hdgst, r.ddgst);
    return r;
  }

  private onData(chunk: Buffer): void {
    if (this.error) return;
    this.reader.push(chunk);
    try {
      for (let pdu = this.reader.next(); pdu !== null; pdu = this.reader.next()) {
        const header = new Uint8Array(pdu.header);
        this.queue.push({ type: pdu.type, flags: pdu.flags, plen: pdu.plen, header, view: new DataView(header.buffer), data: new Uint8Array(pdu.data), dataDigestError: pdu.dataDigestError });
      }
    } catch (e) {
      this.error = e as Error;
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Raw bytes to the target. */
  send(bytes: Uint8Array | readonly Uint8Array[]): void {
    if (this.socket.destroyed) return;
    this.socket.write(bytes instanceof Uint8Array ? bytes : concatSegments(bytes));
  }

  /** The next PDU, or null once the target closed the connection; rejects after `timeoutMs`. */
  async next(timeoutMs = this.opts.timeoutMs ?? 3000): Promise<RxPdu | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.queue.shift();
      if (p) return p;
      if (this.error) throw this.error;
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no PDU within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.waiter = undefined;
          resolve();
        }, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** The next PDU, which must be of `type`. */
  async expect(type: number, timeoutMs?: number): Promise<RxPdu> {
    const p = await this.next(timeoutMs);
    if (!p) throw new Error(`connection closed, expected PDU type 0x${type.toString(16)}`);
    if (p.type !== type) throw new Error(`PDU type 0x${p.type.toString(16)}, expected 0x${type.toString(16)}${p.type === PduType.C2H_TERM_REQ ? ` (FES ${decodeTermReq(asPdu(p)).fes})` : ''}`);
    return p;
  }

  /** Waits for a C2HTermReq and then the close; returns the TermReq's fields. */
  async expectTermReq(timeoutMs?: number): Promise<TermReqFields> {
    const p = await this.expect(PduType.C2H_TERM_REQ, timeoutMs);
    const t = decodeTermReq(asPdu(p));
    await this.expectClosed(timeoutMs);
    return { ...t, errorData: t.errorData.slice() };
  }

  /** Waits for the target to close the connection with nothing more sent. */
  async expectClosed(timeoutMs = 3000): Promise<void> {
    const p = await this.next(timeoutMs);
    if (p !== null) throw new Error(`PDU type 0x${p.type.toString(16)} where the close was expected`);
  }

  allocCid(): number {
    const c = this.nextCid;
    this.nextCid = (this.nextCid % 0xfffe) + 1;
    return c;
  }

  /** Sends command `s` (its CID set here unless `cid` given) and runs it to its completion: data out by capsule or R2T, data in by C2HData. */
  async command(s: Uint8Array, o: CommandOptions = {}, cid = this.allocCid()): Promise<Completion> {
    const cmd = s.slice();
    new DataView(cmd.buffer).setUint16(2, cid, true);
    const data = o.data;
    const length = o.sglLength ?? data?.length ?? o.readLength ?? 0;
    if (length > 0 || data) setSgl(cmd, o.inCapsule === true && data !== undefined, length);
    let segments = encodeCapsuleCmd(cmd, o.inCapsule && data ? data : undefined, this.wire);
    if (o.badDataDigest && o.inCapsule) segments = corruptLast(segments);
    this.send(segments);
    const out: Completion = { dw0: 0, dw1: 0, sqhd: 0, sqid: 0, cid, status: -1, c2h: [], r2ts: [], impliedBySuccess: false };
    const chunks: { at: number; data: Uint8Array }[] = [];
    let corrupt = o.badDataDigest === true && !o.inCapsule;
    for (;;) {
      const p = await this.next(o.timeoutMs);
      if (!p) throw new Error(`connection closed before command ${cid} completed`);
      if (p.type === PduType.R2T) {
        const r = decodeR2T(asPdu(p));
        if (r.cccid !== cid) throw new Error(`R2T for CID ${r.cccid} while running ${cid}`);
        out.r2ts.push({ ttag: r.ttag, r2to: r.r2to, r2tl: r.r2tl });
        const src = data ?? new Uint8Array(r.r2to + r.r2tl);
        const max = o.chunk ?? this.icResp?.maxh2cdata ?? 1 << 20;
        for (let at = r.r2to; at < r.r2to + r.r2tl; at += max) {
          const n = Math.min(max, r.r2to + r.r2tl - at);
          let seg = encodeH2CData({ cccid: cid, ttag: r.ttag, datao: at, data: src.subarray(at, at + n), last: at + n === r.r2to + r.r2tl }, this.wire);
          if (corrupt) {
            seg = corruptLast(seg);
            corrupt = false;
          }
          this.send(seg);
        }
        continue;
      }
      if (p.type === PduType.C2H_DATA) {
        const d = decodeDataPdu(asPdu(p));
        if (d.cccid !== cid) throw new Error(`C2HData for CID ${d.cccid} while running ${cid}`);
        out.c2h.push({ datao: d.datao, datal: d.datal, last: d.last, success: d.success });
        chunks.push({ at: d.datao, data: p.data });
        if (d.success) {
          out.status = 0;
          out.impliedBySuccess = true;
          out.data = assemble(chunks);
          return out;
        }
        continue;
      }
      if (p.type === PduType.CAPSULE_RESP) {
        const dv = new DataView(p.header.buffer, p.header.byteOffset + 8, 16);
        out.dw0 = dv.getUint32(0, true);
        out.dw1 = dv.getUint32(4, true);
        out.sqhd = dv.getUint16(8, true);
        out.sqid = dv.getUint16(10, true);
        const rcid = dv.getUint16(12, true);
        out.status = dv.getUint16(14, true) >> 1;
        if (rcid !== cid) throw new Error(`response for CID ${rcid} while running ${cid}`);
        if (chunks.length > 0) out.data = assemble(chunks);
        return out;
      }
      if (p.type === PduType.C2H_TERM_REQ) throw new Error(`C2HTermReq FES ${decodeTermReq(asPdu(p)).fes} FEI ${decodeTermReq(asPdu(p)).fei} while running ${cid}: ${Buffer.from(p.header).toString("hex")} ${Buffer.from(p.data).toString("hex")}`);
      throw new Error(`unexpected PDU type 0x${p.type.toString(16)}`);
    }
  }

  /** Fabrics Connect: the admin queue (qid 0, CNTLID FFFFh) or I/O queue `qid` of controller `cntlid`. */
  async connect(a: { qid?: number; cntlid?: number; subnqn?: string; hostnqn?: string; hostid?: Uint8Array; kato?: number; sqsize?: number; cattr?: number } = {}): Promise<Completion> {
    const qid = a.qid ?? 0;
    const s = connectSqe({ qid, sqsize: a.sqsize ?? (qid === 0 ? 31 : 127), kato: a.kato ?? 0, cattr: a.cattr });
    const data = connectData({ hostid: a.hostid ?? hostId(), cntlid: a.cntlid ?? 0xffff, subnqn: a.subnqn ?? SUBNQN, hostnqn: a.hostnqn ?? HOST_A });
    const r = await this.command(s, { data, inCapsule: true });
    if (r.status === 0 && qid === 0) this.cntlid = r.dw0 & 0xffff;
    return r;
  }

  async propertyGet(ofst: number, size8 = false): Promise<Completion> {
    return this.command(propertySqe(0x04, ofst, size8));
  }

  async propertySet(ofst: number, value: number): Promise<Completion> {
    return this.command(propertySqe(0x00, ofst, false, BigInt(value)));
  }

  /** CC.EN = 1, then CSTS until RDY (bounded). */
  async enable(): Promise<void> {
    const r = await this.propertySet(PROP.CC, CC_ENABLE);
    if (r.status !== 0) throw new Error(`Property Set CC: status 0x${r.status.toString(16)}`);
    for (let i = 0; i < 50; i++) {
      const c = await this.propertyGet(PROP.CSTS);
      if (c.status === 0 && (c.dw0 & 1) === 1) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('CSTS.RDY never set');
  }

  /** Admin queue bring-up: Connect, CC.EN, CSTS.RDY. Returns the CNTLID. */
  async adminUp(a: Parameters<TcpHost['connect']>[0] = {}): Promise<number> {
    const r = await this.connect({ ...a, qid: 0 });
    if (r.status !== 0) throw new Error(`admin Connect: status 0x${r.status.toString(16)}`);
    await this.enable();
    return this.cntlid;
  }

  async identify(cns: number, nsid = 0): Promise<Completion> {
    return this.command(sqe(0x06, { nsid, cdw10: cns }), { readLength: 4096 });
  }

  write(nsid: number, slba: number, nlb: number, data: Uint8Array, o: CommandOptions = {}): Promise<Completion> {
    return this.command(rwSqe(0x01, nsid, slba, nlb), { ...o, data });
  }

  read(nsid: number, slba: number, nlb: number, lbaSize: number, o: CommandOptions = {}): Promise<Completion> {
    return this.command(rwSqe(0x02, nsid, slba, nlb), { readLength: nlb * lbaSize, ...o });
  }

  flush(nsid: number): Promise<Completion> {
    return this.command(sqe(0x00, { nsid }));
  }

  writeZeroes(nsid: number, slba: number, nlb: number): Promise<Completion> {
    return this.command(rwSqe(0x08, nsid, slba, nlb));
  }

  /** Dataset Management, Deallocate (AD) of `ranges`. */
  deallocate(nsid: number, ranges: { slba: number; nlb: number }[], o: CommandOptions = {}): Promise<Completion> {
    const d = Buffer.alloc(ranges.length * 16);
    ranges.forEach((r, i) => {
      d.writeUInt32LE(r.nlb, i * 16 + 4);
      d.writeBigUInt64LE(BigInt(r.slba), i * 16 + 8);
    });
    return this.command(sqe(0x09, { nsid, cdw10: ranges.length - 1, cdw11: 1 << 2 }), { inCapsule: true, ...o, data: new Uint8Array(d) });
  }

  /** Destroys the socket at once (a host that vanishes). */
  destroy(): void {
    this.socket.destroy();
  }

  async close(): Promise<void> {
    this.socket.end();
    this.socket.destroy();
    await this.closed;
  }
}

/** A received PDU in the shape the decoders take. */
export function asPdu(p: RxPdu): Pdu {
  return { type: p.type as Pdu['type'], flags: p.flags, hlen: p.header.length, pdo: 0, plen: p.plen, header: p.header, view: p.view, data: p.data, dataDigestError: p.dataDigestError };
}

function assemble(chunks: { at: number; data: Uint8Array }[]): Uint8Array {
  const end = Math.max(...chunks.map((c) => c.at + c.data.length));
  const out = new Uint8Array(end);
  for (const c of chunks) out.set(c.data, c.at);
  return out;
}

/** The PDU with its last 4 bytes (its data digest) flipped. */
function corruptLast(segments: Uint8Array[]): Uint8Array[] {
  const all = concatSegments(segments);
  all[all.length - 1]! ^= 0xff;
  return [all];
}

/** A block pattern that names its LBA and a seed, so a misplaced block is seen. */
export function pattern(slba: number, nlb: number, lbaSize: number, seed: number): Uint8Array {
  const out = new Uint8Array(nlb * lbaSize);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nlb; b++) {
    for (let i = 0; i < lbaSize; i += 8) {
      dv.setUint32(b * lbaSize + i, slba + b, true);
      dv.setUint32(b * lbaSize + i + 4, (seed * 2654435761 + i) >>> 0, true);
    }
  }
  return out;
}

// ---- a live target for the tests ----------------------------------------------


/** NSIDs of the namespaces `startTarget` makes: 4096-byte memory, 512-byte memory, 4096-byte file. */
export const NS = { MEM4K: 1, MEM512: 2, FILE: 3 } as const;
export const LBA = { [NS.MEM4K]: 4096, [NS.MEM512]: 512, [NS.FILE]: 4096 } as Record<number, number>;

export interface LiveTarget {
  engine: Engine;
  target: TcpTarget;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/** A real Engine (one worker) with three namespaces and a TcpTarget on a free loopback port. */
export async function startTarget(opts: Partial<TcpTargetOptions> = {}, engineOpts: { ioTimeoutMs?: number } = {}): Promise<LiveTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-tcp-'));
  const engine = await Engine.open({
    namespaces: [
      { backend: 'memory', size: 8 << 20, nsid: NS.MEM4K },
      { backend: 'memory', size: 4 << 20, lbaSize: 512, nsid: NS.MEM512 },
      { backend: 'file', path: path.join(dir, 'ns3.img'), size: 4 << 20, nsid: NS.FILE },
    ],
    workers: 1,
    ...engineOpts,
  });
  let target: TcpTarget;
  try {
    target = await TcpTarget.listen(engine, { port: 0, subnqn: SUBNQN, allowAnyHost: true, ...opts });
  } catch (e) {
    await engine.close();
    throw e;
  }
  return {
    engine,
    target,
    port: target.address.port,
    dir,
    async stop() {
      await target.close();
      await engine.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `cond` every 10 ms up to `ms`; false when it never held. */
export async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
