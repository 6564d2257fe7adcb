/**
 * The register front: the controller's registers other than doorbells, on
 * the main thread. CC drives the controller's state machine (enable, reset,
 * shutdown; NSSR resets the subsystem), CSTS reports it, INTMS / INTMC mask
 * vectors. A doorbell write goes to the executor instead.
 *
 * The states and what CSTS reads in each are the table STATES; a CC write's
 * EN edge picks the action from EN_EDGES.
 */
import { debuglog } from 'node:util';
import { Aqa, Cap, Cc, Csts, Regs, ShutdownStatus, Vs, NSSR_RESET_VALUE, CAP_CSS_NVM, CC_CSS_NVM, pageSizeOf } from '../spec/registers.js';
import { readField, writeField } from '../spec/layout.js';
import { CQE_SIZE, SQE_SIZE, SQE_SIZE_LOG2, CQE_SIZE_LOG2 } from '../spec/command.js';
import type { DmaArena } from '../dma-arena.js';
import type { ControllerConfig } from './config.js';
import type { SharedState } from './shared-state.js';
import type { Interrupts } from './interrupts.js';
import type { AdminState } from './admin-state.js';
import type { QueueExecutor } from './executor.js';
import type { Namespace } from './namespace.js';
import { BackendError } from '../errors.js';

const trace = debuglog('nvmq');

/** Controller states; CSTS reflects them. */
export type ControllerState = 'disabled' | 'enabling' | 'ready' | 'failed' | 'resetting';

/**
 * Each state: CSTS.RDY and CSTS.CFS in it (undefined: RDY stays as it was,
 * so a reset reports RDY until what was in flight has drained), and the
 * states it can move to.
 */
const STATES: Record<ControllerState, { rdy: 0 | 1 | undefined; cfs: 0 | 1; next: readonly ControllerState[] }> = {
  disabled: { rdy: 0, cfs: 0, next: ['enabling', 'failed', 'resetting'] },
  // CC.EN = 1, waiting out the bring-up delay.
  enabling: { rdy: 0, cfs: 0, next: ['ready', 'resetting', 'failed'] },
  ready: { rdy: 1, cfs: 0, next: ['resetting', 'failed'] },
  // CC.EN = 1 with a configuration the controller cannot run, or fail() while enabled: controller fatal status (3.1.6).
  failed: { rdy: 0, cfs: 1, next: ['resetting'] },
  // CC.EN 1 → 0 or NSSR: queues gone, waiting for commands already executing to finish.
  resetting: { rdy: undefined, cfs: 0, next: ['disabled', 'enabling', 'failed', 'resetting'] },
};

/** CC.EN before and after a CC write → what the controller does. */
const EN_EDGES: Record<string, (f: RegisterFront, oldCc: number, newCc: number) => void> = {
  '0→0': () => {},
  '0→1': (f) => f.enable(),
  '1→0': (f) => f.reset(),
  '1→1': (_f, oldCc, newCc) => {
    // Only SHN (and the queue entry sizes, checked at queue creation) may change while enabled.
    const fixed = ~((3 << Cc.SHN.shift) | (0xff << Cc.IOSQES.shift));
    if ((oldCc & fixed) !== (newCc & fixed)) trace('host broke the spec: CC.CSS / MPS / AMS changed while enabled');
  },
};

export interface RegisterFrontParts {
  config: ControllerConfig;
  shared: SharedState;
  arena: DmaArena;
  interrupts: Interrupts;
  admin: AdminState;
  executor: QueueExecutor;
  namespaces: ReadonlyMap<number, Namespace>;
}

export class RegisterFront {
  state: ControllerState = 'disabled';
  private readonly p: RegisterFrontParts;
  private readonly regs: DataView;
  /** A delayed CSTS.RDY (readyDelayMs) not yet raised; close() drops it, so nothing holds a closed controller. */
  private readyTimer: NodeJS.Timeout | undefined;

  constructor(p: RegisterFrontParts) {
    this.p = p;
    this.regs = p.shared.regs;
    const cap = Regs.CAP_LO.offset;
    writeField(this.regs, cap, Cap.MQES, p.config.mqes);
    writeField(this.regs, cap, Cap.CQR, 1);
    writeField(this.regs, cap, Cap.AMS, 0);
    writeField(this.regs, cap, Cap.TO, p.config.timeout);
    writeField(this.regs, cap, Cap.DSTRD, p.config.dstrd);
    writeField(this.regs, cap, Cap.NSSRS, 1);
    writeField(this.regs, cap, Cap.CSS, CAP_CSS_NVM);
    writeField(this.regs, cap, Cap.MPSMIN, 0);
    writeField(this.regs, cap, Cap.MPSMAX, 4);
    writeField(this.regs, Regs.VS.offset, Vs.MJR, 1);
    writeField(this.regs, Regs.VS.offset, Vs.MNR, 4);
  }

  private moveTo(next: ControllerState): void {
    if (!STATES[this.state].next.includes(next)) throw new Error(`controller state ${this.state} cannot become ${next}`);
    this.state = next;
    const s = STATES[next];
    writeField(this.regs, Regs.CSTS.offset, Csts.CFS, s.cfs);
    if (s.rdy !== undefined) writeField(this.regs, Regs.CSTS.offset, Csts.RDY, s.rdy);
  }

  read32(offset: number): number {
    if (offset === Regs.INTMS.offset || offset === Regs.INTMC.offset) return this.p.interrupts.masked;
    return this.p.shared.readBar(offset);
  }

  /** A register write below the doorbells. */
  write32(offset: number, value: number): void {
    switch (offset) {
      case Regs.INTMS.offset:
        return this.p.interrupts.maskVectors(value);
      case Regs.INTMC.offset:
        return this.p.interrupts.unmaskVectors(value);
      case Regs.CC.offset:
        return this.writeCc(value);
      case Regs.CSTS.offset:
        // NSSRO is write-1-to-clear; the rest is read-only.
        if (value & (1 << Csts.NSSRO.shift)) writeField(this.regs, Regs.CSTS.offset, Csts.NSSRO, 0);
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
    const old = this.regs.getUint32(Regs.CC.offset, true);
    const oldShn = readField(this.regs, Regs.CC.offset, Cc.SHN);
    this.regs.setUint32(Regs.CC.offset, value, true);
    const en = value & 1;
    EN_EDGES[`${old & 1}→${en}`]!(this, old, value);
    if (en && readField(this.regs, Regs.CC.offset, Cc.SHN) !== 0 && oldShn === 0) this.shutdown();
  }

  private get asq(): number {
    return this.regs.getUint32(Regs.ASQ.offset, true) + this.regs.getUint32(Regs.ASQ.offset + 4, true) * 0x1_0000_0000;
  }

  private get acq(): number {
    return this.regs.getUint32(Regs.ACQ.offset, true) + this.regs.getUint32(Regs.ACQ.offset + 4, true) * 0x1_0000_0000;
  }

  /** Why CC.EN 0 → 1 cannot bring the controller up, or undefined when it can (3.1.5, 7.6.1). */
  private enableProblem(): string | undefined {
    const cc = Regs.CC.offset;
    const mqes = this.p.config.mqes;
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
    if (asqs > mqes || acqs > mqes) return `AQA sizes exceed CAP.MQES ${mqes}`;
    const ps = pageSizeOf(mps);
    const { asq, acq } = this;
    if (asq === 0 || asq % ps !== 0) return `ASQ 0x${asq.toString(16)} is not a non-zero page-aligned address`;
    if (acq === 0 || acq % ps !== 0) return `ACQ 0x${acq.toString(16)} is not a non-zero page-aligned address`;
    if (this.p.arena.translate(asq, (asqs + 1) * SQE_SIZE) < 0) return `admin SQ at 0x${asq.toString(16)} lies outside host memory`;
    if (this.p.arena.translate(acq, (acqs + 1) * CQE_SIZE) < 0) return `admin CQ at 0x${acq.toString(16)} lies outside host memory`;
    return undefined;
  }

  /** CC.EN 0 → 1: the admin queue from AQA / ASQ / ACQ, then CSTS.RDY (after readyDelayMs). */
  enable(): void {
    if (this.state === 'resetting') trace('host broke the spec: CC.EN set before CSTS.RDY cleared');
    writeField(this.regs, Regs.CSTS.offset, Csts.SHST, ShutdownStatus.NORMAL);
    const problem = this.enableProblem();
    if (problem) {
      trace('enable refused: %s', problem);
      return this.moveTo('failed');
    }
    const { shared, arena, executor } = this.p;
    shared.setPageSize(pageSizeOf(readField(this.regs, Regs.CC.offset, Cc.MPS)));
    const asqs = readField(this.regs, Regs.AQA.offset, Aqa.ASQS) + 1;
    const acqs = readField(this.regs, Regs.AQA.offset, Aqa.ACQS) + 1;
    const { asq, acq } = this;
    shared.queues.clear();
    shared.forgetAllCids();
    executor.cqSlot(0).init(acq, arena.translate(acq, acqs * CQE_SIZE), acqs, true, 0).addSq(1);
    executor.sqSlot(0).init(asq, arena.translate(asq, asqs * SQE_SIZE), asqs, 0, 0);
    this.moveTo('enabling');
    const ready = (): void => {
      if (this.state !== 'enabling') return;
      shared.setReady(true);
      this.moveTo('ready');
    };
    clearTimeout(this.readyTimer);
    if (this.p.config.readyDelayMs > 0) this.readyTimer = setTimeout(ready, this.p.config.readyDelayMs).unref();
    else ready();
  }

  /**
   * Controller reset (CC.EN 1 → 0, 7.3.2): every I/O queue is deleted, commands
   * in flight are dropped without completions, held AERs are discarded, features
   * return to their defaults. CSTS.RDY clears once backend operations already
   * started have finished, so no late completion can touch host memory.
   */
  reset(): void {
    this.stopQueues('resetting');
    this.p.shared.whenDrained(() => {
      if (this.state === 'resetting') this.moveTo('disabled');
    });
  }

  /**
   * Controller fatal status (CSTS.CFS, 3.1.6): what the controller does on an
   * internal error it cannot recover from, and how a test injects one. The
   * queues stop as for a reset, but nothing completes and CSTS.CFS stays set
   * until the host resets the controller (CC.EN 1 → 0).
   */
  fail(reason: string): void {
    if (this.state !== 'ready' && this.state !== 'enabling') return;
    trace('controller fatal status: %s', reason);
    clearTimeout(this.readyTimer);
    this.stopQueues('failed');
  }

  /** Every queue gone and every command in flight dropped; the controller moves to `next`. */
  private stopQueues(next: ControllerState): void {
    const { shared, executor } = this.p;
    shared.newEpoch();
    shared.setReady(false);
    this.moveTo(next);
    // Queues vanish at once; commands still executing see the new epoch and post nothing.
    for (let qid = 0; qid <= shared.queues.maxQid; qid++) {
      executor.sqSlot(qid).invalidate();
      executor.cqSlot(qid).invalidate();
    }
    // What this thread's rings hold is cancelled rather than waited for (other threads' I/O finishes on its own).
    executor.retireRings();
    this.p.admin.reset();
    shared.setWriteCacheEnabled(true);
    this.p.interrupts.reset();
  }

  private subsystemReset(): void {
    if (!readField(this.regs, Regs.CAP_LO.offset, Cap.NSSRS)) return;
    this.regs.setUint32(Regs.CC.offset, 0, true);
    this.reset();
    writeField(this.regs, Regs.CSTS.offset, Csts.NSSRO, 1);
  }

  /** Orderly shutdown (CC.SHN, 7.6.2): finish what is in flight, flush every namespace, report SHST complete. */
  private shutdown(): void {
    const complete = (): void => writeField(this.regs, Regs.CSTS.offset, Csts.SHST, ShutdownStatus.COMPLETE);
    writeField(this.regs, Regs.CSTS.offset, Csts.SHST, ShutdownStatus.PROCESSING);
    const { shared, namespaces } = this.p;
    const epoch = shared.epoch;
    shared.whenDrained(() => {
      let left = namespaces.size;
      const one = (err: BackendError | null): void => {
        if (err) trace('shutdown flush failed: %s', err.message);
        if (--left === 0 && shared.epoch === epoch) complete();
      };
      if (left === 0) return complete();
      for (const ns of namespaces.values()) {
        try {
          ns.backend.flush(one);
        } catch (e) {
          one(new BackendError('internal', `backend threw: ${(e as Error).message}`));
        }
      }
    });
  }

  /** Drops a pending delayed CSTS.RDY. */
  close(): void {
    clearTimeout(this.readyTimer);
  }
}

