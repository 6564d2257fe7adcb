/**
 * Controller registers: the interrupt mask (INTMS / INTMC) and invalid
 * doorbell writes, which complete an Asynchronous Event Request (NVMe 1.4,
 * 3.1.3, 3.1.4, 3.1.24, 3.1.25, 5.2). Conventions in ./helpers.ts.
 */
import { describe, it, expect } from 'vitest';
import { tick, pattern, waitFor, DATA_PATHS } from '../../../helpers/harness.js';
import { INTMS, INTMC, sqTailDb, cqHeadDb, aerDw0, AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION, LID_SMART, OPC_AER, rawController, up, track, heldAer, stalledNamespace } from './helpers.js';

describe('interrupt mask (INTMS / INTMC)', () => {
  it('INTMS sets and INTMC clears mask bits; both read back the current mask', () => {
    const { transport: t } = rawController();
    expect(t.read32(INTMS)).toBe(0);
    expect(t.read32(INTMC)).toBe(0);
    t.write32(INTMS, 0b0110);
    expect(t.read32(INTMS)).toBe(0b0110);
    expect(t.read32(INTMC)).toBe(0b0110);
    t.write32(INTMS, 0b1000);
    expect(t.read32(INTMS)).toBe(0b1110);
    t.write32(INTMS, 0);
    expect(t.read32(INTMS)).toBe(0b1110);
    t.write32(INTMC, 0b0100);
    expect(t.read32(INTMC)).toBe(0b1010);
    expect(t.read32(INTMS)).toBe(0b1010);
    t.write32(INTMC, 0);
    expect(t.read32(INTMS)).toBe(0b1010);
    t.write32(INTMC, 0xffffffff);
    expect(t.read32(INTMS)).toBe(0);
  });

  it('a masked vector is held and raised when INTMC unmasks it; other vectors are not affected', async () => {
    const h = await up();
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 }); // vector 1
    const seen: number[] = [];
    const raise = h.controller.interrupts.onInterrupt;
    h.controller.interrupts.onInterrupt = (v) => {
      seen.push(v);
      raise(v);
    };

    t.write32(INTMS, 1 << 1);
    await qp.write(1, 0, 1, pattern(4096, 2)); // completes inside the doorbell write and is reaped by polling
    expect(seen.filter((v) => v === 1)).toEqual([]);
    await h.driver.identify(0x01, 0);
    expect(seen.filter((v) => v === 0).length).toBeGreaterThanOrEqual(1);

    t.write32(INTMC, 1 << 1);
    expect(seen.filter((v) => v === 1)).toEqual([1]);
    t.write32(INTMC, 1 << 1);
    expect(seen.filter((v) => v === 1)).toEqual([1]);

    // Unmasked again: the next completion raises vector 1 straight away.
    await qp.write(1, 1, 1, pattern(4096, 3));
    expect(seen.filter((v) => v === 1)).toEqual([1, 1]);
  });

  it.each(DATA_PATHS)('a completion on a masked vector reaches the host only when INTMC unmasks it (file namespace, %s)', async (dataPath) => {
    const { backend, device } = stalledNamespace(dataPath);
    const h = await up({ namespaces: [{ backend, lbaSize: 4096 }], controller: { dataPath } });
    const t = h.transport;
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    t.write32(INTMS, 1 << 1);
    const read = track(qp.read(1, 0, 1, new Uint8Array(4096)));
    await device.feed(4096);
    // Wait for the CQE itself (phase tag 1 in slot 0), then a little longer.
    await waitFor(() => (qp.cq.bytes[14]! & 1) === 1, 'the CQE to be posted');
    await tick(20);
    expect(read.settled).toBe(false);
    t.write32(INTMC, 1 << 1);
    await tick();
    expect(read.settled).toBe(true);
    expect(read.error).toBeUndefined();
  });
});

// ------------------------------------------------------------------ invalid doorbell writes

describe('invalid doorbell writes complete an Asynchronous Event Request', () => {
  it('SQ tail >= queue size: error event, Invalid Doorbell Write Value, Error Information log', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(0), 32); // the driver's admin SQ has 32 entries
    const c = await aer;
    expect(c.status).toBe(0);
    expect(c.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
    // The bad value was not taken: the admin queue still works.
    await h.driver.identify(0x01, 0);

    await h.driver.errorLog(); // clears the event
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const { done: aer2 } = await heldAer(h);
    t.write32(sqTailDb(1), 8);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
    await qp.write(1, 0, 1, pattern(4096, 4));
  });

  it('CQ head past the posted entries (or >= size): Invalid Doorbell Write Value', async () => {
    const h = await up();
    const t = h.transport;
    await h.driver.createIoQueuePair({ entries: 8 }); // nothing posted to CQ 1 yet
    const { done: aer } = await heldAer(h);
    t.write32(cqHeadDb(1), 1);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));

    await h.driver.errorLog();
    const { done: aer2 } = await heldAer(h);
    t.write32(cqHeadDb(1), 8);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));
  });

  it('the same event raised many times before a request takes it is held once', async () => {
    const h = await up();
    const t = h.transport;
    for (let i = 0; i < 1000; i++) t.write32(sqTailDb(5), 1);
    // One event waits; once taken and its log read, no stale copies of it follow.
    const first = await h.driver.adminPassthru({ opcode: OPC_AER });
    expect(first.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
    await h.driver.errorLog();
    let second: number | undefined;
    const { done: aer2 } = await heldAer(h);
    void aer2.then((c) => (second = c.dw0));
    await tick(20);
    expect(second).toBeUndefined();
    // A new occurrence after that is reported.
    t.write32(sqTailDb(5), 1);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });

  it('a doorbell of a queue that does not exist: Write to Invalid Doorbell Register', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer } = await heldAer(h);
    t.write32(sqTailDb(5), 1);
    expect((await aer).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));

    await h.driver.errorLog();
    const { done: aer2 } = await heldAer(h);
    t.write32(cqHeadDb(3), 0);
    expect((await aer2).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });

  it('a valid doorbell write raises no event', async () => {
    const h = await up();
    const qp = await h.driver.createIoQueuePair({ entries: 8 });
    const aer = track(h.driver.adminPassthru({ opcode: OPC_AER }));
    for (let i = 0; i < 20; i++) await qp.write(1, i, 1, pattern(4096, i)); // wraps the 8-entry rings twice
    await tick(5);
    expect(aer.settled).toBe(false);
  });

  it('the error event type stays masked until the Error Information log is read without RAE', async () => {
    const h = await up();
    const t = h.transport;
    const { done: aer1 } = await heldAer(h);
    t.write32(sqTailDb(0), 4095);
    expect((await aer1).dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_VALUE, LID_ERROR_INFORMATION));

    const aer2 = track((await heldAer(h)).done);
    t.write32(sqTailDb(6), 1); // a second error while the type is masked
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Reading another log page does not unmask the error type.
    await h.driver.getLogPage(LID_SMART, 512);
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Reading the Error Information log with Retain Asynchronous Event keeps it masked.
    await h.driver.getLogPage(LID_ERROR_INFORMATION, 64, { retainAsyncEvent: true });
    await tick(5);
    expect(aer2.settled).toBe(false);

    // Without RAE the event is cleared and the queued one is reported.
    await h.driver.getLogPage(LID_ERROR_INFORMATION, 64);
    await tick(5);
    expect(aer2.settled).toBe(true);
    expect(aer2.value?.status).toBe(0);
    expect(aer2.value?.dw0).toBe(aerDw0(AER_ERROR, INFO_INVALID_DOORBELL_REGISTER, LID_ERROR_INFORMATION));
  });
});
