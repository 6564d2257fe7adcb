/**
 * Runs planned SQEs through the raw passthrough and checks each completion
 * and the whole world against the reference; counts what was reached.
 */
import { expect } from 'vitest';
import type { Completion } from '../../../../src/engine/spec/command.js';
import { DNR, INTERNAL_ERROR_CODE, w, checkWorld, cloneState, withTimeout } from './world.js';
import { decode } from './sqe.js';
import { refIo, refAdmin } from './reference.js';

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
};

function describeSqe(sqe: Uint8Array): string {
  const c = decode(sqe);
  return `opcode 0x${c.opcode.toString(16)} fuse ${c.fuse} psdt ${c.psdt} nsid 0x${c.nsid.toString(16)} prp1 0x${c.prp1.toString(16)} prp2 0x${c.prp2.toString(16)} ` +
    `cdw10 0x${c.cdw10.toString(16)} cdw11 0x${c.cdw11.toString(16)} cdw12 0x${c.cdw12.toString(16)}`;
}

function checkStatus(c: Completion, what: string): void {
  stats.statuses.set(c.status & 0x7ff, (stats.statuses.get(c.status & 0x7ff) ?? 0) + 1);
  if ((c.status & 0x7ff) === INTERNAL_ERROR_CODE) throw new Error(`${what}: Internal Error (the controller threw)`);
  if (c.status !== 0 && !(c.status & DNR)) throw new Error(`${what}: failure 0x${c.status.toString(16)} without DNR`);
}

/** Submits I/O SQEs as one batch (one doorbell write), then checks completions and state against the reference, in order. */
export async function runIo(sqes: Uint8Array[]): Promise<void> {
  // Drop commands whose PRPs reach host-owned memory (as predicted in order on a scratch copy).
  let list = sqes;
  for (;;) {
    const scratch = cloneState(w.state);
    const keep: Uint8Array[] = [];
    for (const s of list) {
      const o = refIo(scratch, s);
      if (o.touchesHost) continue;
      keep.push(s);
      if (o.verdict !== 'fail') o.apply(scratch);
    }
    if (keep.length === list.length) break;
    stats.skipped += list.length - keep.length;
    list = keep;
  }
  if (list.length === 0) return;
  const { qp, h } = w;
  const cq = h.controller.executor.cq(qp.qid)!;
  const tailBefore = cq.tail;
  const spurious = qp.stats.spurious;
  qp.plug();
  const pending = list.map((raw) => qp.passthru({ raw }));
  qp.unplug();
  const done = await withTimeout(Promise.all(pending), `I/O batch of ${list.length}`);
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'CQEs posted for the batch').toBe(list.length);
  expect(cq.used, "CQ room reserved and not released").toBe(0);
  expect(qp.stats.spurious).toBe(spurious);
  expect(qp.outstanding).toBe(0);
  expect(qp.processCompletions(), 'CQEs after the batch').toBe(0);
  list.forEach((sqe, i) => {
    const c = done[i]!;
    const what = `I/O ${describeSqe(sqe)}`;
    expect(c.sqid).toBe(qp.qid);
    checkStatus(c, what);
    const o = refIo(w.state, sqe);
    stats.io++;
    if (o.verdict === 'ok' && c.status !== 0) throw new Error(`${what}: reference says it succeeds (${o.why}), got status 0x${c.status.toString(16)}`);
    if (o.verdict === 'fail' && c.status === 0) throw new Error(`${what}: reference says it fails (${o.why}), but it succeeded`);
    if (c.status === 0) {
      stats.ioOk++;
      stats.okKinds.set(o.why, (stats.okKinds.get(o.why) ?? 0) + 1);
      if ((o.pieces ?? 0) >= 3) stats.okListed++;
      if ((o.chains ?? 0) > 0) stats.okChained++;
      o.apply(w.state);
    }
  });
  checkWorld(`after I/O ${list.map(describeSqe).join(' | ')}`);
}

export async function runAdmin(sqe: Uint8Array): Promise<void> {
  const ref = refAdmin(w.state, sqe);
  if (ref.mapping.touchesHost) {
    stats.skipped++;
    return;
  }
  const cq = w.h.controller.executor.cq(0)!;
  const tailBefore = cq.tail;
  const what = `admin ${describeSqe(sqe)}`;
  const c = await withTimeout(w.h.driver.adminPassthru({ raw: sqe }), what);
  expect((cq.tail - tailBefore + cq.size) % cq.size, 'admin CQEs posted').toBe(1);
  expect(cq.used, "CQ room reserved and not released").toBe(0);
  expect(c.sqid).toBe(0);
  checkStatus(c, what);
  stats.admin++;
  if (c.status === 0) {
    stats.adminOk++;
    if (ref.writes) {
      if (!ref.mapping.regions) throw new Error(`${what}: succeeded although its ${ref.len}-byte data buffer is not valid`);
      // The contents are the controller's business; where they went is checked below.
      for (const [off, n] of ref.mapping.regions) w.state.arena.set(w.h.arena.bytes.subarray(off, off + n), off);
    }
  }
  checkWorld(`after ${what}`);
}
