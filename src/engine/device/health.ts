/**
 * What the controller remembers about its own health: the SMART / Health
 * counters, the Error Information log, and each namespace's media state
 * (whether acknowledged data may have been lost).
 *
 * Counters live in a SharedArrayBuffer, a row per thread, so that any thread
 * executing a queue can count what it completes without contending.
 */
import { performance } from 'node:perf_hooks';
import { AsyncEventType, AsyncSmartInfo, ErrorLogEntry, ERROR_LOG_ENTRY_SIZE, LogPageId, SmartLog, SMART_LOG_SIZE } from '../spec/log-pages.js';
import { writeField } from '../spec/layout.js';
import { Mutex } from '../shared/mutex.js';
import { eventWord } from './admin-state.js';
import { NvmOpcode } from '../spec/opcodes.js';
import { statusCode } from '../spec/status.js';
import { UNRECOVERED_READ_ERROR, WRITE_FAULT } from './status.js';

export const HealthCounter = {
  /** 512-byte units read / written by Read / Write commands. */
  UNITS_READ: 0,
  UNITS_WRITTEN: 1,
  HOST_READ_COMMANDS: 2,
  HOST_WRITE_COMMANDS: 3,
  MEDIA_ERRORS: 4,
  ERROR_LOG_ENTRIES: 5,
  /** Nanoseconds with at least one I/O command outstanding. */
  BUSY_NS: 6,
  POWER_CYCLES: 7,
  UNSAFE_SHUTDOWNS: 8,
} as const;
const COUNTERS = 9;
/**
 * Float64s per row: 192 bytes, the 72 used ones and a gap of 120, so threads counting side by side never
 * write the same cache line, however the buffer is aligned.
 */
const ROW = 24;

/** Rows of counters: one per thread slot (slot 0 is the main thread), each written by its thread only. */
export const HEALTH_ROWS = 1024;

/**
 * Each thread adds to its own row of Float64 counters (a single writer: no
 * atomic read-modify-write on the I/O path); a reader sums the rows. A
 * reader may miss the last few increments of a busy thread, never more.
 */
export class HealthCounters {
  readonly buffer: SharedArrayBuffer;
  private readonly all: Float64Array;
  private readonly row: Float64Array;
  private readonly bornAt = Date.now();
  private outstanding = 0;
  private busySince = 0;

  constructor(buffer?: SharedArrayBuffer, slot = 0) {
    this.buffer = buffer ?? new SharedArrayBuffer(HEALTH_ROWS * ROW * 8);
    this.all = new Float64Array(this.buffer);
    this.row = this.all.subarray(slot * ROW, slot * ROW + COUNTERS);
  }

  add(counter: number, n: number): void {
    this.row[counter]! += n;
  }

  /** Counts a finished I/O command: Host Read / Write Commands and Data Units on success, Media Errors on a media failure. */
  countIo(opcode: number, bytes: number, status: number): void {
    if (status === 0) {
      if (opcode === NvmOpcode.READ) {
        this.add(HealthCounter.HOST_READ_COMMANDS, 1);
        this.add(HealthCounter.UNITS_READ, bytes / 512);
      } else if (opcode === NvmOpcode.WRITE) {
        this.add(HealthCounter.HOST_WRITE_COMMANDS, 1);
        this.add(HealthCounter.UNITS_WRITTEN, bytes / 512);
      }
    } else if (statusCode(status) === statusCode(UNRECOVERED_READ_ERROR) || statusCode(status) === statusCode(WRITE_FAULT)) {
      this.add(HealthCounter.MEDIA_ERRORS, 1);
    }
  }

  get(counter: number): number {
    let sum = 0;
    for (let i = counter; i < this.all.length; i += ROW) sum += this.all[i]!;
    return sum;
  }

  /**
   * Marks an I/O command started / finished at `now` (ms), for Controller Busy
   * Time: this thread's time with at least one command outstanding, added up
   * over threads.
   */
  ioStarted(now: number): void {
    if (this.outstanding++ === 0) this.busySince = now;
  }
  ioFinished(now: number): void {
    if (--this.outstanding === 0) this.add(HealthCounter.BUSY_NS, Math.round((now - this.busySince) * 1e6));
  }

  /** The 512-byte SMART / Health Information log page. */
  encodeSmartLog(temperatureKelvin: number): Uint8Array {
    const out = new Uint8Array(SMART_LOG_SIZE);
    const dv = new DataView(out.buffer);
    writeField(dv, 0, SmartLog.COMPOSITE_TEMPERATURE, temperatureKelvin);
    writeField(dv, 0, SmartLog.AVAILABLE_SPARE, 100);
    writeField(dv, 0, SmartLog.AVAILABLE_SPARE_THRESHOLD, 10);
    // Data units are thousands of 512-byte units, rounded up (Figure 196).
    writeField(dv, 0, SmartLog.DATA_UNITS_READ, Math.ceil(this.get(HealthCounter.UNITS_READ) / 1000));
    writeField(dv, 0, SmartLog.DATA_UNITS_WRITTEN, Math.ceil(this.get(HealthCounter.UNITS_WRITTEN) / 1000));
    writeField(dv, 0, SmartLog.HOST_READ_COMMANDS, this.get(HealthCounter.HOST_READ_COMMANDS));
    writeField(dv, 0, SmartLog.HOST_WRITE_COMMANDS, this.get(HealthCounter.HOST_WRITE_COMMANDS));
    let busyNs = this.get(HealthCounter.BUSY_NS);
    if (this.outstanding > 0) busyNs += (performance.now() - this.busySince) * 1e6;
    writeField(dv, 0, SmartLog.CONTROLLER_BUSY_TIME, Math.floor(busyNs / 60e9));
    writeField(dv, 0, SmartLog.POWER_CYCLES, this.get(HealthCounter.POWER_CYCLES));
    writeField(dv, 0, SmartLog.POWER_ON_HOURS, Math.floor((Date.now() - this.bornAt) / 3_600_000));
    writeField(dv, 0, SmartLog.UNSAFE_SHUTDOWNS, this.get(HealthCounter.UNSAFE_SHUTDOWNS));
    writeField(dv, 0, SmartLog.MEDIA_ERRORS, this.get(HealthCounter.MEDIA_ERRORS));
    writeField(dv, 0, SmartLog.NUM_ERROR_LOG_ENTRIES, this.get(HealthCounter.ERROR_LOG_ENTRIES));
    writeField(dv, 0, SmartLog.TEMP_SENSOR_1, temperatureKelvin);
    return out;
  }
}

export interface ErrorRecord {
  sqid: number;
  cid: number;
  status: number;
  phase: number;
  nsid: number;
  lba: number;
  /** Byte and bit of the command field in error, 0xffff when not known. */
  paramErrorLocation: number;
}

/**
 * The Error Information log: the newest ELPE + 1 entries, newest first, in a
 * SharedArrayBuffer ring under a Mutex so that any thread completing a command
 * can record its failure.
 *
 * Words: 0 lock, 1 entries recorded so far; then per entry ENTRY_WORDS:
 * error count, SQID, CID, status << 1 | phase, parameter error location,
 * LBA low, LBA high, NSID.
 */
const ENTRY_WORDS = 8;
const LOG_HEADER = 2;

export class ErrorLog {
  readonly buffer: SharedArrayBuffer;
  private readonly w: Int32Array;
  private readonly mutex: Mutex;

  constructor(
    readonly capacity: number,
    private readonly counters: HealthCounters,
    buffer?: SharedArrayBuffer,
  ) {
    this.buffer = buffer ?? new SharedArrayBuffer((LOG_HEADER + capacity * ENTRY_WORDS) * 4);
    this.w = new Int32Array(this.buffer);
    this.mutex = new Mutex(this.w, 0);
  }

  record(e: ErrorRecord): void {
    this.counters.add(HealthCounter.ERROR_LOG_ENTRIES, 1);
    this.mutex.lock();
    const count = this.w[1]! + 1;
    this.w[1] = count;
    const b = LOG_HEADER + ((count - 1) % this.capacity) * ENTRY_WORDS;
    this.w[b] = count;
    this.w[b + 1] = e.sqid;
    this.w[b + 2] = e.cid;
    this.w[b + 3] = ((e.status << 1) | e.phase) & 0xffff;
    this.w[b + 4] = e.paramErrorLocation;
    this.w[b + 5] = e.lba % 0x1_0000_0000 | 0;
    this.w[b + 6] = Math.floor(e.lba / 0x1_0000_0000);
    this.w[b + 7] = e.nsid | 0;
    this.mutex.unlock();
  }

  encode(): Uint8Array {
    const out = new Uint8Array(this.capacity * ERROR_LOG_ENTRY_SIZE);
    const dv = new DataView(out.buffer);
    this.mutex.lock();
    const count = this.w[1]!;
    const n = Math.min(count, this.capacity);
    for (let i = 0; i < n; i++) {
      const b = LOG_HEADER + ((count - 1 - i) % this.capacity) * ENTRY_WORDS;
      const base = i * ERROR_LOG_ENTRY_SIZE;
      writeField(dv, base, ErrorLogEntry.ERROR_COUNT, this.w[b]! >>> 0);
      writeField(dv, base, ErrorLogEntry.SQID, this.w[b + 1]!);
      writeField(dv, base, ErrorLogEntry.CID, this.w[b + 2]!);
      writeField(dv, base, ErrorLogEntry.STATUS, this.w[b + 3]!);
      writeField(dv, base, ErrorLogEntry.PARAM_ERROR_LOCATION, this.w[b + 4]!);
      writeField(dv, base, ErrorLogEntry.LBA, (this.w[b + 5]! >>> 0) + this.w[b + 6]! * 0x1_0000_0000);
      writeField(dv, base, ErrorLogEntry.NSID, this.w[b + 7]! >>> 0);
    }
    this.mutex.unlock();
    return out;
  }
}

/** Int32 words per namespace in the media buffer: one 64-byte line each, so namespaces never share one. */
export const MEDIA_STRIDE = 16;
/** Flags word: MEDIA_LOST | MEDIA_CACHED, set (never cleared) by any executing thread with Atomics.or. */
const M_FLAGS = 0;
/** Acknowledged data may not have reached the medium: flushes fail, writes are refused. */
const MEDIA_LOST = 1 << 0;
/** A write completed without being made durable (it sits in a volatile cache): a later failed sync may have lost it. */
const MEDIA_CACHED = 1 << 1;

/**
 * One namespace's media state, in shared memory so that every thread
 * executing the controller's queues sees it: once a failure may have lost
 * acknowledged data (see nvm.ts for which failures), the namespace stays
 * failed for as long as the controller exists (a controller reset keeps it;
 * a new open starts clean). The thread that records the failure first raises
 * a SMART / Health event (reliability; Critical Warning bits 2 and 3).
 */
export class MediaHealth {
  constructor(
    private readonly words: Int32Array,
    private readonly base: number,
    private readonly postEvent: (dw0: number) => void,
  ) {}

  /** A namespace on its own (no controller to tell): for backends used outside one. */
  static standalone(): MediaHealth {
    return new MediaHealth(new Int32Array(MEDIA_STRIDE), 0, () => {});
  }

  /** Acknowledged data may have been lost: flushes fail and writes are refused from now on. */
  get lost(): boolean {
    return (Atomics.load(this.words, this.base + M_FLAGS) & MEDIA_LOST) !== 0;
  }

  /** Some write was acknowledged from a volatile cache since the namespace was opened. */
  get cached(): boolean {
    return (Atomics.load(this.words, this.base + M_FLAGS) & MEDIA_CACHED) !== 0;
  }

  /** Notes a write acknowledged without being durable. A load per write; the store happens once. */
  noteCached(): void {
    if ((Atomics.load(this.words, this.base + M_FLAGS) & MEDIA_CACHED) === 0) Atomics.or(this.words, this.base + M_FLAGS, MEDIA_CACHED);
  }

  /** Records that acknowledged data may have been lost; the first thread to record it raises the event. */
  markLost(): void {
    if (Atomics.or(this.words, this.base + M_FLAGS, MEDIA_LOST) & MEDIA_LOST) return;
    this.postEvent(eventWord(AsyncEventType.SMART_HEALTH, AsyncSmartInfo.RELIABILITY, LogPageId.SMART_HEALTH));
  }
}
