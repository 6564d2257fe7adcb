/**
 * A short seeded run of the NVMe/TCP PDU fuzzer (bench/tcp-fuzz.mjs, where the long run lives) against a
 * live target: random bytes, well-formed exchanges and mutated ones (header bits and bytes, PLEN, PDU
 * type, truncation, duplication, junk, dropped PDUs, data digest errors), on admin, discovery and I/O
 * queues. Each run checks that the process never throws, that clean connections are answered in full
 * within a bound, that every connection the fuzzer leaves is gone from the target within a bound, that a
 * probe host is served, that sentinel blocks never change, and that no controller or DMA buffer is left.
 * The seeds come from fast-check, so a failure names the one to replay with the long run.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
// @ts-expect-error: a JavaScript module of the bench, without types.
import { runTcpFuzz } from '../../../bench/tcp-fuzz.mjs';

interface FuzzResult {
  pdusSent: number;
  connections: number;
  commandsCompleted: number;
  fes: Record<string, number>;
  mutations: Record<string, number>;
  cleanExchanges: number;
  probes: number;
  failures: string[];
}

describe('NVMe/TCP PDU fuzzing', () => {
  it('survives random and mutated PDU streams (seeded)', async () => {
    const totals = { pdus: 0, connections: 0, commands: 0, terminations: 0, clean: 0 };
    await fc.assert(
      // Every other run serves the I/O queues on the main thread (ioThreads 0), whose DMA pool the run's end
      // checks: a buffer a command never gave back shows there.
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.boolean(), async (seed, onMain) => {
        const r = (await runTcpFuzz({ pdus: 1500, seed, lanes: 2, ioThreads: onMain ? 0 : undefined })) as FuzzResult;
        expect(r.failures).toEqual([]);
        totals.pdus += r.pdusSent;
        totals.connections += r.connections;
        totals.commands += r.commandsCompleted;
        totals.terminations += Object.values(r.fes).reduce((a, b) => a + b, 0);
        totals.clean += r.cleanExchanges;
        expect(r.probes).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: 4, seed: 20261203, endOnFailure: true },
    );
    // The run did reach the target: commands were answered, connections were terminated, clean ones checked.
    expect(totals.pdus).toBeGreaterThanOrEqual(6000);
    expect(totals.commands).toBeGreaterThan(50);
    expect(totals.terminations).toBeGreaterThan(0);
    expect(totals.clean).toBeGreaterThan(0);
  }, 60_000);
});
