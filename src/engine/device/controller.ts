/**
 * The NVMe controller in this process, put together from its parts:
 *
 * - shared-state.ts: the memory every executing thread shares (BAR, queue
 *   directory, in-flight counts, cross-thread interrupt and event words);
 * - register-front.ts: registers and the CC / CSTS state machine (main thread);
 * - executor.ts: doorbell → fetch → execute → post, in the thread that rings;
 * - admin.ts / nvm.ts: the command sets, given a narrow context (context.ts);
 * - admin-state.ts, interrupts.ts, health.ts: feature values and async
 *   events, interrupt routing, SMART counters and the error log.
 *
 * It has no thread of its own. A register or doorbell write runs the
 * controller's reaction in the writing thread, as QEMU handles a trapped
 * MMIO write. `NvmeController` is the main thread's controller: registers,
 * the admin queue and any I/O queue whose doorbell this thread rings.
 * `IoThreadController` is the same controller attached in another thread
 * from its handle: it executes the I/O queues whose doorbells that thread
 * rings. Both are an `InProcessDevice`, what the local transport drives.
 */
import { debuglog } from 'node:util';
import { DmaArena, type DmaArenaHandle } from '../dma-arena.js';
import { backendFromHandle, type BackendHandle } from './backends/handle.js';
import { Namespace, type LbaSize, type NamespaceConfig } from './namespace.js';
import { DOORBELL_BASE, Regs } from '../spec/registers.js';
import { ErrorLog, HealthCounter, HealthCounters } from './health.js';
import { adminCommands } from './admin.js';
import { nvmCommands } from './nvm.js';
import { AdminState, AsyncEvents } from './admin-state.js';
import { Interrupts } from './interrupts.js';
import { QueueExecutor } from './executor.js';
import { RegisterFront, type ControllerState } from './register-front.js';
import { MAX_THREAD_SLOTS, SharedState, type SharedControllerMemory } from './shared-state.js';
import { controllerConfig, type ControllerConfig, type ControllerIdentity, type ControllerOptions } from './config.js';
import { RingSet } from '../uring/ring-set.js';
import { loadNative } from '../uring/native.js';
import { resolveDataPath, type DataPath } from '../uring/data-path.js';

const trace = debuglog('nvmq');

/** How long an attached thread's close() waits for its own commands to finish. */
const CLOSE_DRAIN_MS = 30_000;

export type { ControllerIdentity, ControllerOptions };

/** Everything another thread needs to execute this controller's I/O queues (structured-cloneable). */
export interface ControllerHandle {
  memory: SharedControllerMemory;
  arena: DmaArenaHandle;
  namespaces: Array<{ nsid: number; lbaSize: LbaSize; backend: BackendHandle }>;
  options: { maxIoQueues: number; mqes: number; mdts: number; dstrd: number; interruptVectors: number; identity: ControllerIdentity; dataPath: DataPath };
}

/**
 * What the local transport drives: a controller in this process, reached by
 * calls instead of MMIO, with its interrupts routed to this thread's handlers
 * and this thread's io_uring completions reaped on request.
 */
export interface InProcessDevice {
  readonly arena: DmaArena;
  readonly namespaces: ReadonlyMap<number, Namespace>;
  readonly interrupts: Interrupts;
  /** How this thread's file namespaces reach the kernel ('portable' when there are none). */
  readonly dataPath: DataPath;
  mmioRead32(offset: number): number;
  mmioRead64(offset: number): number;
  mmioWrite32(offset: number, value: number): void;
  mmioWrite64(offset: number, value: number): void;
  /** Completes what this thread's rings have finished, without a system call. Returns how many. */
  pollRings(): number;
  /** Blocks until this thread's first busy ring finishes something or `timeoutMs` passes (spinning `spinUs` first). */
  waitRings(timeoutMs: number, spinUs?: number): number;
  /** Operations in flight in this thread's rings. */
  ringsInflight(): number;
  close(): Promise<void>;
}

/**
 * What both kinds of controller are made of, and what they do alike: the
 * shared state (new, or attached from a handle), this thread's namespaces,
 * interrupts, io_uring set and executor.
 */
abstract class ThreadController implements InProcessDevice {
  readonly arena: DmaArena;
  readonly config: ControllerConfig;
  readonly shared: SharedState;
  readonly health: HealthCounters;
  readonly errorLog: ErrorLog;
  readonly namespaces = new Map<number, Namespace>();
  readonly interrupts: Interrupts;
  readonly dataPath: DataPath;
  /** This thread's io_uring instances; undefined on the portable path. */
  readonly rings: RingSet | undefined;
  abstract readonly executor: QueueExecutor;

  constructor(arena: DmaArena, opts: ControllerOptions, memory: SharedControllerMemory | undefined, threadSlot: number) {
    this.arena = arena;
    this.config = controllerConfig(opts);
    this.shared = new SharedState(this.config, memory, opts.namespaces.length);
    this.health = new HealthCounters(memory?.health, threadSlot);
    this.errorLog = new ErrorLog(this.config.errorLogEntries, this.health, memory?.errorLog);
    let next = 1;
    for (const cfg of opts.namespaces) {
      const nsid = cfg.nsid ?? next;
      if (!Number.isInteger(nsid) || nsid < 1 || nsid >= 0xfffffff0) throw new RangeError(`invalid NSID ${nsid}`);
      if (this.namespaces.has(nsid)) throw new RangeError(`NSID ${nsid} is used twice`);
      this.namespaces.set(nsid, new Namespace(nsid, cfg, this.namespaces.size, this.shared.mediaOf(this.namespaces.size)));
      next = nsid + 1;
    }
    this.interrupts = new Interrupts(this.shared, this.config.interruptVectors);
    const backends = [...this.namespaces.values()].map((ns) => ns.backend);
    this.dataPath = backends.some((b) => b.uring) ? resolveDataPath(opts.dataPath ?? 'auto') : 'portable';
    const native = this.dataPath === 'io_uring' ? loadNative() : null;
    this.rings = native ? new RingSet(native, arena, backends) : undefined;
  }

  protected makeExecutor(threadSlot: number, raiseEvent: (dw0: number) => void, ioCommands = nvmCommands()): QueueExecutor {
    const { config, shared, arena, namespaces, health, errorLog, interrupts, rings } = this;
    return new QueueExecutor({ config, shared, arena, namespaces, health, errorLog, interrupts, rings, ioCommands, threadSlot, raiseEvent });
  }

  abstract mmioRead32(offset: number): number;
  abstract mmioWrite32(offset: number, value: number): void;

  mmioRead64(offset: number): number {
    return this.mmioRead32(offset) + this.mmioRead32(offset + 4) * 0x1_0000_0000;
  }

  /** ASQ, ACQ and CAP may be accessed as 64 bits: two 32-bit accesses, low first. */
  mmioWrite64(offset: number, value: number): void {
    if (offset === Regs.CAP.offset || offset === Regs.ASQ.offset || offset === Regs.ACQ.offset) {
      this.mmioWrite32(offset, value % 0x1_0000_0000);
      this.mmioWrite32(offset + 4, Math.floor(value / 0x1_0000_0000));
      return;
    }
    trace('host broke the spec: 64-bit write to 0x%s', offset.toString(16));
  }

  pollRings(): number {
    return this.executor.pollRings();
  }

  waitRings(timeoutMs: number, spinUs = 0): number {
    return this.executor.waitRings(timeoutMs, spinUs);
  }

  ringsInflight(): number {
    return this.rings?.inflight() ?? 0;
  }

  /** Resolves once the commands close() must see finish have finished. */
  protected abstract drained(): Promise<void>;

  /** Waits for what this thread executes to finish, closes its rings and its views of the backends. */
  async close(): Promise<void> {
    await this.drained();
    this.executor.retireRings();
    for (const ns of this.namespaces.values()) await ns.backend.close();
  }
}

/** The main thread's controller: registers, the admin queue, and the I/O queues this thread rings. */
export class NvmeController extends ThreadController {
  readonly executor: QueueExecutor;
  private readonly front: RegisterFront;
  private readonly commandTables: [ReadonlyMap<number, { opcode: number; effects: number }>, ReadonlyMap<number, { opcode: number; effects: number }>];
  /** Set by close(): the event watcher stops. */
  private closed = false;

  constructor(opts: ControllerOptions) {
    super(opts.arena, opts, undefined, 0);
    this.health.add(HealthCounter.POWER_CYCLES, 1);
    const events = new AsyncEvents(
      (req, status) => this.executor.postCompletion(req, status),
      () => this.shared.epoch,
    );
    const admin = new AdminState(this.config.maxIoQueues, events);
    const adminTable = adminCommands();
    const ioTable = nvmCommands();
    this.commandTables = [adminTable, ioTable];
    this.executor = this.makeExecutor(0, (dw0) => events.raiseWord(dw0), ioTable);
    this.executor.serveAdmin(adminTable, {
      io: this.executor,
      config: this.config,
      shared: this.shared,
      admin,
      arena: this.arena,
      health: this.health,
      errorLog: this.errorLog,
      maxNsid: Math.max(0, ...this.namespaces.keys()),
      commandTable: (isAdmin) => this.commandTables[isAdmin ? 0 : 1],
    });
    this.front = new RegisterFront({ config: this.config, shared: this.shared, arena: this.arena, interrupts: this.interrupts, admin, executor: this.executor, namespaces: this.namespaces });
    // Events raised in I/O threads (an invalid doorbell there) reach the admin queue here.
    void this.shared.watchEvents(
      (dw0) => events.raiseWord(dw0),
      () => this.closed,
    );
  }

  /** Every thread's commands: the main thread closes the controller last, after the host shut it down. */
  protected drained(): Promise<void> {
    return new Promise<void>((resolve) => this.shared.whenDrained(resolve));
  }

  /** The controller state CSTS reports. */
  get state(): ControllerState {
    return this.front.state;
  }

  /**
   * Enters controller fatal status (CSTS.CFS): every queue stops and nothing
   * completes until the host resets the controller. The controller's answer
   * to an internal error it cannot recover from; also how that fault is
   * injected into a running engine.
   */
  fail(reason: string): void {
    this.front.fail(reason);
  }

  handle(): ControllerHandle {
    const { config } = this;
    return {
      memory: this.shared.memory(this.health.buffer, this.errorLog.buffer),
      arena: this.arena.handle(),
      namespaces: [...this.namespaces.values()].map((ns) => ({ nsid: ns.nsid, lbaSize: ns.lbaSize as LbaSize, backend: ns.backend.handle() })),
      options: { maxIoQueues: config.maxIoQueues, mqes: config.mqes, mdts: config.mdts, dstrd: config.dstrd, interruptVectors: config.interruptVectors, identity: config.identity, dataPath: this.dataPath },
    };
  }

  /** This controller as seen from another thread: its doorbell writes execute I/O queues there. */
  static attach(h: ControllerHandle, threadSlot: number): IoThreadController {
    return new IoThreadController(h, threadSlot);
  }

  /**
   * A thread died: forgets the commands it was executing, whatever queue
   * they came from, so a reset's drain does not wait for callbacks that will
   * never run. Returns how many.
   */
  abandonThread(threadSlot: number): number {
    return this.shared.abandonSlot(threadSlot);
  }

  /** The same for the commands of an SQ whose only executing thread died: they complete as aborted. */
  abandonInflight(qid: number): number {
    return this.executor.abandonInflight(qid);
  }

  mmioRead32(offset: number): number {
    return this.front.read32(offset);
  }

  mmioWrite32(offset: number, value: number): void {
    value >>>= 0;
    if (offset >= DOORBELL_BASE) this.executor.doorbell(offset, value);
    else this.front.write32(offset, value);
  }

  /** Closes this thread's rings and every backend; call after the host has shut the controller down. */
  override async close(): Promise<void> {
    if (!this.closed) {
      // End the event watcher: a pending waitAsync holds the controller (and its arena and namespaces) alive.
      this.closed = true;
      this.front.close();
      this.shared.wakeEventWatch();
    }
    await super.close();
  }
}

/**
 * The controller attached in another thread: doorbell writes execute the I/O
 * queues there; registers are read from the shared BAR and only the main
 * thread's controller reacts to register writes.
 */
export class IoThreadController extends ThreadController {
  readonly executor: QueueExecutor;

  constructor(
    h: ControllerHandle,
    private readonly threadSlot: number,
  ) {
    if (!Number.isInteger(threadSlot) || threadSlot < 1 || threadSlot >= MAX_THREAD_SLOTS) {
      throw new RangeError(`thread slot must be 1..${MAX_THREAD_SLOTS - 1}, got ${threadSlot}`);
    }
    const arena = new DmaArena(h.arena);
    const namespaces: NamespaceConfig[] = h.namespaces.map((n) => ({ nsid: n.nsid, lbaSize: n.lbaSize, backend: backendFromHandle(n.backend) }));
    super(arena, { ...h.options, arena, namespaces }, h.memory, threadSlot);
    // Events belong to the admin queue's thread: they are handed over through the shared words.
    this.executor = this.makeExecutor(threadSlot, (dw0) => this.shared.postEvent(dw0));
  }

  /**
   * This thread's own commands (their completions run in this thread, so the
   * count only drops while it waits here); other threads' go on. Bounded:
   * what is left after CLOSE_DRAIN_MS is abandoned, as for a thread that died.
   */
  protected async drained(): Promise<void> {
    const deadline = Date.now() + CLOSE_DRAIN_MS;
    while (this.shared.inflightOf(this.threadSlot) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  }

  mmioRead32(offset: number): number {
    return this.shared.readBar(offset);
  }

  mmioWrite32(offset: number, value: number): void {
    if (offset >= DOORBELL_BASE) return this.executor.doorbell(offset, value >>> 0);
    trace('register 0x%s written from an I/O thread: only doorbells are executed there', offset.toString(16));
  }
}
