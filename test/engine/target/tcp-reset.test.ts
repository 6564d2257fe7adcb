/**
 * An engine reset under a connected NVMe/TCP host: the reset fails the queue
 * pair an I/O queue's commands run on (an I/O thread's, or the main
 * thread's). Commands caught in it complete with Command Interrupted, which a
 * host retries; the next command finds a fresh pair, and what was written
 * before the reset reads back. The fabrics controller, its connections and
 * their QIDs are untouched: the host sees no reconnect.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { NS, TcpHost, destroyAll, pattern, startTarget, type LiveTarget } from './tcp-host.js';

const HOSTID = new Uint8Array(16).fill(0x5a);
let t: LiveTarget | undefined;
afterEach(async () => {
  await destroyAll();
  await t?.stop();
  t = undefined;
});

/** Retries while the answer is Command Interrupted (SC 21h, no DNR), as a host does; the final status. */
async function retried(op: () => Promise<{ status: number }>): Promise<number> {
  for (let i = 0; ; i++) {
    const { status } = await op();
    if (status !== 0x21 || i === 50) return status;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('NVMe/TCP target through an engine reset', () => {
  for (const ioThreads of [undefined, 0]) {
    it(`I/O goes on after engine.reset(): the host retries what the reset interrupted (${ioThreads === 0 ? 'main thread' : 'I/O thread'})`, async () => {
      t = await startTarget(ioThreads === undefined ? {} : { ioThreads });
      const admin = await TcpHost.open(t.port);
      await admin.adminUp({ hostid: HOSTID });
      const io = await TcpHost.open(t.port);
      expect((await io.connect({ qid: 1, cntlid: admin.cntlid, hostid: HOSTID })).status).toBe(0);
      const before = pattern(40, 4, 4096, 3);
      expect((await io.write(NS.MEM4K, 40, 4, before)).status).toBe(0);
      // Commands while the engine resets (the test host runs one at a time).
      const resetting = t.engine.reset();
      const during: number[] = [];
      for (let i = 0; i < 6; i++) during.push((await io.write(NS.MEM4K, 100 + i, 1, pattern(100 + i, 1, 4096, 4), { inCapsule: true })).status);
      await resetting;
      for (const st of during) expect([0, 0x21]).toContain(st);
      // The same connections serve on: a write, then reads of it and of what was written before.
      const after = pattern(60, 2, 4096, 5);
      expect(await retried(() => io.write(NS.MEM4K, 60, 2, after))).toBe(0);
      const r1 = await io.read(NS.MEM4K, 60, 2, 4096);
      expect(r1.status).toBe(0);
      expect(Buffer.from(r1.data!).equals(Buffer.from(after))).toBe(true);
      const r2 = await io.read(NS.MEM4K, 40, 4, 4096);
      expect(Buffer.from(r2.data!).equals(Buffer.from(before))).toBe(true);
      expect(t.target.connectionCount).toBe(2);
      expect(t.target.subsystem.activeControllers.size).toBe(1);
      await io.close();
      await admin.close();
    });
  }
});
