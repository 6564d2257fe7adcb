import { describe, it, expect, afterEach } from 'vitest';
import { bringUp, memoryNamespace, pattern, sameBytes, type Harness } from '../../helpers/harness.js';
import { NvmqError, NvmeStatusError, statusToError } from '../../../src/engine/errors.js';
import { spec } from '../../../src/index.js';
import type { IoQueuePair } from '../../../src/engine/host/io-queue-pair.js';
import type { CompletionCallback } from '../../../src/engine/host/queue-pair.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
});

/** One 4 KiB-block namespace (NSID 1) and a queue pair on it. */
async function pair(): Promise<IoQueuePair> {
  h = await bringUp({ namespaces: [memoryNamespace(1 << 20, 4096)] });
  return h.driver.createIoQueuePair({ entries: 8 });
}

// Calls with arguments the types forbid, as JavaScript callers can make them.
const bad = <T>(v: unknown): T => v as T;
const block = (): Uint8Array => new Uint8Array(4096);

const PROMISE_CASES: Array<[string, (q: IoQueuePair) => Promise<unknown>, string]> = [
  ['read, nlb -1', (q) => q.read(1, 0, -1, block()), 'nlb must be 1..65536, got -1'],
  ['read, nlb 65537', (q) => q.read(1, 0, 65537, block()), 'nlb must be 1..65536, got 65537'],
  ['read, more than MDTS', (q) => q.read(1, 0, 256, new Uint8Array(256 * 4096)), "nlb must be 1..128 (the queue's maximum transfer, 524288 bytes, in 4096-byte blocks), got 256"],
  ['read, slba NaN', (q) => q.read(1, Number.NaN, 1, block()), 'slba must be a non-negative integer, got NaN'],
  ['read, slba 1.5', (q) => q.read(1, 1.5, 1, block()), 'slba must be a non-negative integer, got 1.5'],
  ['read, nsid "1"', (q) => q.read(bad('1'), 0, 1, block()), 'nsid must be an active NSID (1), got "1"'],
  ['read, nsid 7', (q) => q.read(7, 0, 1, block()), 'nsid must be an active NSID (1), got 7'],
  ['read, null buffer', (q) => q.read(1, 0, 1, bad(null)), 'buffer must be a Uint8Array of 4096 bytes (nlb 1 × 4096-byte blocks), got null'],
  ['read, buffer too short', (q) => q.read(1, 0, 2, block()), 'buffer must be a Uint8Array of 8192 bytes (nlb 2 × 4096-byte blocks), got a Uint8Array of 4096 bytes'],
  ['read, an array for a buffer', (q) => q.read(1, 0, 1, bad(new Array(4096).fill(0))), 'buffer must be a Uint8Array of 4096 bytes (nlb 1 × 4096-byte blocks), got an array of 4096'],
  ['write, null data', (q) => q.write(1, 0, 1, bad(null)), 'buffer must be a Uint8Array of 4096 bytes (nlb 1 × 4096-byte blocks), got null'],
  ['write, opts null', (q) => q.write(1, 0, 1, block(), bad(null)), 'opts must be an object ({ fua?: boolean }) or undefined, got null'],
  ['write, fua 1', (q) => q.write(1, 0, 1, block(), bad({ fua: 1 })), 'opts.fua must be a boolean, got 1'],
  ['flush, nsid 0', (q) => q.flush(0), 'nsid must be an active NSID (1) or 0xffffffff (all), got 0'],
  ['flush, no nsid', (q) => q.flush(bad(undefined)), 'nsid must be an active NSID (1) or 0xffffffff (all), got undefined'],
  ['writeZeroes, nlb 0', (q) => q.writeZeroes(1, 0, 0), 'nlb must be 1..65536, got 0'],
  ['writeZeroes, opts null', (q) => q.writeZeroes(1, 0, 1, bad(null)), 'opts must be an object ({ deallocate?: boolean }) or undefined, got null'],
  ['writeZeroes, deallocate "yes"', (q) => q.writeZeroes(1, 0, 1, bad({ deallocate: 'yes' })), 'opts.deallocate must be a boolean, got "yes"'],
  ['deallocate, null ranges', (q) => q.deallocate(1, bad(null)), 'ranges must be an array of 1..256 { slba, nlb }, got null'],
  ['deallocate, no ranges', (q) => q.deallocate(1, []), 'ranges must be an array of 1..256 { slba, nlb }, got an array of 0'],
  ['deallocate, a null range', (q) => q.deallocate(1, bad([null])), 'ranges[0] must be { slba, nlb }, got null'],
  ['deallocate, nlb 0', (q) => q.deallocate(1, [{ slba: 0, nlb: 1 }, { slba: 5, nlb: 0 }]), 'ranges[1].nlb must be an integer 1..4294967295, got 0'],
  ['deallocate, slba -1', (q) => q.deallocate(1, [{ slba: -1, nlb: 1 }]), 'ranges[0].slba must be a non-negative integer, got -1'],
  ['passthru, null', (q) => q.passthru(bad(null)), 'cmd must be command fields or { raw }, got null'],
  ['passthru, opcode 300', (q) => q.passthru({ opcode: 300 }), 'opcode must be an integer 0..255, got 300'],
  ['passthru, opcode "x"', (q) => q.passthru({ opcode: bad('x') }), 'opcode must be an integer 0..255, got "x"'],
  ['passthru, no opcode', (q) => q.passthru(bad({ nsid: 1 })), 'opcode must be an integer 0..255, got undefined'],
  ['passthru, nsid 2^32', (q) => q.passthru({ opcode: 0, nsid: 2 ** 32 }), 'nsid must be an integer -0x80000000..0xffffffff (32 bits, signed or unsigned), got 4294967296'],
  ['passthru, cdw12 a BigInt', (q) => q.passthru({ opcode: 0x02, nsid: 1, cdw12: bad(1n) }), 'cdw12 must be an integer -0x80000000..0xffffffff (32 bits, signed or unsigned), got 1n'],
  ['passthru, fuse 4', (q) => q.passthru({ opcode: 0, fuse: 4 }), 'fuse must be an integer 0..3, got 4'],
  ['passthru, prp1 -1', (q) => q.passthru({ opcode: 0, prp1: -1 }), 'prp1 must be an integer 0..2^53-1 (an address a Number holds exactly), got -1'],
  ['passthru, a field that is not one', (q) => q.passthru(bad({ opcode: 0x02, nsid: 1, slba: 5 })), 'a command field must be one of opcode, fuse, psdt, nsid, cdw2, cdw3, cdw10, cdw11, cdw12, cdw13, cdw14, cdw15, mptr, prp1, prp2, or raw alone, got "slba"'],
  ['passthru, raw of 10 bytes', (q) => q.passthru({ raw: new Uint8Array(10) }), 'raw must be a Uint8Array of 64 bytes (one SQE), got a Uint8Array of 10 bytes'],
  ['passthru, raw with fields', (q) => q.passthru(bad({ raw: new Uint8Array(64), opcode: 2 })), 'cmd must be { raw } alone (the SQE holds every field), got raw with opcode'],
  ['passthru, data null', (q) => q.passthru({ opcode: 0 }, bad(null)), 'data must be { buffer, direction } or undefined, got null'],
  ['passthru, data.buffer null', (q) => q.passthru({ opcode: 0 }, bad({ buffer: null, direction: 'to-device' })), 'data.buffer must be a Uint8Array, got null'],
  ['passthru, direction "in"', (q) => q.passthru({ opcode: 0x02, nsid: 1 }, bad({ buffer: block(), direction: 'in' })), 'data.direction must be \'to-device\' or \'from-device\', got "in"'],
  ['submit, length -1', (q) => q.submit({ opcode: 0x00, nsid: 1 }, undefined, -1), 'length must be an integer 0..9007199254740991, got -1'],
];

describe('argument errors of the queue pair API', () => {
  it.each(PROMISE_CASES)('%s: a one-line NVMQ_INVALID_ARGUMENT rejection, and nothing submitted', async (_, call, message) => {
    const q = await pair();
    const doorbells = q.stats.sqDoorbells;
    let result: Promise<unknown>;
    expect(() => (result = call(q))).not.toThrow();
    const err = await result!.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NvmqError);
    expect(err).toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message });
    expect(message).not.toContain('\n');
    expect(q.stats.sqDoorbells).toBe(doorbells);
    expect(q.outstanding).toBe(0);
    // The pair goes on working.
    await q.write(1, 0, 1, block());
  });

  it('synchronous calls throw it', async () => {
    const q = await pair();
    const arena = h!.arena.size;
    const cases: Array<[() => unknown, string]> = [
      [() => q.allocBuffer(0), `bytes must be an integer 1..${arena} (the DMA arena's size), got 0`],
      [() => q.allocBuffer(1.5), `bytes must be an integer 1..${arena} (the DMA arena's size), got 1.5`],
      [() => q.releaseBuffer(block()), 'buffer must be a buffer allocBuffer() returned and not yet released, got a Uint8Array of 4096 bytes'],
      [() => q.wait(-1), 'wait: timeoutMs must be a number of milliseconds >= 0, got -1'],
      [() => q.wait(10, 1.5), 'wait: spinUs must be an integer from 0 to 1000000, got 1.5'],
      [() => q.readCallback(1, 0, 1, block(), bad(undefined)), 'done must be a function (err, completion) => void, got undefined'],
    ];
    for (const [call, message] of cases) expect(call).toThrow(expect.objectContaining({ name: 'NvmqError', code: 'NVMQ_INVALID_ARGUMENT', message }));
    const b = q.allocBuffer(4096);
    q.releaseBuffer(b);
    expect(() => q.releaseBuffer(b)).toThrow(expect.objectContaining({ code: 'NVMQ_INVALID_ARGUMENT' }));
  });

  it('the callback forms report them through the callback, after the call returns, as any refusal', async () => {
    const q = await pair();
    const outcome = (start: (done: CompletionCallback) => void): Promise<{ err: Error | null; sync: boolean; calls: number }> =>
      new Promise((resolve) => {
        let inside = true;
        let calls = 0;
        start((err) => {
          calls++;
          resolve({ err, sync: inside, calls });
        });
        inside = false;
      });
    const cases: Array<[(done: CompletionCallback) => void, string]> = [
      [(done) => q.readCallback(1, 0, -1, block(), done), 'nlb must be 1..65536, got -1'],
      [(done) => q.writeCallback(1, 0, 1, bad(null), done), 'buffer must be a Uint8Array of 4096 bytes (nlb 1 × 4096-byte blocks), got null'],
      [(done) => q.writeCallback(7, 0, 1, block(), done), 'nsid must be an active NSID (1), got 7'],
      [(done) => q.writeCallback(1, 0, 1, block(), done, bad({ fua: 'yes' })), 'opts.fua must be a boolean, got "yes"'],
      [(done) => q.submitCallback({ opcode: 256 }, undefined, done), 'opcode must be an integer 0..255, got 256'],
    ];
    for (const [start, message] of cases) {
      const o = await outcome(start);
      expect(o.sync).toBe(false);
      expect(o.err).toBeInstanceOf(NvmqError);
      expect(o.err).toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message });
    }
    expect(q.outstanding).toBe(0);
  });
});

describe('passthrough with data', () => {
  /** A raw NVM Read / Write SQE: NSID 1, `nlb` blocks at `slba`, DPTR left zero. */
  function rawRw(opcode: 0x01 | 0x02, slba: number, nlb: number): Uint8Array {
    const sqe = new Uint8Array(64);
    const dv = new DataView(sqe.buffer);
    dv.setUint8(0, opcode);
    dv.setUint32(4, 1, true);
    dv.setUint32(40, slba, true);
    dv.setUint32(48, nlb - 1, true);
    return sqe;
  }

  it('a raw SQE with a data buffer moves the data: the queue pair fills PRP1 / PRP2 from it', async () => {
    const q = await pair();
    const written = pattern(3 * 4096, 5);
    // Out of the arena (through a bounce buffer) and in it (zero copy); three pages make PRP2 a list.
    const w = await q.passthru({ raw: rawRw(0x01, 10, 3) }, { buffer: written, direction: 'to-device' });
    expect(w.status).toBe(0);
    const plain = new Uint8Array(3 * 4096);
    const r = await q.passthru({ raw: rawRw(0x02, 10, 3) }, { buffer: plain, direction: 'from-device' });
    expect(r.status).toBe(0);
    expect(sameBytes(plain, written)).toBe('equal');
    const inArena = q.allocBuffer(3 * 4096);
    expect((await q.passthru({ raw: rawRw(0x02, 10, 3) }, { buffer: inArena, direction: 'from-device' })).status).toBe(0);
    expect(sameBytes(inArena, written)).toBe('equal');
    // A raw SQE without data keeps its own PRPs: here none, which the controller refuses.
    expect((await q.passthru({ raw: rawRw(0x02, 10, 1) })).status & 0xff).not.toBe(0);
  });

  it('refuses PRPs a command sets itself next to a data buffer, naming them; PSDT goes out as given', async () => {
    const q = await pair();
    const data = { buffer: block(), direction: 'from-device' as const };
    const withPrp1 = rawRw(0x02, 0, 1);
    new DataView(withPrp1.buffer).setUint32(24, 0x1000, true);
    const withPrp2 = rawRw(0x02, 0, 1);
    new DataView(withPrp2.buffer).setUint32(32, 0x2000, true);
    const withSgl = rawRw(0x02, 0, 1);
    withSgl[1] = 1 << 6;
    const cases: Array<[Promise<unknown>, string]> = [
      [q.passthru({ opcode: 0x02, nsid: 1, prp1: 0x1000 }, data), 'prp1 must be unset or 0 with data (the queue pair points PRP1 / PRP2 at data.buffer), got 4096'],
      [q.passthru({ opcode: 0x02, nsid: 1, prp2: 0x2000 }, data), 'prp2 must be unset or 0 with data (the queue pair points PRP1 / PRP2 at data.buffer), got 8192'],
      [q.passthru({ raw: withPrp1 }, data), 'raw PRP1 (bytes 24..31) must be 0 with data (the queue pair points PRP1 / PRP2 at data.buffer), got 4096'],
      [q.passthru({ raw: withPrp2 }, data), 'raw PRP2 (bytes 32..39) must be 0 with data (the queue pair points PRP1 / PRP2 at data.buffer), got 8192'],
    ];
    for (const [call, message] of cases) await expect(call).rejects.toMatchObject({ name: 'NvmqError', code: 'NVMQ_INVALID_ARGUMENT', message });
    expect(q.outstanding).toBe(0);
    // SGLs are not supported: the controller refuses PSDT 1, whichever form carried it, and moves nothing.
    for (const sgl of [q.passthru({ opcode: 0x02, nsid: 1, psdt: 1 }, data), q.passthru({ raw: withSgl }, data)]) {
      const c = await sgl;
      expect(spec.statusSc(c.status)).toBe(spec.GenericStatus.INVALID_FIELD);
    }
    // PRPs of 0 say nothing against the buffer, and a command with PRPs and no data keeps them.
    expect((await q.passthru({ opcode: 0x02, nsid: 1, prp1: 0, prp2: 0 }, data)).status).toBe(0);
    const own = q.allocBuffer(4096);
    expect((await q.passthru({ opcode: 0x02, nsid: 1, prp1: h!.arena.iovaOf(h!.arena.offsetOf(own)) })).status).toBe(0);
  });
});

describe('status helpers', () => {
  it('take a passthrough status apart as the README shows', async () => {
    const q = await pair();
    const c = await q.passthru({ opcode: 0x02, nsid: 1, cdw10: 1 << 30 }, { buffer: block(), direction: 'from-device' });
    expect(spec.statusSct(c.status)).toBe(spec.Sct.GENERIC);
    expect(spec.statusSc(c.status)).toBe(spec.GenericStatus.LBA_OUT_OF_RANGE);
    expect(spec.statusDnr(c.status)).toBe(true);
    expect(spec.statusMore(c.status)).toBe(false);
    expect(spec.statusCode(c.status)).toBe(spec.makeStatus(0, 0x80));
    expect(spec.formatStatus(c.status)).toBe('LBA Out of Range (SCT 0, SC 0x80), DNR');
    expect(spec.describeStatus(c.status)).toMatchObject({ sct: 0, sc: 0x80, dnr: true, more: false, code: 'NVMQ_LBA_OUT_OF_RANGE', sctName: 'Generic Command Status' });
    const err = statusToError(c.status, { opcode: 0x02, qid: q.qid, cid: c.cid });
    const thrown = await q.read(1, 1 << 30, 1, block()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect(err).toMatchObject({ status: c.status, sct: 0, sc: 0x80, dnr: true, command: 'Read (0x02)', message: (thrown as Error).message, code: (thrown as NvmqError).code });
  });
});

describe('a failed pair', () => {
  it.each([
    ['NVMQ_CONTROLLER_RESET', 'the controller was reset'],
    ['NVMQ_CONTROLLER_SHUTDOWN', 'the controller was shut down'],
    ['NVMQ_QUEUE_DELETED', 'I/O queue 1 was deleted'],
  ])('refuses later commands with the reason it was failed for (%s)', async (code, message) => {
    const q = await pair();
    q.fail(new NvmqError(code, message));
    await expect(q.read(1, 0, 1, block())).rejects.toMatchObject({ code, message });
    await expect(q.flush(1)).rejects.toMatchObject({ code, message });
  });
});

describe('batches: many commands, one doorbell', () => {
  it('a batch of writes, reads, write zeroes and a flush rings the SQ doorbell once and completes in order', async () => {
    const q = await pair();
    const data = [0, 1, 2, 3].map((i) => pattern(4096, 100 + i));
    const before = q.stats.sqDoorbells;
    const done = await q.batch([
      ...data.map((buffer, i) => ({ op: 'write' as const, nsid: 1, slba: 10 + i, nlb: 1, buffer })),
      { op: 'writeZeroes', nsid: 1, slba: 20, nlb: 2 },
      { op: 'flush', nsid: 1 },
    ]);
    expect(q.stats.sqDoorbells - before).toBe(1);
    expect(done).toHaveLength(6);
    expect(done.every((c) => c.status === 0)).toBe(true);
    const bufs = data.map(() => block());
    const zero = new Uint8Array(8192).fill(9);
    const mid = q.stats.sqDoorbells;
    await q.batch([...bufs.map((buffer, i) => ({ op: 'read' as const, nsid: 1, slba: 10 + i, nlb: 1, buffer })), { op: 'read', nsid: 1, slba: 20, nlb: 2, buffer: zero }]);
    expect(q.stats.sqDoorbells - mid).toBe(1);
    bufs.forEach((b, i) => expect(sameBytes(b, data[i]!)).toBe('equal'));
    expect(zero.every((x) => x === 0)).toBe(true);
  });

  it('more commands than the queue has slots: the batch still completes (later ones wait for slots)', async () => {
    const q = await pair();
    const bufs = Array.from({ length: 30 }, (_, i) => pattern(4096, i));
    await q.batch(bufs.map((buffer, i) => ({ op: 'write', nsid: 1, slba: i, nlb: 1, buffer })));
    const back = bufs.map(() => block());
    await q.batch(back.map((buffer, i) => ({ op: 'read', nsid: 1, slba: i, nlb: 1, buffer })));
    back.forEach((b, i) => expect(sameBytes(b, bufs[i]!)).toBe('equal'));
  });

  it('a bad entry refuses the whole batch before anything is submitted', async () => {
    const q = await pair();
    const before = q.stats.sqDoorbells;
    await expect(q.batch([{ op: 'write', nsid: 1, slba: 0, nlb: 1, buffer: pattern(4096, 1) }, { op: 'read', nsid: 9, slba: 0, nlb: 1, buffer: block() }])).rejects.toThrow(
      'nsid must be an active NSID (1), got 9',
    );
    await expect(q.batch(bad([{ op: 'erase', nsid: 1 }]))).rejects.toThrow("ops[0].op must be 'read', 'write', 'flush' or 'writeZeroes', got \"erase\"");
    await expect(q.batch([])).rejects.toThrow('ops must be an array of 1..65536 commands');
    expect(q.stats.sqDoorbells).toBe(before);
    const b = block();
    await q.read(1, 0, 1, b);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  it('a device error fails the batch once every command has ended; the others took effect', async () => {
    const q = await pair();
    const err = await q.batch([
      { op: 'write', nsid: 1, slba: 3, nlb: 1, buffer: pattern(4096, 3) },
      { op: 'read', nsid: 1, slba: 255, nlb: 2, buffer: new Uint8Array(8192) },
      { op: 'write', nsid: 1, slba: 4, nlb: 1, buffer: pattern(4096, 4) },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NvmeStatusError);
    expect((err as NvmeStatusError).code).toBe('NVMQ_LBA_OUT_OF_RANGE');
    for (const lba of [3, 4]) {
      const b = block();
      await q.read(1, lba, 1, b);
      expect(sameBytes(b, pattern(4096, lba))).toBe('equal');
    }
  });

  it('the callback form: called once, after the call returns, with every completion', async () => {
    const q = await pair();
    let inCall = true;
    const got = await new Promise<{ err: Error | null; n: number; during: boolean }>((resolve) => {
      q.batchCallback(
        [0, 1, 2].map((i) => ({ op: 'write', nsid: 1, slba: i, nlb: 1, buffer: pattern(4096, i) })),
        (err, cs) => resolve({ err, n: cs.filter((c) => c?.status === 0).length, during: inCall }),
      );
      inCall = false;
    });
    expect(got).toEqual({ err: null, n: 3, during: false });
    expect(() => q.batchCallback([], bad(null))).toThrow(NvmqError);
  });
});

describe('coalesce: unplugged submissions share a doorbell per microtask turn', () => {
  it('ten separate writes in one turn ring the SQ doorbell once; each still completes on its own', async () => {
    h = await bringUp({ namespaces: [memoryNamespace(1 << 20, 4096)] });
    const q = await h.driver.createIoQueuePair({ entries: 16, coalesce: true });
    const before = q.stats.sqDoorbells;
    const writes = Array.from({ length: 10 }, (_, i) => q.write(1, i, 1, pattern(4096, i)));
    // Nothing rung yet inside this turn.
    expect(q.stats.sqDoorbells).toBe(before);
    await Promise.all(writes);
    expect(q.stats.sqDoorbells - before).toBe(1);
    const b = block();
    await q.read(1, 9, 1, b);
    expect(sameBytes(b, pattern(4096, 9))).toBe('equal');
    // Without it, a doorbell per command.
    const plain = await h.driver.createIoQueuePair({ entries: 16 });
    const p0 = plain.stats.sqDoorbells;
    await Promise.all(Array.from({ length: 10 }, (_, i) => plain.write(1, i, 1, pattern(4096, i))));
    expect(plain.stats.sqDoorbells - p0).toBe(10);
  });
});
