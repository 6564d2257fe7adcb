/**
 * The NVMe controller: a register file in a SharedArrayBuffer "BAR", the admin
 * and NVM command sets, and namespaces over backends.
 *
 * It has no thread of its own. A register or doorbell write runs the
 * controller's reaction in the writing thread, as QEMU handles a trapped MMIO
 * write: enabling, resetting, or fetching and executing the commands a new SQ
 * tail exposes. Memory namespaces complete inside that call; file namespaces
 * complete later from their backend's callback. Either way the completion is
 * posted to the CQ in the DMA arena and the CQ's interrupt vector is raised
 * through `onInterrupt`.
 */
import { debuglog } from 'node:util';
import { DmaArena, type DmaArenaHandle } from '../dma-arena.js';
import { backendFromHandle, type BackendHandle } from './backends/handle.js';
import type { LbaSize } from './namespace.js';
import { Aqa, Cap, Cc, Csts, Regs, ShutdownStatus, Vs, DOORBELL_BASE, NSSR_RESET_VALUE, CAP_CSS_NVM, CC_CSS_NVM, pageSizeOf } from '../spec/registers.js';
import { readField, writeField } from '../spec/layout.js';
import { CQE_SIZE, SQE_SIZE, SQE_SIZE_LOG2, CQE_SIZE_LOG2, decodeCommandWords, postCompletionWords } from '../spec/command.js';
import { statusCode, formatStatus } from '../spec/status.js';
import { ABORTED_SQ_DELETION, HELD, INTERNAL_ERROR, INVALID_FIELD, INVALID_OPCODE, UNRECOVERED_READ_ERROR, WRITE_FAULT, backendStatus } from './status.js';
import { opcodeName } from '../spec/opcodes.js';
import { AsyncEventType, AsyncErrorInfo, LogPageId } from '../spec/log-pages.js';
import { CompletionQueue, QueueDirectory, SubmissionQueue, type Request } from './queues.js';
import { waitAsyncAlive } from '../shared/wait.js';
import { Namespace, type NamespaceConfig } from './namespace.js';
import { ErrorLog, HealthCounter, HealthCounters, HEALTH_ROWS } from './health.js';
import { mapPrps, gather, scatter } from './prp.js';
import { adminCommands } from './admin.js';
import { nvmCommands } from './nvm.js';
import { BackendError, type IoDone } from './backends/backend.js';
import { IoRing } from '../uring/ring.js';
import { FileBackend } from './backends/file.js';
import { loadNative, notePortable, resolveDataPath, type DataPath } from '../native.js';

const trace = debuglog('nvmq');


// Words of NvmeController.globals.
const G_EPOCH = 0;
const G_READY = 1;
const G_PAGE_SIZE = 2;
const G_VWC = 3;
/**
 * Bumped (and notified) when a thread's in-flight count drops to 0 while someone drains. The counts
 * themselves are per thread (see threadWord): a count shared by every thread would be one cache line
 * that all of them write per command.
 */
const G_DRAIN_SEQ = 4;
/** Threads waiting for every thread's in-flight count to reach 0: completers bump G_DRAIN_SEQ only when there are any. */
const G_DRAINING = 5;
/** Words of in-flight CID bits per SQ: one bit per possible CID. */
const CID_WORDS = 65536 / 32;
/** Asynchronous events raised in I/O threads: a counter bumped per event, then G_EVENT_SLOTS event words. */
const G_EVENTS_POSTED = 6;
/** Bumped by every Create I/O SQ: a thread's io_uring for a QID belongs to one creation of it. */
const G_SQ_GENERATION = 7;
const G_EVENTS = 8;
const G_EVENT_SLOTS = 8;
/** Marks an event word as holding an event (event DW0 uses bits 23:0). */
const EVENT_PRESENT = 0x4000_0000;
/** Threads that can execute queues, each with an in-flight count after the interrupt words (slot 0 is the main thread). */
export const MAX_THREAD_SLOTS = HEALTH_ROWS;
/** Int32 words per thread's in-flight count: one to a 64-byte cache line, written by that thread alone. */
const THREAD_STRIDE = 16;
/** One Int32 per interrupt vector from here: bumped when a vector is raised for a handler in another thread. */
const G_IRQ = 16;
/** NSIDs up to this are looked up in an array. */
const MAX_INDEXED_NSID = 1024;

/** A command table as an array indexed by opcode. */
function byOpcode(table: ReadonlyMap<number, CommandEntry>): Array<CommandEntry | undefined> {
  const out = new Array<CommandEntry | undefined>(256).fill(undefined);
  for (const [opcode, entry] of table) out[opcode] = entry;
  return out;
}

export type CommandHandler = (c: NvmeController, req: Request) => number;

export interface CommandEntry {
  readonly opcode: number;
  readonly handler: CommandHandler;
  /** Commands Supported and Effects bits beyond CSUPP (Figure 206). */
  readonly effects: number;
}

/** The shared memory behind a controller, for `NvmeController.attach` in another thread. */
export interface SharedControllerMemory {
  bar: SharedArrayBuffer;
  /** Per SQ, a bit per CID of the commands fetched and not completed (for aborting a dead thread's). */
  inflightCids: SharedArrayBuffer;
  queues: SharedArrayBuffer;
  globals: SharedArrayBuffer;
  health: SharedArrayBuffer;
  errorLog: SharedArrayBuffer;
}

export interface ControllerHandle {
  memory: SharedControllerMemory;
  arena: DmaArenaHandle;
  namespaces: Array<{ nsid: number; lbaSize: LbaSize; backend: BackendHandle }>;
  options: { maxIoQueues: number; mqes: number; mdts: number; dstrd: number; interruptVectors: number; identity: ControllerIdentity; dataPath: DataPath };
}

export interface ControllerIdentity {
  serial: string;
  model: string;
  firmware: string;
}

export interface ControllerOptions {
  arena: DmaArena;
  namespaces: Array<NamespaceConfig & { nsid?: number }>;
  /** I/O queue pairs the controller supports (Number of Queues maximum), default 64. */
  maxIoQueues?: number;
  /** CAP.MQES, 0's based largest queue size, default 4095. */
  mqes?: number;
  /** Identify MDTS: transfers up to 2^MDTS minimum-size pages; 0 = no limit. Default 7 (512 KiB). */
  mdts?: number;
  /** CAP.DSTRD, default 0 (doorbells 4 bytes apart). */
  dstrd?: number;
  /** CAP.TO in 500 ms units, default 10 (5 s). */
  timeout?: number;
  /** How long the controller takes to report CSTS.RDY after CC.EN (emulates real bring-up); default 0. */
  readyDelayMs?: number;
  /** Interrupt vectors (MSI-X table size), default maxIoQueues + 1. */
  interruptVectors?: number;
  identity?: Partial<ControllerIdentity>;
  /**
   * How file namespaces reach the kernel: 'io_uring' (one ring per I/O SQ in
   * the thread executing it; throws when unavailable), 'portable' (node:fs),
   * or 'auto' (default: io_uring when the addon and kernel allow it).
   */
  dataPath?: DataPath | 'auto';
}

/** Controller states; CSTS reflects them. */
export type ControllerState = 'disabled' | 'enabling' | 'ready' | 'failed' | 'resetting';

export class NvmeController {
  readonly bar: SharedArrayBuffer;
  readonly regs: DataView;
  /** The BAR as Int32 words, for atomic doorbell stores and loads. */
  readonly barWords: Int32Array;
  readonly arena: DmaArena;
  readonly namespaces = new Map<number, Namespace>();
  /** Namespaces by NSID for the per-command lookup (NSIDs up to MAX_INDEXED_NSID; larger ones go through the Map). */
  private readonly nsByNsid: Array<Namespace | undefined> = [];
  /** Identify NN: the largest NSID. */
  readonly maxNsid: number;
  readonly maxIoQueues: number;
  readonly mqes: number;
  readonly mdts: number;
  readonly dstrd: number;
  readonly interruptVectors: number;
  readonly identity: ControllerIdentity;
  readonly health: HealthCounters;
  /** 'main' runs registers and the admin queue; 'io' (a worker's view) runs I/O queue doorbells only. */
  readonly role: 'main' | 'io';
  readonly errorLog: ErrorLog;
  /** Identify ELPE + 1. */
  readonly errorLogEntries = 64;
  /** Identify AERL (0's based): outstanding Asynchronous Event Requests allowed, minus one. */
  readonly aerl = 3;
  /** Identify ACL (0's based). */
  readonly acl = 3;
  readonly temperatureKelvin = 313;

  /** The data path of file namespaces in this thread. */
  readonly dataPath: DataPath;
  /** This thread's io_uring per I/O SQ, for the creation of the SQ it was made for. */
  private readonly rings = new Map<number, { ring: IoRing; generation: number }>();
  /** The same by QID, for the per-command lookup. */
  private readonly ringByQid: Array<{ ring: IoRing; generation: number } | undefined> = [];
  /** Some namespace is an O_DIRECT file (its rings register the arena: see ringFor). */
  private readonly hasDirectFile: boolean;
  /** Set when rings are in use: the addon. */
  private ringNative: ReturnType<typeof loadNative>;

  /** Raised for a CQ with interrupts enabled: (vector). Set by the transport. */
  onInterrupt: (vector: number) => void = () => {};

  state: ControllerState = 'disabled';
  /** Queue state shared by every thread that executes this controller's queues. */
  readonly queues: QueueDirectory;
  /** Controller-wide words shared with I/O threads: epoch, readiness, page size, VWC, in-flight count, interrupts. */
  readonly globals: Int32Array;
  private readonly sqViews: SubmissionQueue[] = [];
  private readonly cqViews: CompletionQueue[] = [];
  /** Per SQ, CID_WORDS words: bit `cid` set while that command is fetched and not completed. */
  private readonly inflightCids: Int32Array;
  /**
   * Requests this thread has fetched and is waiting on backend operations for, by QID (for Abort). Each
   * knows its index (`listed`), so leaving is a swap with the last one: no hashing per command.
   */
  private readonly mine: Array<Request[] | undefined> = [];
  /** Number of Queues granted (1's based counts). */
  grantedSqs: number;
  grantedCqs: number;
  /** Set once an I/O queue exists; Number of Queues may not change after that. */
  ioQueuesCreated = false;
  readonly features: FeatureValues;
  /** Held Asynchronous Event Requests and events waiting for one. */
  readonly aerWaiting: Request[] = [];
  readonly aerPending: number[] = [];
  /** Event types reported and not yet cleared by reading their log page. */
  readonly aerMasked = new Set<number>();

  private readonly commandTables: [Map<number, CommandEntry>, Map<number, CommandEntry>];
  /** The same tables indexed by opcode, for dispatch without hashing. */
  private readonly handlers: [Array<CommandEntry | undefined>, Array<CommandEntry | undefined>];
  private readonly readyDelayMs: number;
  private intMask = 0;
  /** Set by close(): the main thread's event watcher stops. */
  private closed = false;
  /** A delayed CSTS.RDY (readyDelayMs) not yet raised; close() drops it, so nothing holds a closed controller. */
  private readyTimer: NodeJS.Timeout | undefined;
  private intPending = 0;
  private clock: number | undefined;
  /** This thread's in-flight count among the globals (slot 0: the main thread). */
  private readonly threadWord: number;
  /** Where the threads' in-flight counts start among the globals. */
  private readonly threadBase: number;

  constructor(opts: ControllerOptions, shared?: SharedControllerMemory, threadSlot?: number) {
    if (threadSlot !== undefined && (!Number.isInteger(threadSlot) || threadSlot < 1 || threadSlot >= MAX_THREAD_SLOTS)) {
      throw new RangeError(`thread slot must be 1..${MAX_THREAD_SLOTS - 1}, got ${threadSlot}`);
    }
    this.role = shared ? 'io' : 'main';
    this.health = new HealthCounters(shared?.health, threadSlot ?? 0);
    this.arena = opts.arena;
    this.maxIoQueues = opts.maxIoQueues ?? 64;
    this.mqes = opts.mqes ?? 4095;
    this.mdts = opts.mdts ?? 7;
    this.dstrd = opts.dstrd ?? 0;
    this.readyDelayMs = opts.readyDelayMs ?? 0;
    this.interruptVectors = opts.interruptVectors ?? this.maxIoQueues + 1;
    if (!Number.isInteger(this.maxIoQueues) || this.maxIoQueues < 1 || this.maxIoQueues > 65534) throw new RangeError(`maxIoQueues must be 1..65534, got ${this.maxIoQueues}`);
    if (!Number.isInteger(this.mqes) || this.mqes < 1 || this.mqes > 65535) throw new RangeError(`mqes must be 1..65535, got ${this.mqes}`);
    if (!Number.isInteger(this.mdts) || this.mdts < 0 || this.mdts > 15) throw new RangeError(`mdts must be 0..15, got ${this.mdts}`);
    if (!Number.isInteger(this.dstrd) || this.dstrd < 0 || this.dstrd > 15) throw new RangeError(`dstrd must be 0..15, got ${this.dstrd}`);
    this.identity = {
      serial: opts.identity?.serial ?? 'NVMQ0001',
      model: opts.identity?.model ?? 'nvmq virtual controller',
      firmware: opts.identity?.firmware ?? '0.1.0',
    };
    this.errorLog = new ErrorLog(this.errorLogEntries, this.health, shared?.errorLog);
    if (!shared) this.health.add(HealthCounter.POWER_CYCLES, 1);

    let next = 1;
    for (const cfg of opts.namespaces) {
      const nsid = cfg.nsid ?? next;
      if (!Number.isInteger(nsid) || nsid < 1 || nsid >= 0xfffffff0) throw new RangeError(`invalid NSID ${nsid}`);
      if (this.namespaces.has(nsid)) throw new RangeError(`NSID ${nsid} is used twice`);
      this.namespaces.set(nsid, new Namespace(nsid, cfg));
      next = nsid + 1;
    }
    this.maxNsid = Math.max(0, ...this.namespaces.keys());
    for (const ns of this.namespaces.values()) if (ns.nsid <= MAX_INDEXED_NSID) this.nsByNsid[ns.nsid] = ns;
    const hasFile = [...this.namespaces.values()].some((ns) => ns.backend.kind === 'file');
    this.dataPath = hasFile ? resolveDataPath(opts.dataPath ?? 'auto') : 'portable';
    this.ringNative = this.dataPath === 'io_uring' ? loadNative() : null;
    this.hasDirectFile = [...this.namespaces.values()].some((ns) => ns.backend instanceof FileBackend && ns.backend.direct);

    this.queues = new QueueDirectory(shared?.queues ?? this.maxIoQueues);
    this.inflightCids = new Int32Array(shared?.inflightCids ?? new SharedArrayBuffer((this.maxIoQueues + 1) * CID_WORDS * 4));
    this.localVectors = new Uint8Array(this.interruptVectors);
    this.threadBase = Math.ceil((G_IRQ + this.interruptVectors) / THREAD_STRIDE) * THREAD_STRIDE;
    this.globals = new Int32Array(shared?.globals ?? new SharedArrayBuffer((this.threadBase + MAX_THREAD_SLOTS * THREAD_STRIDE) * 4));
    this.threadWord = this.threadBase + (threadSlot ?? 0) * THREAD_STRIDE;
    this.bar = shared?.bar ?? new SharedArrayBuffer(DOORBELL_BASE + 2 * (this.maxIoQueues + 1) * (4 << this.dstrd));
    this.regs = new DataView(this.bar);
    this.barWords = new Int32Array(this.bar);
    this.features = defaultFeatures(this.maxIoQueues);
    this.grantedSqs = this.maxIoQueues;
    this.grantedCqs = this.maxIoQueues;
    this.commandTables = [adminCommands(), nvmCommands()];
    this.handlers = [byOpcode(this.commandTables[0]), byOpcode(this.commandTables[1])];
    if (shared) return;
    void this.watchEvents();
    this.globals[G_PAGE_SIZE] = 4096;
    this.globals[G_VWC] = 1;
    writeField(this.regs, Regs.CAP_LO.offset, Cap.MQES, this.mqes);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.CQR, 1);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.AMS, 0);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.TO, opts.timeout ?? 10);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.DSTRD, this.dstrd);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.NSSRS, 1);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.CSS, CAP_CSS_NVM);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.MPSMIN, 0);
    writeField(this.regs, Regs.CAP_LO.offset, Cap.MPSMAX, 4);
    writeField(this.regs, Regs.VS.offset, Vs.MJR, 1);
    writeField(this.regs, Regs.VS.offset, Vs.MNR, 4);
  }

  /**
   * Everything another thread needs to execute this controller's I/O queues
   * (structured-cloneable: shared memory and file descriptors, no objects).
   */
  handle(): ControllerHandle {
    if (this.role !== 'main') throw new Error('handle() is for the controller that owns the registers');
    return {
      memory: { bar: this.bar, inflightCids: this.inflightCids.buffer as SharedArrayBuffer, queues: this.queues.buffer, globals: this.globals.buffer as SharedArrayBuffer, health: this.health.buffer, errorLog: this.errorLog.buffer },
      arena: this.arena.handle(),
      namespaces: [...this.namespaces.values()].map((ns) => ({ nsid: ns.nsid, lbaSize: ns.lbaSize as LbaSize, backend: ns.backend.handle() })),
      options: { maxIoQueues: this.maxIoQueues, mqes: this.mqes, mdts: this.mdts, dstrd: this.dstrd, interruptVectors: this.interruptVectors, identity: this.identity, dataPath: this.dataPath },
    };
  }

  /** This controller as seen from another thread: its doorbell writes execute I/O queues there. */
  static attach(h: ControllerHandle, threadSlot: number): NvmeController {
    return new NvmeController(
      { ...h.options, arena: new DmaArena(h.arena), namespaces: h.namespaces.map((n) => ({ nsid: n.nsid, lbaSize: n.lbaSize, backend: backendFromHandle(n.backend) })) },
      h.memory,
      threadSlot,
    );
  }

  /**
   * Forgets the commands a dead thread was executing, whatever queue they
   * came from (its slot's count is subtracted from the global one), so a
   * reset's drain does not wait for callbacks that will never run.
   */
  abandonThread(threadSlot: number): number {
    const n = Atomics.exchange(this.globals, this.threadBase + threadSlot * THREAD_STRIDE, 0);
    if (n > 0) this.drained();
    return n;
  }

  /** The active namespace `nsid`, if any. */
  namespace(nsid: number): Namespace | undefined {
    return nsid <= MAX_INDEXED_NSID ? this.nsByNsid[nsid] : this.namespaces.get(nsid);
  }

  /** The command table for admin (qid 0) or I/O queues; also the source of the Commands Supported and Effects log. */
  commandTable(admin: boolean): ReadonlyMap<number, CommandEntry> {
    return this.commandTables[admin ? 0 : 1];
  }

  /** Bumped by every reset: completions of commands fetched before it are dropped. */
  get epoch(): number {
    return Atomics.load(this.globals, G_EPOCH);
  }

  /** Host memory page size from CC.MPS, fixed while enabled. */
  get pageSize(): number {
    return this.globals[G_PAGE_SIZE]!;
  }

  /** Volatile Write Cache Enable, read on every write. */
  get writeCacheEnabled(): boolean {
    return Atomics.load(this.globals, G_VWC) === 1;
  }

  setWriteCacheEnabled(on: boolean): void {
    this.features.volatileWriteCache = on ? 1 : 0;
    Atomics.store(this.globals, G_VWC, on ? 1 : 0);
  }

  /** The SQ with this QID, or undefined when it does not exist. */
  sq(qid: number): SubmissionQueue | undefined {
    if (!Number.isInteger(qid) || qid < 0 || qid > this.queues.maxQid) return undefined;
    const v = (this.sqViews[qid] ??= new SubmissionQueue(this.queues, qid));
    return v.valid ? v : undefined;
  }

  cq(qid: number): CompletionQueue | undefined {
    if (!Number.isInteger(qid) || qid < 0 || qid > this.queues.maxQid) return undefined;
    const v = (this.cqViews[qid] ??= new CompletionQueue(this.queues, qid));
    return v.valid ? v : undefined;
  }

  /** A view for creating a queue (Create I/O SQ / CQ). */
  sqSlot(qid: number): SubmissionQueue {
    return (this.sqViews[qid] ??= new SubmissionQueue(this.queues, qid));
  }

  cqSlot(qid: number): CompletionQueue {
    return (this.cqViews[qid] ??= new CompletionQueue(this.queues, qid));
  }

  /**
   * Forgets the commands of an SQ whose only executing thread died: their
   * backend callbacks will never run, so a Delete I/O SQ would wait for them
   * forever. (The controller-wide count is the thread's: `abandonThread`.)
   */
  abandonInflight(qid: number): number {
    const sq = this.sq(qid);
    if (!sq) return 0;
    const n = Atomics.exchange(sq.words, sq.inflightIndex, 0);
    // Each is completed here as the Delete I/O SQ that follows would have: aborted, into the room its fetch reserved.
    const cq = this.cq(sq.cqid);
    const base = qid * CID_WORDS;
    for (let i = 0; i < CID_WORDS; i++) {
      let bits = Atomics.exchange(this.inflightCids, base + i, 0);
      while (bits !== 0) {
        const bit = 31 - Math.clz32(bits);
        bits &= ~(1 << bit);
        if (!cq) continue;
        const cmd = decodeCommandWords(new Uint32Array(16), 0);
        cmd.cid = i * 32 + bit;
        this.postCompletion({ sq, cq, cmd, epoch: this.epoch, io: true, status: 0, forced: 0, dw0: 0, pending: 0, done: true, lba: 0, bytes: 0, listed: -1 }, ABORTED_SQ_DELETION);
      }
    }
    if (n > 0) Atomics.notify(sq.words, sq.inflightIndex);
    return n;
  }

  /** This thread's executing requests of an SQ (for Abort). */
  requestsOf(qid: number): readonly Request[] {
    return this.mine[qid] ?? [];
  }

  private list(req: Request): void {
    const mine = (this.mine[req.sq.qid] ??= []);
    req.listed = mine.length;
    mine.push(req);
  }

  private unlist(req: Request): void {
    const at = req.listed;
    if (at < 0) return;
    req.listed = -1;
    const mine = this.mine[req.sq.qid]!;
    const last = mine.pop()!;
    if (last !== req) {
      mine[at] = last;
      last.listed = at;
    }
  }

  // ---------------------------------------------------------------- registers

  private get cc(): number {
    return this.regs.getUint32(Regs.CC.offset, true);
  }

  private setCsts(field: typeof Csts.RDY, value: number): void {
    writeField(this.regs, Regs.CSTS.offset, field, value);
  }

  mmioRead32(offset: number): number {
    if (offset === Regs.INTMS.offset || offset === Regs.INTMC.offset) return this.intMask >>> 0;
    if (offset < 0 || offset + 4 > this.bar.byteLength || offset % 4 !== 0) return 0xffffffff;
    return this.regs.getUint32(offset, true);
  }

  mmioRead64(offset: number): number {
    return this.mmioRead32(offset) + this.mmioRead32(offset + 4) * 0x1_0000_0000;
  }

  mmioWrite64(offset: number, value: number): void {
    if (offset === Regs.ASQ.offset || offset === Regs.ACQ.offset || offset === Regs.CAP.offset) {
      this.mmioWrite32(offset, value % 0x1_0000_0000);
      this.mmioWrite32(offset + 4, Math.floor(value / 0x1_0000_0000));
      return;
    }
    trace('host broke the spec: 64-bit write to 0x%s', offset.toString(16));
  }

  mmioWrite32(offset: number, value: number): void {
    value >>>= 0;
    if (offset >= DOORBELL_BASE) return this.writeDoorbell(offset, value);
    if (this.role === 'io') {
      trace('register 0x%s written from an I/O thread: only doorbells are executed there', offset.toString(16));
      return;
    }
    switch (offset) {
      case Regs.INTMS.offset:
        this.intMask = (this.intMask | value) >>> 0;
        return;
      case Regs.INTMC.offset: {
        this.intMask = (this.intMask & ~value) >>> 0;
        const fire = this.intPending & value;
        this.intPending &= ~value;
        for (let v = 0; v < 32; v++) if (fire & (1 << v)) this.onInterrupt(v);
        return;
      }
      case Regs.CC.offset:
        return this.writeCc(value);
      case Regs.CSTS.offset:
        // NSSRO is write-1-to-clear; the rest is read-only.
        if (value & (1 << Csts.NSSRO.shift)) this.setCsts(Csts.NSSRO, 0);
        return;
      case Regs.NSSR.offset:
        if (value === NSSR_RESET_VALUE) this.subsystemReset();
        return;
      case Regs.AQA.offset:
      case Regs.ASQ.offset:
      case Regs.ASQ.offset + 4:
      case Regs.ACQ.offset:
      case Regs.ACQ.offset + 4:
        this.regs.setUint32(offset, value, true);
        return;
      default:
        trace('host broke the spec: write of 0x%s to read-only or reserved register 0x%s', value.toString(16), offset.toString(16));
    }
  }

  private writeCc(value: number): void {
    const old = this.cc;
    const wasEn = readField(this.regs, Regs.CC.offset, Cc.EN);
    const oldShn = readField(this.regs, Regs.CC.offset, Cc.SHN);
    this.regs.setUint32(Regs.CC.offset, value, true);
    const en = value & 1;
    const shn = readField(this.regs, Regs.CC.offset, Cc.SHN);
    if (!wasEn && en) this.enable();
    else if (wasEn && !en) this.reset();
    else if (wasEn && en && (old & ~((3 << Cc.SHN.shift) | (0xff << Cc.IOSQES.shift))) !== (value & ~((3 << Cc.SHN.shift) | (0xff << Cc.IOSQES.shift)))) {
      trace('host broke the spec: CC.CSS / MPS / AMS changed while enabled');
    }
    if (en && shn !== 0 && oldShn === 0) this.shutdown();
  }

  /** Why CC.EN 0 → 1 cannot bring the controller up, or undefined when it can (3.1.5, 7.6.1). */
  private enableProblem(): string | undefined {
    const cc = Regs.CC.offset;
    const mps = readField(this.regs, cc, Cc.MPS);
    const mpsMin = readField(this.regs, Regs.CAP_LO.offset, Cap.MPSMIN);
    const mpsMax = readField(this.regs, Regs.CAP_LO.offset, Cap.MPSMAX);
    if (mps < mpsMin || mps > mpsMax) return `CC.MPS ${mps} outside CAP.MPSMIN..MPSMAX (${mpsMin}..${mpsMax})`;
    if (readField(this.regs, cc, Cc.CSS) !== CC_CSS_NVM) return `CC.CSS ${readField(this.regs, cc, Cc.CSS)} names a command set this controller lacks`;
    if (readField(this.regs, cc, Cc.AMS) !== 0) return `CC.AMS ${readField(this.regs, cc, Cc.AMS)} is not supported (CAP.AMS = 0)`;
    const iosqes = readField(this.regs, cc, Cc.IOSQES);
    const iocqes = readField(this.regs, cc, Cc.IOCQES);
    if (iosqes !== 0 && iosqes !== SQE_SIZE_LOG2) return `CC.IOSQES ${iosqes} is not ${SQE_SIZE_LOG2}`;
    if (iocqes !== 0 && iocqes !== CQE_SIZE_LOG2) return `CC.IOCQES ${iocqes} is not ${CQE_SIZE_LOG2}`;
    const asqs = readField(this.regs, Regs.AQA.offset, Aqa.ASQS);
    const acqs = readField(this.regs, Regs.AQA.offset, Aqa.ACQS);
    if (asqs === 0 || acqs === 0) return `AQA.ASQS ${asqs} / ACQS ${acqs}: an admin queue needs at least 2 entries`;
    if (asqs > this.mqes || acqs > this.mqes) return `AQA sizes exceed CAP.MQES ${this.mqes}`;
    const ps = pageSizeOf(mps);
    const asq = this.regs.getUint32(Regs.ASQ.offset, true) + this.regs.getUint32(Regs.ASQ.offset + 4, true) * 0x1_0000_0000;
    const acq = this.regs.getUint32(Regs.ACQ.offset, true) + this.regs.getUint32(Regs.ACQ.offset + 4, true) * 0x1_0000_0000;
    if (asq === 0 || asq % ps !== 0) return `ASQ 0x${asq.toString(16)} is not a non-zero page-aligned address`;
    if (acq === 0 || acq % ps !== 0) return `ACQ 0x${acq.toString(16)} is not a non-zero page-aligned address`;
    if (this.arena.translate(asq, (asqs + 1) * SQE_SIZE) < 0) return `admin SQ at 0x${asq.toString(16)} lies outside host memory`;
    if (this.arena.translate(acq, (acqs + 1) * CQE_SIZE) < 0) return `admin CQ at 0x${acq.toString(16)} lies outside host memory`;
    return undefined;
  }

  private enable(): void {
    if (this.state === 'resetting') {
      trace('host broke the spec: CC.EN set before CSTS.RDY cleared');
    }
    this.setCsts(Csts.SHST, ShutdownStatus.NORMAL);
    const problem = this.enableProblem();
    if (problem) {
      // A configuration the controller cannot run is a controller fatal status (3.1.6).
      trace('enable refused: %s', problem);
      this.state = 'failed';
      this.setCsts(Csts.CFS, 1);
      return;
    }
    this.globals[G_PAGE_SIZE] = pageSizeOf(readField(this.regs, Regs.CC.offset, Cc.MPS));
    const asqs = readField(this.regs, Regs.AQA.offset, Aqa.ASQS) + 1;
    const acqs = readField(this.regs, Regs.AQA.offset, Aqa.ACQS) + 1;
    const asq = this.regs.getUint32(Regs.ASQ.offset, true) + this.regs.getUint32(Regs.ASQ.offset + 4, true) * 0x1_0000_0000;
    const acq = this.regs.getUint32(Regs.ACQ.offset, true) + this.regs.getUint32(Regs.ACQ.offset + 4, true) * 0x1_0000_0000;
    this.queues.clear();
    this.inflightCids.fill(0);
    this.cqSlot(0).init(acq, this.arena.translate(acq, acqs * CQE_SIZE), acqs, true, 0).addSq(1);
    this.sqSlot(0).init(asq, this.arena.translate(asq, asqs * SQE_SIZE), asqs, 0, 0);
    this.state = 'enabling';
    const ready = (): void => {
      if (this.state !== 'enabling') return;
      this.state = 'ready';
      Atomics.store(this.globals, G_READY, 1);
      this.setCsts(Csts.RDY, 1);
    };
    if (this.readyDelayMs > 0) {
      clearTimeout(this.readyTimer);
      this.readyTimer = setTimeout(ready, this.readyDelayMs).unref();
    } else {
      ready();
    }
  }

  /**
   * Controller reset (CC.EN 1 → 0, 7.3.2): every I/O queue is deleted, commands
   * in flight are dropped without completions, held AERs are discarded, features
   * return to their defaults. CSTS.RDY clears once backend operations already
   * started have finished, so no late completion can touch host memory.
   */
  private reset(): void {
    Atomics.add(this.globals, G_EPOCH, 1);
    Atomics.store(this.globals, G_READY, 0);
    this.state = 'resetting';
    this.aerWaiting.length = 0;
    this.aerPending.length = 0;
    this.aerMasked.clear();
    // Queues vanish at once; commands still executing see the new epoch and post nothing.
    for (let qid = 0; qid <= this.queues.maxQid; qid++) {
      this.sqSlot(qid).invalidate();
      this.cqSlot(qid).invalidate();
    }
    // What this thread's rings hold is cancelled rather than waited for (other threads' I/O finishes on its own).
    for (const qid of [...this.rings.keys()]) this.retireRing(qid);
    Object.assign(this.features, defaultFeatures(this.maxIoQueues));
    Atomics.store(this.globals, G_VWC, 1);
    this.grantedSqs = this.maxIoQueues;
    this.grantedCqs = this.maxIoQueues;
    this.ioQueuesCreated = false;
    this.intMask = 0;
    this.intPending = 0;
    this.setCsts(Csts.CFS, 0);
    this.whenDrained(() => {
      if (this.state !== 'resetting') return;
      this.state = 'disabled';
      this.setCsts(Csts.RDY, 0);
    });
  }

  private subsystemReset(): void {
    if (!readField(this.regs, Regs.CAP_LO.offset, Cap.NSSRS)) return;
    this.regs.setUint32(Regs.CC.offset, 0, true);
    this.reset();
    this.setCsts(Csts.NSSRO, 1);
  }

  /** Orderly shutdown (CC.SHN, 7.6.2): finish what is in flight, flush every namespace, report SHST complete. */
  private shutdown(): void {
    this.setCsts(Csts.SHST, ShutdownStatus.PROCESSING);
    const epoch = this.epoch;
    this.whenDrained(() => {
      let left = this.namespaces.size;
      const one = (err: BackendError | null): void => {
        if (err) trace('shutdown flush failed: %s', err.message);
        if (--left === 0 && this.epoch === epoch) this.setCsts(Csts.SHST, ShutdownStatus.COMPLETE);
      };
      if (left === 0) return this.setCsts(Csts.SHST, ShutdownStatus.COMPLETE);
      for (const ns of this.namespaces.values()) {
        try {
          ns.backend.flush(one);
        } catch (e) {
          one(new BackendError('internal', `backend threw: ${(e as Error).message}`));
        }
      }
    });
  }

  /** Commands fetched and not completed, across all threads. */
  private inflightTotal(): number {
    let n = 0;
    for (let w = this.threadBase; w < this.globals.length; w += THREAD_STRIDE) n += Atomics.load(this.globals, w);
    return n;
  }

  /** A thread's count reached 0 while someone drains: wake the drainers to sum the counts again. */
  private drained(): void {
    Atomics.add(this.globals, G_DRAIN_SEQ, 1);
    Atomics.notify(this.globals, G_DRAIN_SEQ);
  }

  /** Runs `fn` once no command is executing in any thread (at once when none is). */
  whenDrained(fn: () => void): void {
    if (this.inflightTotal() === 0) return fn();
    Atomics.add(this.globals, G_DRAINING, 1);
    void (async () => {
      try {
        for (;;) {
          // The sequence is read before the counts: a count that drops to 0 after the sum bumps it, and the wait returns at once.
          const seq = Atomics.load(this.globals, G_DRAIN_SEQ);
          if (this.inflightTotal() === 0) return;
          await waitAsyncAlive(this.globals, G_DRAIN_SEQ, seq);
        }
      } finally {
        Atomics.sub(this.globals, G_DRAINING, 1);
        fn();
      }
    })();
  }

  // ---------------------------------------------------------------- doorbells

  private writeDoorbell(offset: number, value: number): void {
    const stride = 4 << this.dstrd;
    const rel = offset - DOORBELL_BASE;
    if (rel % stride !== 0 || offset + 4 > this.bar.byteLength) {
      return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `write to 0x${offset.toString(16)}, not a doorbell`);
    }
    Atomics.store(this.barWords, offset >> 2, value | 0);
    if (Atomics.load(this.globals, G_READY) !== 1 || (this.role === 'io' && offset < DOORBELL_BASE + 2 * stride)) {
      trace('host broke the spec: doorbell 0x%s written while the controller is not ready', offset.toString(16));
      return;
    }
    const index = rel / stride;
    const qid = index >> 1;
    if (index & 1) this.writeCqHead(qid, value);
    else this.writeSqTail(qid, value);
  }

  private invalidDoorbell(info: number, why: string): void {
    trace('host broke the spec: %s', why);
    const dw0 = (AsyncEventType.ERROR & 0x7) | ((info & 0xff) << 8) | ((LogPageId.ERROR_INFORMATION & 0xff) << 16);
    if (this.role === 'main') return this.raiseAsyncEvent(AsyncEventType.ERROR, info, LogPageId.ERROR_INFORMATION);
    // Events belong to the admin queue's thread: hand it over through the globals. When all slots are
    // taken the event is dropped, as the same type is masked until its log page is read anyway.
    for (let i = 0; i < G_EVENT_SLOTS; i++) {
      if (Atomics.compareExchange(this.globals, G_EVENTS + i, 0, dw0 | EVENT_PRESENT) === 0) {
        Atomics.add(this.globals, G_EVENTS_POSTED, 1);
        Atomics.notify(this.globals, G_EVENTS_POSTED);
        return;
      }
    }
  }

  /**
   * Main thread: takes the asynchronous events I/O threads posted and raises
   * them. The wait holds no event-loop handle.
   */
  private async watchEvents(): Promise<void> {
    let seen = Atomics.load(this.globals, G_EVENTS_POSTED);
    while (!this.closed) {
      const r = Atomics.waitAsync(this.globals, G_EVENTS_POSTED, seen);
      if (r.async) await r.value;
      seen = Atomics.load(this.globals, G_EVENTS_POSTED);
      for (let i = 0; i < G_EVENT_SLOTS; i++) {
        const w = Atomics.exchange(this.globals, G_EVENTS + i, 0);
        if (w & EVENT_PRESENT) this.raiseAsyncEvent(w & 0x7, (w >>> 8) & 0xff, (w >>> 16) & 0xff);
      }
    }
  }

  private writeSqTail(qid: number, tail: number): void {
    const sq = this.sq(qid);
    if (!sq || sq.deleting) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `SQ ${qid} tail doorbell, but SQ ${qid} does not exist`);
    if (tail >= sq.size) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_VALUE, `SQ ${qid} tail ${tail} >= size ${sq.size}`);
    sq.tail = tail;
    this.processSq(sq);
  }

  private writeCqHead(qid: number, head: number): void {
    const cq = this.cq(qid);
    if (!cq) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_REGISTER, `CQ ${qid} head doorbell, but CQ ${qid} does not exist`);
    cq.lock.lock();
    const posted = (cq.tail - cq.head + cq.size) % cq.size;
    const consumed = (head - cq.head + cq.size) % cq.size;
    const bad = head >= cq.size || consumed > posted;
    if (!bad) {
      cq.head = head;
      cq.used -= consumed;
    }
    cq.lock.unlock();
    if (bad) return this.invalidDoorbell(AsyncErrorInfo.INVALID_DOORBELL_VALUE, `CQ ${qid} head ${head} past the ${posted} posted entries`);
    // Room again: fetch what the SQs posting here left waiting.
    if (consumed > 0) {
      for (let q = 0; q <= this.queues.maxQid; q++) {
        const sq = this.sq(q);
        // Only an SQ with commands waiting can have stopped for room (the common case has none: no fetch).
        if (sq && sq.cqid === qid && sq.tail !== sq.head) this.processSq(sq);
      }
    }
  }

  /**
   * Fetches and executes the commands between the SQ's head and tail, while
   * its CQ has room for their completions. One thread fetches a queue at a
   * time; a thread that finds another fetching leaves it a note to look again.
   */
  private processSq(sq: SubmissionQueue): void {
    const cq = this.cq(sq.cqid);
    if (!cq) return;
    // One clock reading serves every command this doorbell runs to completion.
    const outer = this.clock === undefined;
    if (outer) this.clock = performance.now();
    try {
      this.fetchAll(sq, cq);
    } finally {
      // One io_uring_enter for everything this doorbell fetched; what it completes inline (page-cache hits)
      // is timed with the doorbell's clock, as a memory namespace's commands are.
      try {
        if (this.ringNative) this.ringByQid[sq.qid]?.ring.submit();
      } finally {
        if (outer) this.clock = undefined;
      }
    }
  }

  /**
   * The io_uring for commands of `sq` executing in this thread, made on first
   * use; undefined on the portable path. A ring left from an earlier
   * creation of the same QID (deleted meanwhile) is torn down first.
   */
  ringFor(sq: SubmissionQueue): IoRing | undefined {
    if (!this.ringNative || sq.qid === 0) return undefined;
    const had = this.ringByQid[sq.qid];
    const generation = sq.generation;
    if (had && had.generation === generation) return had.ring;
    if (had) this.retireRing(sq.qid);
    let ring: IoRing;
    try {
      ring = new IoRing(this.ringNative, this.arena, sq.size);
    } catch (e) {
      // Out of memory or locked-memory limit: this thread goes on without rings rather than failing I/O.
      this.ringNative = null;
      notePortable(`io_uring setup failed (${(e as Error).message}); this thread's file I/O uses the portable node:fs path`);
      return undefined;
    }
    ring.registerFiles([...this.namespaces.values()].flatMap((ns) => (ns.backend instanceof FileBackend ? [ns.backend.descriptor] : [])));
    // O_DIRECT transfers pin their pages in the kernel per operation unless the arena is registered (about
    // 9% less CPU per 4 KiB O_DIRECT read here); reads from the page cache gain nothing from it, and the
    // registration pins the whole arena, so only rings serving an O_DIRECT namespace register it.
    if (this.hasDirectFile) ring.registerBuffers();
    const entry = { ring, generation };
    this.rings.set(sq.qid, entry);
    this.ringByQid[sq.qid] = entry;
    return ring;
  }

  /** Stamps a newly created I/O SQ with a fresh generation (Create I/O SQ). */
  stampGeneration(sq: SubmissionQueue): void {
    sq.generation = Atomics.add(this.globals, G_SQ_GENERATION, 1) + 1;
  }

  /**
   * Tears down this thread's ring for `qid`: operations still in flight are
   * cancelled and waited for, and their commands complete (aborted unless the
   * kernel had finished them).
   */
  retireRing(qid: number): void {
    const had = this.rings.get(qid);
    if (!had) return;
    this.rings.delete(qid);
    this.ringByQid[qid] = undefined;
    had.ring.close();
  }

  /**
   * Blocks this thread until its first ring with operations in flight (in
   * the engine, a worker's only one) finishes one or `timeoutMs` passes, then
   * completes what that ring finished; polls that ring for up to `spinUs`
   * first. Returns how many; 0 at once when no ring of this thread has
   * anything in flight.
   */
  waitRings(timeoutMs: number, spinUs = 0): number {
    for (const { ring } of this.rings.values()) if (ring.inflight > 0) return ring.wait(timeoutMs, spinUs);
    return 0;
  }

  /** Completes what this thread's rings have finished, without a system call (polled mode). Returns how many. */
  pollRings(): number {
    let n = 0;
    for (const { ring } of this.rings.values()) n += ring.poll();
    return n;
  }

  /** Time for busy-time accounting: the doorbell's clock while one runs, else now. */
  private now(): number {
    return this.clock ?? performance.now();
  }

  private fetchAll(sq: SubmissionQueue, cq: CompletionQueue): void {
    do {
      if (!sq.lock.tryLock()) {
        sq.requestRerun();
        // The holder may have checked for a rerun just before our note: try once more.
        if (!sq.lock.tryLock()) return;
      }
      try {
        sq.takeRerun();
        for (;;) {
          const waiting = (sq.tail - sq.head + sq.size) % sq.size;
          if (waiting === 0) break;
          // Room in the CQ for as many of them as fit, reserved in one step.
          const n = cq.reserve(waiting);
          if (n === 0) break;
          // Count them in flight before the last checks: a Delete I/O SQ or a reset that reads the counts
          // after this either sees them or finds the queue / controller state that stops the fetch.
          const epoch = this.epoch;
          sq.addInflight(n);
          Atomics.add(this.globals, this.threadWord, n);
          if (Atomics.load(this.globals, G_READY) !== 1 || !sq.valid || sq.deleting || this.epoch !== epoch) {
            cq.unreserve(n);
            this.leave(sq, n);
            break;
          }
          for (let i = 0; i < n; i++) {
            const head = sq.head;
            sq.head = (head + 1) % sq.size;
            const cmd = decodeCommandWords(this.arena.u32, (sq.offset + head * SQE_SIZE) >> 2);
            this.execute(sq, cq, cmd, epoch);
          }
        }
      } finally {
        sq.lock.unlock();
      }
    } while (sq.takeRerun());
  }

  // ---------------------------------------------------------------- execution

  /** Runs a fetched command; the fetch has already counted it in flight. */
  private execute(sq: SubmissionQueue, cq: CompletionQueue, cmd: ReturnType<typeof decodeCommandWords>, epoch: number): void {
    const io = sq.qid !== 0;
    const req: Request = { sq, cq, cmd, epoch, io, status: 0, forced: 0, dw0: 0, pending: 1, done: false, lba: 0, bytes: 0, listed: -1 };
    Atomics.or(this.inflightCids, sq.qid * CID_WORDS + (cmd.cid >>> 5), 1 << (cmd.cid & 31));
    if (io) this.health.ioStarted(this.now());
    let status: number;
    try {
      if (cmd.fuse !== 0 || cmd.psdt !== 0) {
        // Fused operations and SGLs are not supported (Identify FUSES = 0, SGLS = 0).
        status = INVALID_FIELD;
      } else {
        const entry = this.handlers[io ? 1 : 0][cmd.opcode];
        status = entry ? entry.handler(this, req) : INVALID_OPCODE;
      }
    } catch (e) {
      trace('internal error in %s: %s', opcodeName(cmd.opcode, !io), (e as Error).stack);
      status = INTERNAL_ERROR;
    }
    if (status === HELD) return;
    // Still waiting for backend operations: Abort may look for it. (A command that completed inside the
    // dispatch never needs finding, so the common memory case skips the bookkeeping.)
    if (req.pending > 1) this.list(req);
    this.release(req, status);
  }

  /**
   * Runs one backend operation of `req`: the command holds until `done` is
   * called, once. A backend that throws instead of calling back fails that
   * operation with Internal Error rather than leaving the command to hang.
   */
  backendOp(req: Request, op: (done: IoDone) => void): void {
    req.pending++;
    let called = false;
    const done: IoDone = (err) => {
      if (called) return;
      called = true;
      this.release(req, err ? backendStatus(err) : 0);
    };
    try {
      op(done);
    } catch (e) {
      done(new BackendError('internal', `backend threw: ${(e as Error).message}`));
    }
  }

  /** Drops one hold on `req`, recording its status; posts the completion when the last hold goes. */
  release(req: Request, status: number): void {
    if (status !== 0 && (req.status === 0 || statusCode(status) === statusCode(INTERNAL_ERROR))) req.status = status;
    if (--req.pending === 0) this.finish(req);
  }

  /** Takes `req` out of the in-flight accounting without completing it (a held AER keeps its CQ reservation). */
  detach(req: Request): void {
    this.forgetCid(req);
    this.unlist(req);
    this.leave(req.sq);
  }

  /** Clears `req`'s bit among its SQ's in-flight CIDs. */
  private forgetCid(req: Request): void {
    Atomics.and(this.inflightCids, req.sq.qid * CID_WORDS + (req.cmd.cid >>> 5), ~(1 << (req.cmd.cid & 31)));
  }

  /** One command fewer in flight on `sq`: wakes a Delete I/O SQ or a reset waiting for the count to drain. */
  private leave(sq: SubmissionQueue, n = 1): void {
    // Only Delete I/O SQ waits on an SQ's count, and only a drain (reset, shutdown, close) on the threads' counts.
    if (sq.addInflight(-n) === 0 && sq.deleting) Atomics.notify(sq.words, sq.inflightIndex);
    if (Atomics.sub(this.globals, this.threadWord, n) === n && Atomics.load(this.globals, G_DRAINING) > 0) this.drained();
  }

  private finish(req: Request): void {
    if (req.done) return;
    req.done = true;
    this.forgetCid(req);
    const sq = req.sq;
    this.unlist(req);
    // A command still executing when its SQ was deleted completes as aborted (5.6).
    const status = req.forced || (sq.deleting ? ABORTED_SQ_DELETION : 0) || req.status;
    if (req.io) {
      this.health.ioFinished(this.now());
      this.countIo(req, status);
    }
    if (req.epoch === this.epoch && req.cq.valid) {
      if (status !== 0) trace('%s qid %d cid %d: %s', opcodeName(req.cmd.opcode, !req.io), sq.qid, req.cmd.cid, formatStatus(status));
      this.postCompletion(req, status);
    }
    this.leave(sq);
  }

  private countIo(req: Request, status: number): void {
    const op = req.cmd.opcode;
    if (status === 0) {
      if (op === 0x02) {
        this.health.add(HealthCounter.HOST_READ_COMMANDS, 1);
        this.health.add(HealthCounter.UNITS_READ, req.bytes / 512);
      } else if (op === 0x01) {
        this.health.add(HealthCounter.HOST_WRITE_COMMANDS, 1);
        this.health.add(HealthCounter.UNITS_WRITTEN, req.bytes / 512);
      }
    } else if (statusCode(status) === statusCode(UNRECOVERED_READ_ERROR) || statusCode(status) === statusCode(WRITE_FAULT)) {
      this.health.add(HealthCounter.MEDIA_ERRORS, 1);
    }
  }

  /**
   * Posts the CQE of `req` into the room reserved when it was fetched, and
   * records a failure in the error log.
   */
  postCompletion(req: Request, status: number): void {
    const { sq, cq } = req;
    const cid = req.cmd.cid;
    cq.lock.lock();
    const phase = cq.phase;
    postCompletionWords(this.arena.u32, (cq.offset + cq.tail * CQE_SIZE) >> 2, { dw0: req.dw0, dw1: 0, sqhd: sq.head, sqid: sq.qid, cid, status, phase });
    cq.tail++;
    if (cq.tail === cq.size) {
      cq.tail = 0;
      cq.phase ^= 1;
    }
    cq.lock.unlock();
    if (status !== 0) this.errorLog.record({ sqid: sq.qid, cid, status, phase, nsid: req.cmd.nsid, lba: req.lba, paramErrorLocation: 0xffff });
    if (cq.interruptsEnabled) this.raiseInterrupt(cq.vector);
  }

  /**
   * Raises a vector: in this thread through the transport's handler, and for
   * a vector whose handler lives in another thread by bumping its shared word
   * (the owner waits on it).
   */
  private raiseInterrupt(vector: number): void {
    if (vector < 32 && this.intMask & (1 << vector)) {
      this.intPending |= 1 << vector;
      return;
    }
    if (this.localVectors[vector] === 1) this.onInterrupt(vector);
    else {
      Atomics.add(this.globals, G_IRQ + vector, 1);
      Atomics.notify(this.globals, G_IRQ + vector);
    }
  }

  /** Vectors whose interrupt handler runs in this thread (set by the transport). */
  readonly localVectors: Uint8Array;

  /** The shared word a thread waits on for a vector raised elsewhere. */
  interruptWord(vector: number): { words: Int32Array; index: number } {
    return { words: this.globals, index: G_IRQ + vector };
  }

  // ---------------------------------------------------------------- async events

  /** Queues an asynchronous event (5.2) and completes a held AER with it when one is outstanding. */
  raiseAsyncEvent(type: number, info: number, lid: number): void {
    this.aerPending.push((type & 0x7) | ((info & 0xff) << 8) | ((lid & 0xff) << 16));
    this.deliverAsyncEvents();
  }

  deliverAsyncEvents(): void {
    while (this.aerWaiting.length > 0) {
      const i = this.aerPending.findIndex((dw0) => !this.aerMasked.has(dw0 & 0x7));
      if (i < 0) return;
      const dw0 = this.aerPending.splice(i, 1)[0]!;
      // An event type stays masked until the host reads its log page (5.2).
      this.aerMasked.add(dw0 & 0x7);
      const req = this.aerWaiting.shift()!;
      req.dw0 = dw0;
      if (req.epoch === this.epoch) this.postCompletion(req, 0);
    }
  }

  // ---------------------------------------------------------------- data transfer helpers

  /** MDTS in bytes, or Infinity. */
  get maxTransfer(): number {
    // CAP.MPSMIN is fixed at construction: computed once, not per command.
    return (this.maxTransferBytes ??= this.mdts === 0 ? Infinity : (1 << this.mdts) * pageSizeOf(readField(this.regs, Regs.CAP_LO.offset, Cap.MPSMIN)));
  }
  private maxTransferBytes: number | undefined;

  /** Maps the command's PRPs for `length` bytes. */
  mapData(req: Request, length: number): { status: number; segments: Uint8Array[] } {
    if (length > this.maxTransfer) return { status: INVALID_FIELD, segments: [] };
    return mapPrps(this.arena, req.cmd.prp1, req.cmd.prp2, length, this.pageSize);
  }

  /** Controller → host copy of a small structure (Identify, log pages); bytes past `data` are zero. */
  sendToHost(req: Request, data: Uint8Array, length = data.length): number {
    const m = this.mapData(req, length);
    if (m.status) return m.status;
    scatter(m.segments, data);
    return 0;
  }

  /** Host → controller copy of a small structure (DSM ranges). */
  receiveFromHost(req: Request, length: number): { status: number; data: Uint8Array } {
    const m = this.mapData(req, length);
    if (m.status) return { status: m.status, data: new Uint8Array(0) };
    return { status: 0, data: gather(m.segments, length) };
  }

  /** Closes this thread's rings and every backend; call after the host has shut the controller down. */
  async close(): Promise<void> {
    if (this.role === 'main' && !this.closed) {
      // End the event watcher: a pending waitAsync holds the controller (and its arena and namespaces) alive.
      this.closed = true;
      clearTimeout(this.readyTimer);
      Atomics.add(this.globals, G_EVENTS_POSTED, 1);
      Atomics.notify(this.globals, G_EVENTS_POSTED);
    }
    await new Promise<void>((resolve) => this.whenDrained(resolve));
    for (const qid of [...this.rings.keys()]) this.retireRing(qid);
    for (const ns of this.namespaces.values()) await ns.backend.close();
  }
}


export interface FeatureValues {
  arbitration: number;
  /** Over / under thresholds (Kelvin) of the composite sensor and sensor 1: [sensor * 2 + THSEL]. */
  temperatureThresholds: number[];
  /** SMART Critical Warning bit 1 as of the last Set Features, so the event is raised once per crossing. */
  temperatureWarning: boolean;
  volatileWriteCache: number;
  asyncEventConfig: number;
  /** Number of Queues as returned in DW0: NCQA << 16 | NSQA, 0's based. */
  numberOfQueues: number;
}

export function defaultFeatures(maxIoQueues: number): FeatureValues {
  return {
    arbitration: 0,
    temperatureThresholds: defaultTemperatureThresholds(),
    temperatureWarning: false,
    volatileWriteCache: 1,
    asyncEventConfig: 0,
    numberOfQueues: (((maxIoQueues - 1) << 16) | (maxIoQueues - 1)) >>> 0,
  };
}

/** Composite over threshold = WCTEMP (343 K, 70 °C), sensor over = FFFFh, under thresholds 0 (5.21.1.4). */
export function defaultTemperatureThresholds(): number[] {
  return [343, 0, 0xffff, 0];
}
