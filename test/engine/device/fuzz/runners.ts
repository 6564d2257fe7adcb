/**
 * Runs planned SQEs through the raw passthrough and checks each completion
 * and the whole world against the reference; counts what was reached.
 */
import { expect } from 'vitest';
import type { Completion } from '../../../../src/engine/spec/command.js';
import { AERL, DNR, INTERNAL_ERROR_CODE, w, checkWorld, scratchOf, withTimeout } from './world.js';
import { decode, encode } from './sqe.js';
import { refIo, refAdmin, refAdminStatus, validEventWord, footprint, conflict, SC, type QueueModel, type Footprint } from './reference.js';

// ------------------------------------------------------------------ runners

export const stats = {
  io: 0,
  ioOk: 0,
  admin: 0,
  adminOk: 0,
  skipped: 0,
  /** Successful I/O by what the reference says it did. */
  okKinds: new Map<string, number>(),
  /** Successful transfers through a PRP list (3+ pieces) and through chained lists. */
  okListed: 0,
  okChained: 0,
  statuses: new Map<number, number>(),
  /** Inputs by kind: I/O and admin plans, register and doorbell writes. */
  kinds: new Map<string, number>(),
  /** Commands submitted (I/O and admin, the sanity rounds' included). */
  commands: 0,
};

export function countKind(kind: string, n = 1): void {
  stats.kinds.set(kind, (stats.kinds.get(kind) ?? 0) + n);
}

function describeSqe(sqe: Uint8Array): string {
  const c = decode(sqe);
  return `opcode 0x${c.opcode.toString(16)} fuse ${c.fuse} psdt ${c.psdt} nsid 0x${c.nsid.toString(16)} prp1 0x${c.prp1.toString(16)} prp2 0x${c.prp2.toString(16)} ` +
    `cdw10 0x${c.cdw10.toString(16)} cdw11 0x${c.cdw11.toString(16)} cdw12 0x${c.cdw12.toString(16)}`;
}

export function checkStatus(c: Completion, what: () => string): void {
  stats.statuses.set(c.status & 0x7ff, (stats.statuses.get(c.status & 0x7ff) ?? 0) + 1);
  if ((c.status & 0x7ff) === INTERNAL_ERROR_CODE) throw new Error(`${what()}: Internal Error (the controller threw)`);
  if (c.status !== 0 && !(c.status & DNR)) throw new Error(`${what()}: failure 0x${c.status.toString(16)} without DNR`);
}

/** Submits I/O SQEs as one batch (one doorbell write), then checks completions and state against the reference, in order. */
export async function runIo(sqes: Uint8Array[]): Promise<void> {
  // Drop commands whose PRPs reach host-owned memory (as predicted in order on a scratch copy).
  let list = sqes;
  for (;;) {
    // One command reads the state as it is; later ones of a batch see what earlier ones did, on a scratch copy.
    const scratch = list.length > 1 ? scratchOf(w.state) : w.state;
    const keep: Uint8Array[] = [];
    for (const s of list) {
      const o = refIo(scratch, s);
      if (o.touchesHost) continue;
      keep.push(s);
      if (o.verdict !== 'fail' && list.length > 1) o.apply(scratch);
    }
    if (keep.length === list.length) break;
    stats.skipped += list.length - keep.length;
    list = keep;
  }
  // File namespaces run a batch's commands concurrently, as the spec allows: keep only commands whose
  // effects do not depend on the order (disjoint host pages, namespace ranges not written by another).
  if (w.kind.backend !== 'memory' && list.length > 1) {
    const kept: Array<{ sqe: Uint8Array; f: Footprint }> = [];
    for (const sqe of list) {
      const f = footprint(w.state, sqe);
      if (kept.every((k) => !conflict(k.f, f))) kept.push({ sqe, f });
    }
    stats.skipped += list.length - kept.length;
    list = kept.map((k) => k.sqe);
  }
  if (list.length === 0) return;
  const { qp, h } = w;
  const cq = h.controller.executor.cq(qp.qid)!;
  const tailBefore = cq.tail;
  const spurious = qp.stats.spurious;
  qp.plug();
  const pending = list.map((raw) => qp.passthru({ raw }));
  qp.unplug();
  stats.commands += list.length;
  const done = await withTimeout(Promise.all(pending), `I/O batch of ${list.length}`);
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'CQEs posted for the batch').toBe(list.length);
  expect(cq.used, "CQ room reserved and not released").toBe(0);
  expect(qp.stats.spurious).toBe(spurious);
  expect(qp.outstanding).toBe(0);
  expect(qp.processCompletions(), 'CQEs after the batch').toBe(0);
  list.forEach((sqe, i) => {
    const c = done[i]!;
    const what = (): string => `I/O ${describeSqe(sqe)}`;
    expect(c.sqid).toBe(qp.qid);
    checkStatus(c, what);
    const o = refIo(w.state, sqe);
    stats.io++;
    if (o.verdict === 'ok' && c.status !== 0) throw new Error(`${what()}: reference says it succeeds (${o.why}), got status 0x${c.status.toString(16)}`);
    if (o.verdict === 'fail' && c.status === 0) throw new Error(`${what()}: reference says it fails (${o.why}), but it succeeded`);
    if (c.status === 0) {
      stats.ioOk++;
      stats.okKinds.set(o.why, (stats.okKinds.get(o.why) ?? 0) + 1);
      if ((o.pieces ?? 0) >= 3) stats.okListed++;
      if ((o.chains ?? 0) > 0) stats.okChained++;
      o.apply(w.state);
    }
  });
  checkWorld(() => `after I/O ${list.map(describeSqe).join(' | ')}`);
  w.watchdog.beat();
}

const ADMIN_NAMES: Record<number, string> = { 0x02: 'get log page', 0x06: 'identify', 0x09: 'set features', 0x0a: 'get features' };

/** An Asynchronous Event Request of ours, held by the controller until an event (or an Abort) completes it. */
interface Aer {
  cid: number;
  done: boolean;
  /** An Abort naming it has been sent: Command Abort Requested is its expected end. */
  aborting: boolean;
}

/** The admin side's model: the I/O queues that exist, our held AERs, problems seen in callbacks. */
export const adminModel = {
  queues: { sqs: new Map(), cqs: new Map() } as QueueModel,
  aers: [] as Aer[],
  problems: [] as string[],
};

/** The queues the harness has (its one I/O pair); everything else was made by a fuzzed command. */
export function resetAdminModel(): void {
  adminModel.queues.sqs = new Map([[w.qp.qid, { cqid: w.qp.qid, size: w.qp.entries }]]);
  adminModel.queues.cqs = new Map([[w.qp.qid, { size: w.qp.entries }]]);
  adminModel.aers = [];
  adminModel.problems = [];
}

function held(): number {
  return adminModel.aers.filter((a) => !a.done).length;
}

/** Lets completion callbacks of what was just reaped run. */
export function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

function throwProblems(): void {
  if (adminModel.problems.length > 0) throw new Error(adminModel.problems.join('; '));
}

/** The CID the driver gave the admin command it has just submitted (the SQE before the admin SQ's tail). */
function lastAdminCid(): number {
  const sq = w.h.controller.executor.sq(0)!;
  const at = sq.offset + ((sq.tail - 1 + sq.size) % sq.size) * 64;
  return w.h.arena.view.getUint16(at + 2, true);
}

function submitAer(sqe: Uint8Array, what: () => string): void {
  const over = held() > AERL;
  const aer: Aer = { cid: -1, done: false, aborting: false };
  const p = w.h.driver.adminPassthru({ raw: sqe });
  aer.cid = lastAdminCid();
  adminModel.aers.push(aer);
  stats.commands++;
  p.then(
    (c) => {
      aer.done = true;
      stats.statuses.set(c.status & 0x7ff, (stats.statuses.get(c.status & 0x7ff) ?? 0) + 1);
      const code = c.status & 0x7ff;
      if (over) {
        if (code !== SC.AER_LIMIT_EXCEEDED) adminModel.problems.push(`${what()}: AER past the limit (${held() + 1} held) completed with 0x${c.status.toString(16)}`);
      } else if (code === SC.ABORT_REQUESTED) {
        if (!aer.aborting) adminModel.problems.push(`${what()}: AER completed as aborted without an Abort`);
      } else if (c.status !== 0 || !validEventWord(c.dw0)) {
        adminModel.problems.push(`${what()}: AER completed with status 0x${c.status.toString(16)}, DW0 0x${c.dw0.toString(16)}`);
      }
    },
    (e: Error) => adminModel.problems.push(`${what()}: AER failed: ${e.message}`),
  );
}

export async function runAdmin(sqe: Uint8Array): Promise<void> {
  const what = (): string => `admin ${describeSqe(sqe)}`;
  const c0 = decode(sqe);
  stats.admin++;
  const cq = w.h.controller.executor.cq(0)!;
  if (c0.opcode === 0x0c && c0.fuse === 0 && c0.psdt === 0) {
    countKind('admin: async event request');
    submitAer(sqe, what);
    await settle();
    throwProblems();
    expect(cq.used, 'admin CQ room reserved: held AERs only').toBe(held());
    checkWorld(() => `after ${what()}`);
    return;
  }
  const ref = refAdmin(w.state, sqe);
  if (ref.mapping.touchesHost) {
    stats.skipped++;
    return;
  }
  const verdict = refAdminStatus(adminModel.queues, sqe);
  // Abort: the AER of ours it names, if any, must end aborted.
  const target = c0.opcode === 0x08 && (c0.cdw10 & 0xffff) === 0 ? adminModel.aers.find((a) => !a.done && a.cid === c0.cdw10 >>> 16) : undefined;
  if (target && c0.fuse === 0 && c0.psdt === 0) target.aborting = true;
  const tailBefore = cq.tail;
  const heldBefore = held();
  stats.commands++;
  const c = await withTimeout(w.h.driver.adminPassthru({ raw: sqe }), what());
  await settle();
  throwProblems();
  const ended = heldBefore - held();
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'admin CQEs posted: the command and the AERs it ended').toBe(1 + ended);
  expect(cq.used, 'admin CQ room reserved: held AERs only').toBe(held());
  expect(c.sqid).toBe(0);
  checkStatus(c, what);
  if (c.status === 0) stats.adminOk++;
  if (verdict) {
    countKind(`admin: ${verdict.why}`);
    const code = c.status & 0x7ff;
    if (verdict.failures.length === 0 && c.status !== 0) throw new Error(`${what()}: the reference says ${verdict.why} succeeds, got 0x${c.status.toString(16)}`);
    if (verdict.failures.length > 0 && !verdict.failures.includes(code)) {
      throw new Error(`${what()}: ${verdict.why} completed with 0x${c.status.toString(16)}; the reference allows ${verdict.failures.map((f) => `0x${f.toString(16)}`).join(', ')}`);
    }
    if (c.status === 0) verdict.apply();
  } else if (c0.opcode === 0x08 && c0.fuse === 0 && c0.psdt === 0) {
    countKind('admin: abort');
    // Abort succeeds; DW0 bit 0 clear exactly when it aborted something: here only a held AER can be.
    if (c.status !== 0) throw new Error(`${what()}: Abort failed with 0x${c.status.toString(16)}`);
    if ((c.dw0 & 1) !== (target ? 0 : 1)) throw new Error(`${what()}: Abort DW0 0x${c.dw0.toString(16)}, ${target ? 'a held AER was named' : 'nothing abortable was named'}`);
    if (target && !target.done) throw new Error(`${what()}: the aborted AER has not completed`);
  } else countKind(`admin: ${ADMIN_NAMES[c0.opcode] ?? 'other opcode (invalid)'}`);
  if (c.status === 0 && ref.writes) {
    if (!ref.mapping.regions) throw new Error(`${what()}: succeeded although its ${ref.len}-byte data buffer is not valid`);
    // The contents are the controller's business; where they went is checked below.
    for (const [off, n] of ref.mapping.regions) w.state.arena.set(w.h.arena.bytes.subarray(off, off + n), off);
  }
  checkWorld(() => `after ${what()}`);
  w.watchdog.beat();
}

/** Ends an admin sequence: every held AER aborted, every queue the fuzzed commands made deleted; each checked. */
export async function endAdminSequence(): Promise<void> {
  for (const a of adminModel.aers.filter((x) => !x.done)) {
    const abort = encode({ opcode: 0x08, fuse: 0, psdt: 0, nsid: 0, cdw2: 0, cdw3: 0, mptr: 0n, prp1: 0n, prp2: 0n, cdw10: (a.cid << 16) >>> 0, cdw11: 0, cdw12: 0, cdw13: 0, cdw14: 0, cdw15: 0 });
    await runAdmin(abort);
  }
  for (const qid of [...adminModel.queues.sqs.keys()].filter((q) => q !== w.qp.qid)) await expectAdmin(0x00, qid);
  for (const qid of [...adminModel.queues.cqs.keys()].filter((q) => q !== w.qp.qid)) await expectAdmin(0x04, qid);
  throwProblems();
}

async function expectAdmin(opcode: number, cdw10: number): Promise<void> {
  const sqe = encode({ opcode, fuse: 0, psdt: 0, nsid: 0, cdw2: 0, cdw3: 0, mptr: 0n, prp1: 0n, prp2: 0n, cdw10, cdw11: 0, cdw12: 0, cdw13: 0, cdw14: 0, cdw15: 0 });
  await runAdmin(sqe);
  if (refAdminStatus(adminModel.queues, sqe)?.failures.length === 0) throw new Error(`admin ${describeSqe(sqe)}: still possible after it succeeded`);
}
