#!/usr/bin/env node
// The NVMe/TCP target's PDU fuzzer: random and mutated PDU streams against a live TcpTarget (a real Engine
// behind it, memory and file namespaces) over loopback sockets, in this process.
//   node bench/tcp-fuzz.mjs [--pdus 100000] [--seed S] [--lanes 4] [--io-threads N (default: the target's; 0: all on the main thread)]      (TCP_FUZZ_DEBUG=1: print what a clean
//   connection left unanswered)
// Needs `npm run build` (it runs dist/). Reports PDUs sent, connections, C2HTermReq FES counts, commands
// completed, RSS; checks that the process never throws, that every clean connection answers all its
// commands within a bound, that every connection the fuzzer leaves is gone from the target within a bound,
// that a probe host is served throughout, that sentinel blocks (the upper half of each namespace, never
// addressed) never change, that no controller or DMA buffer is left at the end, and that RSS stays bounded.
// Exit status 1 on a failure, with the seed to replay it. The test suite runs a short seeded run
// (test/engine/target/tcp-fuzz.test.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine } from '../dist/index.js';
import { TcpTarget } from '../dist/engine/target/tcp-target.js';
import { PduReader } from '../dist/engine/target/pdu.js';
import { crc32c } from '../dist/engine/shared/crc32c.js';
import { concatSegments, encodeCapsuleCmd, encodeH2CData, encodeH2CTermReq, encodeIcReq } from '../dist/engine/target/pdu-encode.js';

const SUBNQN = 'nqn.2026-12.io.nvmq:fuzz';
const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
const CC_ENABLE = 1 | (6 << 16) | (4 << 20);
/**
 * Namespaces: NSID → [LBA size, blocks]. The lower half of each, but its last PROBE_BLOCKS blocks, is the
 * fuzz region; those blocks are the probe host's own; the upper half is sentinels.
 */
const NAMESPACES = { 1: [4096, 2048], 2: [512, 8192], 3: [4096, 1024] };
const PROBE_BLOCKS = 16;
/** Blocks from LBA 0 that fuzzed commands may address. */
const fuzzable = (nsid) => NAMESPACES[nsid][1] / 2 - PROBE_BLOCKS;
const BOUND_MS = 3000;
/** What each lane is doing (for a hang's diagnosis). */
export const laneState = [];

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    bytes: (n) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
      return b;
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sqe(opc, f = {}) {
  const b = Buffer.alloc(64);
  b[0] = opc;
  b[1] = 0x40;
  b.writeUInt16LE(f.cid ?? 0, 2);
  b.writeUInt32LE(f.nsid ?? 0, 4);
  for (const [i, k] of ['cdw10', 'cdw11', 'cdw12', 'cdw13', 'cdw14', 'cdw15'].entries()) b.writeUInt32LE((f[k] ?? 0) >>> 0, 40 + 4 * i);
  return b;
}

function setSgl(s, inCapsule, length) {
  s.writeBigUInt64LE(0n, 24);
  s.writeUInt32LE(length >>> 0, 32);
  s.fill(0, 36, 39);
  s[39] = inCapsule ? 0x01 : 0x5a;
}

function connectCmd(cid, qid, sqsize, kato, cattr) {
  const b = Buffer.alloc(64);
  b[0] = 0x7f;
  b.writeUInt16LE(cid, 2);
  b[4] = 0x01;
  setSgl(b, true, 1024);
  b.writeUInt16LE(qid, 42);
  b.writeUInt16LE(sqsize, 44);
  b[46] = cattr;
  b.writeUInt32LE(kato, 48);
  return b;
}

function connectData(hostid, cntlid, subnqn, hostnqn) {
  const b = Buffer.alloc(1024);
  Buffer.from(hostid).copy(b, 0);
  b.writeUInt16LE(cntlid, 16);
  b.write(subnqn, 256);
  b.write(hostnqn, 512);
  return b;
}

function propertyCmd(cid, fctype, ofst, size8, value) {
  const b = Buffer.alloc(64);
  b[0] = 0x7f;
  b.writeUInt16LE(cid, 2);
  b[4] = fctype;
  b[40] = size8 ? 1 : 0;
  b.writeUInt32LE(ofst, 44);
  b.writeBigUInt64LE(BigInt(value), 48);
  return b;
}

/** A block pattern naming NSID, LBA and a tag. */
function blocks(nsid, slba, nlb, tag) {
  const lba = NAMESPACES[nsid][0];
  const out = Buffer.alloc(nlb * lba);
  for (let b = 0; b < nlb; b++) for (let i = 0; i < lba; i += 16) {
    out.writeUInt32LE(nsid, b * lba + i);
    out.writeUInt32LE((slba + b) >>> 0, b * lba + i + 4);
    out.writeUInt32LE(tag >>> 0, b * lba + i + 8);
    out.writeUInt32LE(0x5e171e1, b * lba + i + 12);
  }
  return out;
}

/**
 * Keeps a capsule from writing outside the fuzz regions whatever a mutation did to it: a write-like NVM
 * opcode has its range folded into the fuzz region (or its NSID made invalid); an opcode the fuzzer does
 * not know to be harmless gets an invalid NSID. Admin queues get their commands as they are (their
 * controller answers them; none writes media).
 */
function guard(pdu, ioQueue) {
  if (!ioQueue || pdu.length < 72 || pdu[0] !== 0x04 || pdu[2] !== 72) return;
  // A header digest that was right stays right (the change is the fuzzer's, not a mutation).
  const dv = new DataView(pdu.buffer, pdu.byteOffset, pdu.length);
  const digested = (pdu[1] & 1) === 1 && pdu.length >= 76 && dv.getUint32(72, true) === crc32c(pdu.subarray(0, 72));
  guardSqe(Buffer.from(pdu.buffer, pdu.byteOffset + 8, 64));
  if (digested) dv.setUint32(72, crc32c(pdu.subarray(0, 72)), true);
}

function guardSqe(s) {
  const opc = s[0];
  const nsid = s.readUInt32LE(4);
  if ([0x00, 0x02, 0x05, 0x0c, 0x7f].includes(opc)) return;
  if ([0x01, 0x04, 0x08].includes(opc) && NAMESPACES[nsid]) {
    const half = fuzzable(nsid);
    const nlb = (s.readUInt32LE(48) & 0xffff) + 1;
    if (nlb > half) return s.writeUInt32LE(0xfffffffe, 4);
    const slba = Number(s.readBigUInt64LE(40) % BigInt(half - nlb + 1));
    s.writeBigUInt64LE(BigInt(slba), 40);
    return;
  }
  if (opc === 0x09 && NAMESPACES[nsid]) return; // its ranges are the fuzzer's own (data of DSM is never mutated)
  s.writeUInt32LE(0xfffffffe, 4);
}

/** Mutations of one PDU's bytes (a copy). `dataSafe` false: leave the data area alone (DSM ranges). */
function mutate(r, pdu, dataSafe) {
  const b = Uint8Array.from(pdu);
  const hlen = Math.min(b.length, b[2] || 8);
  switch (r.int(0, 9)) {
    case 0: // a bit of the header
      b[r.int(0, hlen - 1)] ^= 1 << r.int(0, 7);
      return { kind: 'header-bit', out: [b] };
    case 1: // a byte of the header
      b[r.int(0, hlen - 1)] = r.int(0, 255);
      return { kind: 'header-byte', out: [b] };
    case 2: { // PLEN
      const dv = new DataView(b.buffer);
      const plen = dv.getUint32(4, true);
      dv.setUint32(4, r.pick([plen + r.int(1, 64), Math.max(0, plen - r.int(1, 64)), r.int(0, 0xffffffff), 0, 8, plen + 4096]) >>> 0, true);
      return { kind: 'plen', out: [b] };
    }
    case 3: // truncated: the rest never comes
      return { kind: 'truncate', out: [b.subarray(0, r.int(1, b.length - 1))] };
    case 4: // sent twice
      return { kind: 'duplicate', out: [b, b] };
    case 5: // random bytes in front
      return { kind: 'junk-before', out: [r.bytes(r.int(1, 96)), b] };
    case 6: // the data (and its digest)
      if (dataSafe && b.length > hlen) {
        b[r.int(hlen, b.length - 1)] ^= 1 << r.int(0, 7);
        return { kind: 'data-bit', out: [b] };
      }
      return { kind: 'none', out: [b] };
    case 7: // PDU type
      b[0] = r.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x7f, 0xff]);
      return { kind: 'type', out: [b] };
    case 8: // dropped
      return { kind: 'drop', out: [] };
    default: // split into many small writes (not a mutation of content)
      return { kind: 'split', out: Array.from({ length: Math.ceil(b.length / 7) }, (_, i) => b.subarray(i * 7, i * 7 + 7)), clean: true };
  }
}

/** One fuzzer connection: a socket, a host-side reader, counters. */
class Conn {
  constructor(port, stats, r, ioQueue) {
    this.stats = stats;
    this.r = r;
    this.ioQueue = ioQueue;
    this.rx = [];
    this.wake = undefined;
    this.closed = false;
    this.readerError = undefined;
    this.reader = undefined;
    this.pending = [];
    this.wire = {};
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.setNoDelay(true);
    this.socket.on('error', () => {});
    this.socket.on('data', (c) => this.onData(c));
    this.socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    this.opened = new Promise((resolve) => {
      this.socket.once('connect', resolve);
      this.socket.once('close', resolve);
    });
    this.gone = new Promise((resolve) => this.socket.once('close', resolve));
    stats.connections++;
  }

  /** The reader starts with the ICReq we sent: its HPDA is the alignment the target pads to. */
  startReader(hpda) {
    this.reader = new PduReader({ maxPduBytes: 16 << 20, side: 'host', pda: Math.min(hpda, 31) });
    for (const c of this.pending) this.feed(c);
    this.pending = [];
  }

  onData(c) {
    if (!this.reader) return this.pending.push(c);
    this.feed(c);
  }

  feed(c) {
    if (this.readerError) return;
    this.reader.push(c);
    try {
      for (let p = this.reader.next(); p !== null; p = this.reader.next()) {
        const header = new Uint8Array(p.header);
        const q = { type: p.type, flags: p.flags, header, dv: new DataView(header.buffer), data: new Uint8Array(p.data), ddgstError: p.dataDigestError };
        if (p.type === 0x01) {
          // ICResp: digests from here on are what it says.
          // ICResp: PFV 9:8, CPDA 10, DGST 11 (HDGST_ENABLE bit 0, DDGST_ENABLE bit 1), MAXH2CDATA 15:12.
          this.wire = { hdgst: (header[11] & 1) === 1, ddgst: (header[11] & 2) === 2, pda: header[10] };
          this.reader.setDigests(this.wire.hdgst, this.wire.ddgst);
          this.maxh2c = q.dv.getUint32(12, true);
        }
        if (p.type === 0x03) {
          const fes = q.dv.getUint16(8, true);
          this.lastTerm = Buffer.from(header).toString('hex') + ' ' + Buffer.from(q.data).toString('hex');
          this.stats.fes[fes] = (this.stats.fes[fes] ?? 0) + 1;
        }
        this.rx.push(q);
      }
    } catch (e) {
      this.readerError = e;
    }
    this.wake?.();
  }

  send(bytes) {
    if (this.socket.destroyed) return;
    this.socket.write(bytes);
  }

  async next(ms = BOUND_MS) {
    const end = Date.now() + ms;
    for (;;) {
      if (this.rx.length) return this.rx.shift();
      if (this.readerError) throw this.readerError;
      if (this.closed) return null;
      const left = end - Date.now();
      if (left <= 0) return undefined;
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  destroy() {
    this.socket.destroy();
  }
}

/**
 * Runs the fuzzer until `pdus` PDUs have been sent. Returns the figures; `failures` lists every broken
 * invariant (empty on success).
 */
/** Command Interrupted (SCT 0, SC 21h) without DNR: the target's answer when its DMA pool is taken for now. */
const RETRYABLE_INTERRUPTED = 0x21;

export async function runTcpFuzz({ pdus = 2000, seed = 1, lanes = 4, ioThreads, log = () => {} } = {}) {
  const failures = [];
  const fail = (why) => {
    if (failures.length < 20) failures.push(why);
  };
  const uncaught = (e) => fail(`uncaught in the target's process: ${e?.stack ?? e}`);
  process.on('uncaughtException', uncaught);
  process.on('unhandledRejection', uncaught);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvmq-tcp-fuzz-'));
  const engine = await Engine.open({
    namespaces: [
      { backend: 'memory', size: NAMESPACES[1][0] * NAMESPACES[1][1], nsid: 1 },
      { backend: 'memory', size: NAMESPACES[2][0] * NAMESPACES[2][1], lbaSize: 512, nsid: 2 },
      { backend: 'file', path: path.join(dir, 'ns3.img'), size: NAMESPACES[3][0] * NAMESPACES[3][1], nsid: 3 },
    ],
    workers: 1,
  });
  const target = await TcpTarget.listen(engine, { port: 0, subnqn: SUBNQN, allowAnyHost: true, maxIoQueues: 8, maxQueueSize: 64, ...(ioThreads === undefined ? {} : { ioThreads }) });
  const port = target.address.port;
  const mdts = engine.driver.controller.maxTransferBytes;
  const stats = { pdusSent: 0, connections: 0, fes: {}, commandsCompleted: 0, statusCounts: {}, mutations: {}, cleanExchanges: 0, probes: 0, maxRssMiB: 0 };
  const r = prng(seed);
  const arena = (await engine.queue()).arena;
  const arenaFree0 = arena.freePages();

  // Sentinels: the upper half of every namespace.
  const sentinel = {};
  for (const [nsid, [lba, n]] of Object.entries(NAMESPACES)) {
    const step = Math.floor(mdts / lba);
    for (let at = n / 2; at < n; at += step) await engine.write(+nsid, at, blocks(+nsid, at, Math.min(step, n - at), 0xc0ffee));
    sentinel[nsid] = true;
  }
  const rss0 = process.memoryUsage().rss;

  let cidSeq = 1;
  const cid = () => (cidSeq = (cidSeq % 0xfffe) + 1);

  /** Sends one PDU (segments), maybe mutated; counts it. Returns whether it went out unmutated. */
  function sendPdu(c, segments, rate, dataSafe = true) {
    let bytes = concatSegments(segments);
    if (c.ioQueue) guard(bytes, true);
    stats.pdusSent++;
    if (rate > 0 && r.chance(rate)) {
      const m = mutate(r, bytes, dataSafe);
      stats.mutations[m.kind] = (stats.mutations[m.kind] ?? 0) + 1;
      for (const part of m.out) {
        if (c.ioQueue) guard(part, true);
        c.send(part);
      }
      return m.clean === true;
    }
    c.send(bytes);
    return true;
  }

  /** ICReq and ICResp. */
  async function initialize(c, rate) {
    await c.opened;
    const hpda = r.pick([0, 0, 0, 1, 3, 7]);
    const req = encodeIcReq({ hpda, hdgst: r.chance(0.5), ddgst: r.chance(0.5), maxr2t: 0 });
    const clean = sendPdu(c, [req], rate / 2);
    // The target reads the HPDA we actually sent (a mutation may have changed it).
    c.startReader(clean ? hpda : 0);
    const p = await c.next(rate > 0 ? 250 : BOUND_MS);
    return clean && p && p.type === 0x01;
  }

  /** Runs a command to its answer on a clean connection; returns the status or undefined. */
  async function exec(c, s, data, inCapsule, readLength = 0) {
    const id = cid();
    s.writeUInt16LE(id, 2);
    const length = data ? data.length : readLength;
    if (length > 0) setSgl(s, inCapsule, length);
    stats.pdusSent++;
    c.send(concatSegments(encodeCapsuleCmd(s, inCapsule ? data : undefined, c.wire)));
    for (;;) {
      const p = await c.next();
      if (!p) return undefined;
      if (p.type === 0x09) {
        const ttag = p.dv.getUint16(10, true);
        stats.pdusSent++;
        c.send(concatSegments(encodeH2CData({ cccid: id, ttag, datao: 0, data, last: true }, c.wire)));
      } else if (p.type === 0x05) {
        stats.commandsCompleted++;
        c.lastCntlid = p.dv.getUint32(8, true) & 0xffff;
        return p.dv.getUint16(22, true) >> 1;
      } else if (p.type === 0x07 && (p.flags & 0x08)) {
        stats.commandsCompleted++;
        return 0;
      } else if (p.type !== 0x07) return undefined;
    }
  }

  /** An admin controller the I/O exchanges of one lane hang their queues on. */
  async function anchor(lane) {
    const c = new Conn(port, stats, r, false);
    if (!(await initialize(c, 0))) throw new Error('anchor ICReq failed');
    const hostid = Buffer.alloc(16, lane + 1);
    const hostnqn = `nqn.2014-08.org.nvmexpress:uuid:0000000${lane}-fuzz-lane`;
    let st = await exec(c, connectCmd(0, 0, 31, 0, 0), connectData(hostid, 0xffff, SUBNQN, hostnqn), true);
    if (st !== 0) throw new Error(`anchor Connect: ${st}`);
    const cntlid = c.lastCntlid;
    st = await exec(c, propertyCmd(0, 0x00, 0x14, false, CC_ENABLE));
    if (st !== 0) throw new Error(`anchor CC.EN: ${st}`);
    return { c, hostid, hostnqn, cntlid };
  }

  /** An exchange: one connection with a stream of commands, clean (rate 0) or mutated. */
  async function exchange(lane, a) {
    const kind = r.pick(['io', 'io', 'io', 'io', 'admin', 'discovery', 'random', 'preconnect']);
    const rate = r.pick([0, 0, 0.02, 0.1, 0.3, 1]);
    laneState[lane] = `${kind} rate ${rate}`;
    const io = kind === 'io';
    const c = new Conn(port, stats, r, io);
    try {
      if (kind === 'random') {
        await c.opened;
        c.startReader(0);
        for (let i = 0, n = r.int(1, 8); i < n; i++) {
          stats.pdusSent++;
          c.send(r.bytes(r.int(1, 300)));
        }
        return await settle(c, false);
      }
      if (!(await initialize(c, rate))) return await settle(c, false);
      laneState[lane] += ' initialized';
      const pending = new Map();
      let clean = rate === 0;
      const expectAnswer = (id, info) => pending.set(id, info);
      // Connect.
      const ccid = cid();
      if (kind === 'io') {
        const s = connectCmd(ccid, lane + 1, r.pick([63, 31, 1]), 0, r.chance(0.2) ? 4 : 0);
        clean = sendPdu(c, encodeCapsuleCmd(s, connectData(a.hostid, a.cntlid, SUBNQN, a.hostnqn), c.wire), rate) && clean;
        expectAnswer(ccid, { connect: true });
      } else if (kind === 'admin' || kind === 'discovery') {
        const s = connectCmd(ccid, 0, 31, rate > 0 && r.chance(0.2) ? 150 : 0, 0);
        const hostid = r.bytes(16);
        hostid[0] |= 1;
        clean = sendPdu(c, encodeCapsuleCmd(s, connectData(hostid, 0xffff, kind === 'admin' ? SUBNQN : DISCOVERY, 'nqn.2014-08.org.nvmexpress:uuid:fuzz-admin'), c.wire), rate) && clean;
        expectAnswer(ccid, { connect: true });
      }
      // The Connect's answer decides what follows (an I/O queue may be refused: its QID still closing).
      laneState[lane] += ' connect-sent';
      const first = await waitAnswers(c, pending, new Map(), 1, 0, rate > 0 ? 250 : BOUND_MS);
      laneState[lane] += ` connect-answer ${first}`;
      if (first === 'closed' || first === 'timeout') return await settle(c, clean);
      if (kind !== 'io' && kind !== 'preconnect' && c.lastStatus === 0) {
        const id = cid();
        clean = sendPdu(c, encodeCapsuleCmd(propertyCmd(id, 0x00, 0x14, false, r.chance(0.9) ? CC_ENABLE : r.int(0, 0xffffffff)), undefined, c.wire), rate) && clean;
        expectAnswer(id, {});
      }
      const data = new Map();
      for (let i = 0, n = r.int(1, io ? 24 : 10); i < n && pending.size < 48; i++) {
        const id = r.chance(0.03) && pending.size > 0 ? [...pending.keys()][0] : cid();
        const { s, out, inCapsule, dsm, aer } = io ? ioCommand(id) : adminCommand(id, kind);
        if (r.chance(0.03)) s.writeUInt16LE(r.int(0, 0xffff), 40 + 4 * r.int(0, 5));
        clean = sendPdu(c, encodeCapsuleCmd(s, inCapsule ? out : undefined, c.wire), rate, !dsm) && clean;
        if (out && !inCapsule) data.set(id, { out, dsm });
        // An Asynchronous Event Request (also one a random opcode made) stays outstanding by design.
        if (!pending.has(id)) expectAnswer(id, { aer: aer || (!io && s[0] === 0x0c), opc: s[0], fctype: s[4] });
        else clean = false; // a CID in use: the answer of one of the two is what comes
      }
      if (r.chance(0.05)) {
        stats.pdusSent++;
        c.send(encodeH2CTermReq({ fes: 1, fei: 0, offendingHeader: new Uint8Array(8) }));
        clean = false;
      }
      laneState[lane] += ' commands-sent';
      const end = await waitAnswers(c, pending, data, pending.size, rate, rate > 0 ? 250 : BOUND_MS);
      laneState[lane] += ` end ${end}`;
      if (clean && end !== 'done') {
        if (process.env.TCP_FUZZ_DEBUG) console.log('UNANSWERED', c.socket.localPort, [...pending.entries()], c.lastTerm);
        fail(`seed ${seed}: a clean ${kind} connection did not answer all its commands within ${BOUND_MS} ms (${end}, ${pending.size} left)`);
      }
      if (clean) stats.cleanExchanges++;
      laneState[lane] += ' settling';
      return await settle(c, clean);
    } finally {
      c.destroy();
    }
  }

  function ioCommand(id) {
    const nsid = r.pick([1, 1, 2, 3, r.int(0, 5), 0xffffffff]);
    const [lba] = NAMESPACES[nsid] ?? [4096];
    const half = NAMESPACES[nsid] ? fuzzable(nsid) : 64;
    const maxBlocks = Math.max(1, Math.floor(mdts / lba));
    const nlb = r.chance(0.05) ? maxBlocks + r.int(1, 4) : r.int(1, Math.min(64, maxBlocks));
    const slba = r.chance(0.05) ? r.int(0, 2 ** 40) : r.int(0, Math.max(0, half - nlb));
    const op = r.pick(['write', 'write', 'read', 'read', 'flush', 'wz', 'dsm', 'compare', 'other']);
    const rw = (opc) => sqe(opc, { cid: id, nsid, cdw10: slba >>> 0, cdw11: Math.floor(slba / 2 ** 32), cdw12: nlb - 1 });
    const skew = (len) => (r.chance(0.05) ? Math.max(0, len + r.pick([-lba, lba, -1, 1, 4096])) : len);
    switch (op) {
      case 'write':
      case 'compare': {
        const s = rw(op === 'write' ? 0x01 : 0x05);
        const out = blocks(nsid in NAMESPACES ? nsid : 1, slba, nlb, id).subarray(0, skew(nlb * lba));
        const inCapsule = out.length <= 8192 && r.chance(0.5);
        if (out.length > 0) setSgl(s, inCapsule, out.length);
        return { s, out: out.length > 0 ? out : undefined, inCapsule };
      }
      case 'read': {
        const s = rw(0x02);
        setSgl(s, r.chance(0.05), skew(nlb * lba));
        return { s };
      }
      case 'flush':
        return { s: sqe(0x00, { cid: id, nsid }) };
      case 'wz':
        return { s: rw(0x08) };
      case 'dsm': {
        const nr = r.int(1, 4);
        const out = Buffer.alloc(nr * 16);
        for (let i = 0; i < nr; i++) {
          const len = r.int(1, 16);
          out.writeUInt32LE(len, i * 16 + 4);
          out.writeBigUInt64LE(BigInt(r.int(0, Math.max(0, half - len))), i * 16 + 8);
        }
        const s = sqe(0x09, { cid: id, nsid, cdw10: nr - 1, cdw11: 1 << 2 });
        const inCapsule = r.chance(0.7);
        setSgl(s, inCapsule, out.length);
        return { s, out, inCapsule, dsm: true };
      }
      default: {
        const s = sqe(r.int(0, 0xff), { cid: id, nsid: 0xfffffffe, cdw10: r.int(0, 0xffffffff), cdw12: r.int(0, 0xffffffff) });
        if (r.chance(0.5)) {
          const len = r.int(1, 3) * 512;
          const out = r.chance(0.5) ? r.bytes(len) : undefined;
          setSgl(s, out ? r.chance(0.5) : false, len);
          return { s, out, inCapsule: out ? s[39] === 0x01 : false };
        }
        return { s };
      }
    }
  }

  function adminCommand(id, kind) {
    const op = r.pick(['identify', 'log', 'features', 'keepalive', 'propget', 'propset', 'other', 'aer']);
    switch (op) {
      case 'identify': {
        const s = sqe(0x06, { cid: id, nsid: r.pick([0, 1, 2, 3, 9, 0xffffffff]), cdw10: r.pick([0, 1, 2, 3, r.int(0, 255)]) });
        setSgl(s, false, r.pick([4096, 4096, 512, 8192]));
        return { s };
      }
      case 'log': {
        const len = r.pick([512, 1024, 4096, 3072]);
        const s = sqe(0x02, { cid: id, nsid: 0xffffffff, cdw10: (kind === 'discovery' ? 0x70 : r.pick([1, 2, 3, 4, 5, 0x70, r.int(0, 255)])) | (((len / 4 - 1) & 0xffff) << 16), cdw12: r.pick([0, 0, 1024, 4096]) });
        setSgl(s, false, len);
        return { s };
      }
      case 'features':
        return { s: sqe(r.pick([0x09, 0x0a]), { cid: id, cdw10: r.int(0, 0x20), cdw11: r.int(0, 0xffff) }) };
      case 'keepalive':
        return { s: sqe(0x18, { cid: id }) };
      case 'propget':
        return { s: propertyCmd(id, 0x04, r.pick([0, 8, 0x14, 0x1c, 0x20, r.int(0, 0x1000)]), r.chance(0.5), 0) };
      case 'propset':
        return { s: propertyCmd(id, 0x00, r.pick([0x14, 0x14, 0x1c, r.int(0, 0x100)]), r.chance(0.2), r.chance(0.5) ? CC_ENABLE : r.int(0, 0xffffffff)) };
      case 'aer':
        return { s: sqe(0x0c, { cid: id }), aer: true };
      default: {
        const s = sqe(r.int(0, 0xff), { cid: id, nsid: r.int(0, 4), cdw10: r.int(0, 0xffffffff) });
        if (r.chance(0.4)) {
          const len = r.int(1, 8) * 512;
          const out = r.chance(0.5) ? r.bytes(len) : undefined;
          setSgl(s, out !== undefined && r.chance(0.5), len);
          return { s, out, inCapsule: out !== undefined && s[39] === 0x01 };
        }
        return { s };
      }
    }
  }

  /**
   * Reads what the target sends until `want` answers came, the connection closed, or nothing came for the
   * bound; answers R2Ts with H2CData (split, maybe mutated). AERs stay outstanding by design: not waited for.
   */
  async function waitAnswers(c, pending, data, want, rate, idleMs) {
    let got = 0;
    for (;;) {
      if (got >= want || [...pending.values()].every((p) => p.aer)) return 'done';
      let p;
      try {
        p = await c.next(idleMs);
      } catch (e) {
        fail(`seed ${seed}: the target sent a malformed PDU: ${e.message}`);
        return 'closed';
      }
      if (p === null) return 'closed';
      if (p === undefined) return 'timeout';
      if (p.type === 0x09) {
        const ccid = p.dv.getUint16(8, true);
        const ttag = p.dv.getUint16(10, true);
        const r2to = p.dv.getUint32(12, true);
        const r2tl = p.dv.getUint32(16, true);
        const d = data.get(ccid);
        let src = d?.out ?? Buffer.alloc(r2to + r2tl);
        if (src.length < r2to + r2tl) src = Buffer.concat([src, Buffer.alloc(r2to + r2tl - src.length)]);
        const chunk = r.pick([c.maxh2c ?? 131072, 4096, 65536, 512]);
        for (let at = r2to; at < r2to + r2tl; at += chunk) {
          const len = Math.min(chunk, r2to + r2tl - at);
          sendPdu(c, encodeH2CData({ cccid: ccid, ttag, datao: at, data: src.subarray(at, at + len), last: at + len === r2to + r2tl }, c.wire), rate, !d?.dsm);
        }
        continue;
      }
      if (p.type === 0x05) {
        const id = p.dv.getUint16(20, true);
        const st = p.dv.getUint16(22, true) >> 1;
        stats.commandsCompleted++;
        stats.statusCounts[st] = (stats.statusCounts[st] ?? 0) + 1;
        c.lastStatus = st;
        if (pending.get(id)?.connect && st === 0) c.lastCntlid = p.dv.getUint32(8, true) & 0xffff;
        if (pending.delete(id)) got++;
        continue;
      }
      if (p.type === 0x07 && (p.flags & 0x08)) {
        stats.commandsCompleted++;
        if (pending.delete(p.dv.getUint16(8, true))) got++;
        continue;
      }
    }
  }

  /** The fuzzer leaves the connection: the target's end of it must be gone within the bound. */
  async function settle(c) {
    const local = c.socket.localPort;
    c.destroy();
    await c.gone;
    const mine = () => [...target.connections].some((t) => t.socket.remotePort === local);
    if (!(await waitFor(() => !mine(), BOUND_MS))) fail(`seed ${seed}: the target kept a connection ${BOUND_MS} ms after its host left`);
  }

  // Lanes: each with an anchor controller, running exchanges until the PDU budget is spent.
  const anchors = [];
  for (let lane = 0; lane < lanes; lane++) anchors.push(await anchor(lane));
  const t0 = Date.now();
  let lastLog = t0;
  let probeFailed = false;
  let exchangesOfLane0 = 0;
  const probe = async () => {
    // A clean host served throughout: a write and a read back, each within the bound.
    const a = anchors[0];
    const c = new Conn(port, stats, r, true);
    try {
      if (!(await initialize(c, 0))) throw new Error('ICReq');
      let st;
      for (let i = 0; i < 100 && st !== 0; i++) {
        st = await exec(c, connectCmd(0, lanes + 1, 31, 0, 0), connectData(a.hostid, a.cntlid, SUBNQN, a.hostnqn), true);
        if (st !== 0) await sleep(10);
      }
      if (st !== 0) throw new Error(`Connect ${st}`);
      const at = fuzzable(1);
      const out = blocks(1, at, 2, stats.probes);
      // As a host does, a write that comes back retryable (Command Interrupted while the thread's DMA pool is
      // taken by the fuzzed connections) is sent again.
      let w;
      for (let i = 0; i < 200 && w !== 0; i++) {
        w = await exec(c, sqe(0x01, { nsid: 1, cdw10: at, cdw12: 1 }), out, r.chance(0.5));
        if (w === RETRYABLE_INTERRUPTED) await sleep(10);
        else break;
      }
      if (w !== 0) throw new Error(`write: status 0x${w?.toString(16)}`);
      const id = cid();
      const s = sqe(0x02, { cid: id, nsid: 1, cdw10: at, cdw12: 1 });
      setSgl(s, false, out.length);
      stats.pdusSent++;
      c.send(concatSegments(encodeCapsuleCmd(s, undefined, c.wire)));
      const chunks = [];
      for (;;) {
        const p = await c.next();
        if (!p) throw new Error('read: no answer');
        if (p.type === 0x07) chunks.push(p.data);
        if (p.type === 0x05 || (p.type === 0x07 && p.flags & 0x08)) break;
      }
      stats.commandsCompleted++;
      if (!Buffer.concat(chunks).equals(out)) throw new Error('read back differs');
      stats.probes++;
    } catch (e) {
      probeFailed = true;
      fail(`seed ${seed}: the probe host was not served: ${e.message}`);
    } finally {
      c.destroy();
      await c.gone;
    }
  };
  await Promise.all(
    anchors.map(async (a, lane) => {
      while (stats.pdusSent < pdus && failures.length === 0) {
        try {
          await exchange(lane, a);
        } catch (e) {
          fail(`seed ${seed}: the fuzzer itself failed (${laneState[lane]}): ${e?.stack ?? e}`);
        }
        // The target lets go of the connection within the bound (its QID is the next exchange's).
        if (lane === 0 && ++exchangesOfLane0 % 25 === 0) await probe();
        const rss = process.memoryUsage().rss;
        stats.maxRssMiB = Math.max(stats.maxRssMiB, Math.round(rss / 2 ** 20));
        if (rss - rss0 > 768 * 2 ** 20) fail(`seed ${seed}: RSS grew by ${Math.round((rss - rss0) / 2 ** 20)} MiB`);
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now();
          log(`${stats.pdusSent} PDUs, ${stats.connections} connections, ${stats.commandsCompleted} commands, RSS ${stats.maxRssMiB} MiB, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
        }
      }
    }),
  );
  if (!probeFailed) await probe();

  // The end: the anchors leave; nothing may be left behind.
  for (const a of anchors) {
    a.c.destroy();
    await a.c.gone;
  }
  if (!(await waitFor(() => target.connectionCount === 0 && target.subsystem.activeControllers.size === 0, BOUND_MS))) {
    fail(`seed ${seed}: ${target.connectionCount} connections, ${target.subsystem.activeControllers.size} controllers left at the end`);
  }
  if (!(await waitFor(() => arena.freePages() === arenaFree0, BOUND_MS))) fail(`seed ${seed}: DMA arena: ${arenaFree0 - arena.freePages()} pages not given back`);
  for (const [nsid, [lba, n]] of Object.entries(NAMESPACES)) {
    const step = Math.floor(mdts / lba);
    for (let at = n / 2; at < n; at += step) {
      const k = Math.min(step, n - at);
      if (!Buffer.from(await engine.read(+nsid, at, k)).equals(blocks(+nsid, at, k, 0xc0ffee))) fail(`seed ${seed}: sentinel blocks of NSID ${nsid} at ${at}..${at + k - 1} changed`);
    }
  }
  stats.seconds = (Date.now() - t0) / 1000;
  await target.close();
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.off('uncaughtException', uncaught);
  process.off('unhandledRejection', uncaught);
  return { ...stats, failures, seed };
}

async function waitFor(cond, ms) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { pdus: { type: 'string', default: '100000' }, seed: { type: 'string' }, lanes: { type: 'string', default: '4' }, 'io-threads': { type: 'string' } } });
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  console.log(`tcp-fuzz: --pdus ${values.pdus} --seed ${seed} --lanes ${values.lanes}`);
  const res = await runTcpFuzz({ pdus: Number(values.pdus), seed, lanes: Number(values.lanes), ioThreads: values['io-threads'] === undefined ? undefined : Number(values['io-threads']), log: (s) => console.log(`  ${s}`) });
  const { failures, ...figures } = res;
  console.log(JSON.stringify(figures, null, 2));
  if (failures.length) {
    console.log(`FAILED (replay: node bench/tcp-fuzz.mjs --pdus ${values.pdus} --seed ${seed} --lanes ${values.lanes}):`);
    for (const f of failures) console.log(`  ${f}`);
    process.exit(1);
  }
  console.log(`passed: ${res.pdusSent} PDUs, ${res.connections} connections, ${res.commandsCompleted} commands in ${res.seconds.toFixed(1)} s, max RSS ${res.maxRssMiB} MiB`);
}
