/**
 * LocalTransport (src/engine/transport/local.ts): register accesses are calls
 * into the controller of this process, and the controller's interrupts reach
 * the handlers from a microtask, coalesced per vector. Driven by raw register
 * and doorbell writes on a real controller, through a host small enough that
 * every doorbell write and every CQE is the test's own.
 */
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { makeController, memoryNamespace, deferPerTest, tick, waitFor } from '../../helpers/harness.js';
import type { DmaBuffer } from '../../../src/engine/dma-arena.js';
import { MemoryBackend } from '../../../src/engine/device/backends/memory.js';
import { Regs, Cap, Cc, Csts, Vs, sqTailDoorbell } from '../../../src/engine/spec/registers.js';
import { bitsOf, withBits } from '../../../src/engine/spec/layout.js';
import { encodeCommand, CQE_SIZE, SQE_SIZE } from '../../../src/engine/spec/command.js';
import { AdminOpcode, NvmOpcode } from '../../../src/engine/spec/opcodes.js';
import { CreateCqCdw10, CreateCqCdw11, CreateSqCdw10, CreateSqCdw11 } from '../../../src/engine/spec/admin-commands.js';

const defer = deferPerTest();

/** Entries of every ring: more than any test submits, so no CQ wraps or fills. */
const ENTRIES = 16;

interface Queue {
  qid: number;
  sq: DmaBuffer;
  cq: DmaBuffer;
  tail: number;
}

type Controller = ReturnType<typeof makeController>;

/** A controller enabled by hand: admin rings programmed, CC.EN set, CSTS.RDY checked. Closed after the test unless `keepOpen`. */
function enabledController(opts: { backend?: MemoryBackend; keepOpen?: boolean } = {}): Controller & { admin: Queue } {
  const m = makeController({ namespaces: [opts.backend ? { backend: opts.backend, lbaSize: 4096 } : memoryNamespace(1 << 20)] });
  if (!opts.keepOpen) defer(() => m.transport.close());
  const admin = rings(m, 0);
  const size = ENTRIES - 1;
  m.transport.write32(Regs.AQA.offset, ((size << 16) | size) >>> 0);
  m.transport.write64(Regs.ASQ.offset, admin.sq.iova);
  m.transport.write64(Regs.ACQ.offset, admin.cq.iova);
  m.transport.write32(Regs.CC.offset, withBits(withBits(withBits(0, Cc.EN, 1), Cc.IOSQES, 6), Cc.IOCQES, 4));
  expect(bitsOf(m.transport.read32(Regs.CSTS.offset), Csts.RDY)).toBe(1);
  return { ...m, admin };
}

function rings(m: Controller, qid: number): Queue {
  return { qid, sq: m.arena.alloc(ENTRIES * SQE_SIZE), cq: m.arena.alloc(ENTRIES * CQE_SIZE), tail: 0 };
}

/** Writes one SQE at the queue's tail (CID = its slot); the doorbell is rung separately. */
function put(m: Controller, q: Queue, cmd: Parameters<typeof encodeCommand>[2]): void {
  encodeCommand(m.arena.view, q.sq.offset + q.tail * SQE_SIZE, cmd, q.tail);
  q.tail = (q.tail + 1) % ENTRIES;
}

function ring(m: Controller, q: Queue): void {
  m.transport.write32(sqTailDoorbell(q.qid, 0), q.tail);
}

/** The statuses of the CQEs the controller has posted to `q` (phase tag 1: the first pass over the ring). */
function posted(m: Controller, q: Queue): number[] {
  const out: number[] = [];
  for (let i = 0; i < ENTRIES; i++) {
    const dw3 = m.arena.view.getUint32(q.cq.offset + i * CQE_SIZE + 12, true);
    if (((dw3 >>> 16) & 1) === 0) break;
    out.push(dw3 >>> 17);
  }
  return out;
}

/** Creates I/O CQ and SQ `qid`, the CQ with interrupts enabled on `vector`. */
function ioQueue(m: Controller & { admin: Queue }, qid: number, vector: number): Queue {
  const q = rings(m, qid);
  put(m, m.admin, {
    opcode: AdminOpcode.CREATE_IO_CQ,
    prp1: q.cq.iova,
    cdw10: withBits(withBits(0, CreateCqCdw10.QID, qid), CreateCqCdw10.QSIZE, ENTRIES - 1),
    cdw11: withBits(withBits(withBits(0, CreateCqCdw11.PC, 1), CreateCqCdw11.IEN, 1), CreateCqCdw11.IV, vector),
  });
  put(m, m.admin, {
    opcode: AdminOpcode.CREATE_IO_SQ,
    prp1: q.sq.iova,
    cdw10: withBits(withBits(0, CreateSqCdw10.QID, qid), CreateSqCdw10.QSIZE, ENTRIES - 1),
    cdw11: withBits(withBits(0, CreateSqCdw11.PC, 1), CreateSqCdw11.CQID, qid),
  });
  ring(m, m.admin);
  expect(posted(m, m.admin).every((status) => status === 0)).toBe(true);
  return q;
}

/** Flush of NSID 1: a memory namespace completes it inside the doorbell write. */
const flush = { opcode: NvmOpcode.FLUSH, nsid: 1 };

/** A handler that records each call in `calls` as its vector. */
function recorder(calls: number[], vector: number): () => void {
  return () => void calls.push(vector);
}

/** Puts `n` Flush commands on `q` and rings its doorbell once: `n` completions, `n` raises of its vector. */
function flushes(m: Controller, q: Queue, n = 1): void {
  for (let i = 0; i < n; i++) put(m, q, flush);
  ring(m, q);
}

/** An enabled controller with I/O queue 1 on vector 1, whose handler records its calls in `calls`. */
function queueOnVector1(opts: Parameters<typeof enabledController>[0] = {}): { m: ReturnType<typeof enabledController>; q: Queue; calls: number[] } {
  const m = enabledController(opts);
  const q = ioQueue(m, 1, 1);
  const calls: number[] = [];
  m.transport.setInterruptHandler(1, recorder(calls, 1));
  return { m, q, calls };
}

/** Lets the microtasks queued so far run (and a few after them), but no timer or I/O callback. */
async function microtasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('register accesses', () => {
  it('are 32- and 64-bit reads and writes of the controller registers', () => {
    const { controller, transport: t } = makeController();
    defer(() => t.close());
    expect(t.name).toBe('local');
    expect(t.arena).toBe(controller.arena);
    // Read: CAP's fields as the controller set them, the 64-bit read made of the two halves.
    expect(bitsOf(t.read32(Regs.CAP_LO.offset), Cap.MQES)).toBe(4095);
    expect(bitsOf(t.read32(Regs.CAP_HI.offset), Cap.CSS)).toBe(1);
    expect(t.read64(Regs.CAP.offset)).toBe(t.read32(Regs.CAP_LO.offset) + t.read32(Regs.CAP_HI.offset) * 2 ** 32);
    expect(t.read64(Regs.CAP.offset)).toBe(controller.mmioRead64(Regs.CAP.offset));
    const vs = t.read32(Regs.VS.offset);
    expect([bitsOf(vs, Vs.MJR), bitsOf(vs, Vs.MNR)]).toEqual([1, 4]);
    // Write: the controller keeps what it was given, both halves of a 64-bit write.
    t.write32(Regs.AQA.offset, 0x000f0007);
    expect(controller.mmioRead32(Regs.AQA.offset)).toBe(0x000f0007);
    t.write64(Regs.ASQ.offset, 0x1234_5678_9000);
    expect(controller.mmioRead64(Regs.ASQ.offset)).toBe(0x1234_5678_9000);
    expect(t.read64(Regs.ASQ.offset)).toBe(0x1234_5678_9000);
    // And reacts to it: INTMS sets mask bits, which INTMC reads back.
    t.write32(Regs.INTMS.offset, 0b110);
    expect(controller.mmioRead32(Regs.INTMC.offset)).toBe(0b110);
    expect(t.read32(Regs.INTMC.offset)).toBe(0b110);
  });

  it('a CC write enables the controller, and doorbell writes make it execute commands', () => {
    const m = enabledController();
    expect(m.controller.state).toBe('ready');
    const q = ioQueue(m, 1, 1);
    put(m, q, flush);
    expect(posted(m, q)).toEqual([]);
    ring(m, q);
    expect(posted(m, q)).toEqual([0]);
  });
});

describe('interrupt delivery', () => {
  it('an interrupt raised inside a doorbell write reaches its handler from a microtask, after the write has returned', async () => {
    const m = enabledController();
    const q = ioQueue(m, 1, 1);
    const calls: Array<{ vector: number; insideWrite: boolean }> = [];
    let insideWrite = false;
    m.transport.setInterruptHandler(1, () => calls.push({ vector: 1, insideWrite }));
    m.transport.setInterruptHandler(2, () => calls.push({ vector: 2, insideWrite }));
    put(m, q, flush);
    insideWrite = true;
    ring(m, q);
    insideWrite = false;
    // The completion was posted (and its vector raised) inside the write; the handler has not run.
    expect(posted(m, q)).toEqual([0]);
    expect(calls).toEqual([]);
    // Not a later task either: the microtasks queued so far are enough.
    await microtasks();
    expect(calls).toEqual([{ vector: 1, insideWrite: false }]);
    await tick(5);
    expect(calls).toHaveLength(1);
  });

  it('raises of one vector before its delivery are one handler call; a raise after it is another', async () => {
    const { m, q, calls } = queueOnVector1();
    // Two completions behind one doorbell write, a third behind another: three raises.
    flushes(m, q, 2);
    flushes(m, q);
    expect(posted(m, q)).toEqual([0, 0, 0]);
    await microtasks();
    expect(calls).toEqual([1]);
    flushes(m, q);
    await microtasks();
    expect(calls).toEqual([1, 1]);
  });

  it('vectors raised together are delivered together, each once, in the order raised', async () => {
    const m = enabledController();
    const q1 = ioQueue(m, 1, 1);
    const q2 = ioQueue(m, 2, 2);
    const calls: number[] = [];
    m.transport.setInterruptHandler(1, recorder(calls, 1));
    m.transport.setInterruptHandler(2, recorder(calls, 2));
    for (const q of [q2, q1, q2, q1]) flushes(m, q);
    expect(calls).toEqual([]);
    await microtasks();
    expect(calls).toEqual([2, 1]);
  });

  it('a handler that throws does not lose the vectors raised with it, and its error goes on uncaught', async () => {
    const w = new Worker(new URL('../../fixtures/throwing-interrupt-handler-worker.mjs', import.meta.url));
    defer(() => w.terminate());
    const answer = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    // Vectors 1, 2 and 3 raised by one INTMC write; the handler of 2 throws: 3 still runs, 1 does not run again.
    expect(answer).toEqual({ calls: [1, 2, 3], uncaught: ['boom from vector 2'] });
  });

  it('a removed handler is not called, neither for a raise before its removal nor after it; a new one is', async () => {
    const { m, q, calls } = queueOnVector1();
    flushes(m, q);
    // Raised, not yet delivered: removed in between.
    m.transport.setInterruptHandler(1, undefined);
    await microtasks();
    expect(calls).toEqual([]);
    // Raised after the removal.
    flushes(m, q);
    expect(posted(m, q)).toEqual([0, 0]);
    await tick(5);
    expect(calls).toEqual([]);
    // A handler installed again gets the next raise.
    const again: number[] = [];
    m.transport.setInterruptHandler(1, recorder(again, 1));
    flushes(m, q);
    await microtasks();
    expect([calls, again]).toEqual([[], [1]]);
  });

  it("a vector raised through its shared interrupt word (by another thread's controller) reaches its handler, until it is removed", async () => {
    const m = enabledController();
    const calls: number[] = [];
    m.transport.setInterruptHandler(3, recorder(calls, 3));
    // What a controller in another thread does for a vector whose handler lives here.
    const bump = (): void => {
      const { words, index } = m.controller.interrupts.word(3);
      Atomics.add(words, index, 1);
      Atomics.notify(words, index);
    };
    bump();
    await waitFor(() => calls.length > 0, 'the handler of vector 3');
    await tick(5);
    expect(calls).toEqual([3]);
    bump();
    await waitFor(() => calls.length > 1, 'the handler of vector 3 again');
    m.transport.setInterruptHandler(3, undefined);
    bump();
    await tick(10);
    expect(calls).toEqual([3, 3]);
  });
});

describe('close()', () => {
  /** A memory namespace whose close takes a few milliseconds and is counted. */
  class SlowClosingBackend extends MemoryBackend {
    closes = 0;
    closed = false;
    override async close(): Promise<void> {
      this.closes++;
      await tick(10);
      this.closed = true;
    }
  }

  it('closes the controller (its backends) before it resolves, and removes every handler', async () => {
    const backend = new SlowClosingBackend({ size: 1 << 20 });
    const { m, q, calls } = queueOnVector1({ backend, keepOpen: true });
    await m.transport.close();
    expect({ closes: backend.closes, closed: backend.closed }).toEqual({ closes: 1, closed: true });
    // The queue still completes a command; nobody is called for it.
    flushes(m, q);
    expect(posted(m, q)).toEqual([0]);
    await tick(5);
    expect(calls).toEqual([]);
  });
});
