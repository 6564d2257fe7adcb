/**
 * The host's NVMe/TCP transport against nvmq's own target over loopback
 * sockets: the driver brought up over TCP, I/O queues as connections, reads
 * and writes in the capsule and by R2T, with and without digests, the bytes
 * checked on the target's side; and what goes wrong, each in one line:
 * nothing listening, a refused host, an unknown subsystem, a peer that never
 * answers or answers garbage, the target going away mid-I/O.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { openController } from '../../../../dist/index.js';
import { parseTcpAddress } from '../../../../dist/engine/transport/tcp/target-options.js';
import { discover, formatDiscoveryLog } from '../../../../dist/engine/transport/tcp/discover.js';
import type { NvmeDriver } from '../../../../dist/engine/host/driver.js';
import { NS, LBA, pattern, startTarget, until, type LiveTarget } from '../../target/tcp-host.js';
import { SUBNQN, HOST_A } from '../../target/helpers.js';

const cli = fileURLToPath(new URL('../../../../dist/cli/main.js', import.meta.url));
let t: LiveTarget;
beforeAll(async () => {
  t = await startTarget();
});
afterAll(async () => {
  await t?.stop();
});

const target = (extra: Record<string, unknown> = {}) => ({ transport: 'tcp' as const, host: '127.0.0.1', port: t.port, subnqn: SUBNQN, ...extra });

async function withDriver<T>(extra: Record<string, unknown>, fn: (d: NvmeDriver) => Promise<T>): Promise<T> {
  const d = await openController({ target: target(extra) });
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

async function engineBlocks(nsid: number, slba: number, nlb: number): Promise<Uint8Array> {
  return t.engine.read(nsid, slba, nlb);
}

describe('the driver over NVMe/TCP', () => {
  it('brings the controller up, identifies it and its namespaces, and shuts it down', async () => {
    const d = await openController({ target: target() });
    try {
      expect(d.controller.model).toBe('nvmq virtual controller');
      expect([...d.namespaces.keys()].sort()).toEqual([NS.MEM4K, NS.MEM512, NS.FILE]);
      expect(d.namespaces.get(NS.MEM512)!.lbaSize).toBe(512);
      expect(t.target.subsystem.activeControllers.size).toBe(1);
    } finally {
      await d.close();
    }
    // The controller is gone on the target once the host closed.
    expect(await until(() => t.target.subsystem.activeControllers.size === 0 && t.target.connectionCount === 0)).toBe(true);
  });

  for (const digests of [false, true]) {
    it(`writes and reads in the capsule and by R2T, the target's blocks match (digests ${digests ? 'on' : 'off'})`, async () => {
      await withDriver({ digests }, async (d) => {
        const q = await d.createIoQueuePair({ entries: 32 });
        // 4 KiB goes in the capsule (the target's IOCCSZ allows 8 KiB); 256 KiB goes after an R2T.
        for (const [nsid, slba, nlb] of [[NS.MEM4K, 3, 1], [NS.MEM4K, 100, 64], [NS.MEM512, 7, 9], [NS.FILE, 1000, 16]] as const) {
          const data = pattern(slba, nlb, LBA[nsid]!, digests ? 2 : 1);
          await q.write(nsid, slba, nlb, data);
          expect(Buffer.from(await engineBlocks(nsid, slba, nlb)).equals(Buffer.from(data))).toBe(true);
          const back = new Uint8Array(data.length);
          await q.read(nsid, slba, nlb, back);
          expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
        }
        await d.deleteIoQueuePair(q);
      });
    });
  }

  it('runs write zeroes, flush and 64 commands at once on two I/O queues', async () => {
    await withDriver({}, async (d) => {
      const [a, b] = [await d.createIoQueuePair({ entries: 16 }), await d.createIoQueuePair({ entries: 16 })];
      expect(t.target.connectionCount).toBe(3);
      const writes = Array.from({ length: 64 }, (_, i) => (i % 2 ? a : b).write(NS.MEM4K, 200 + i, 1, pattern(200 + i, 1, 4096, 9)));
      await Promise.all(writes);
      await a.writeZeroes(NS.MEM4K, 210, 4);
      await b.flush(NS.MEM4K);
      const got = await engineBlocks(NS.MEM4K, 200, 64);
      for (let i = 0; i < 64; i++) {
        const block = got.subarray(i * 4096, (i + 1) * 4096);
        const want = i >= 10 && i < 14 ? new Uint8Array(4096) : pattern(200 + i, 1, 4096, 9);
        expect(Buffer.from(block).equals(Buffer.from(want)), `block ${200 + i}`).toBe(true);
      }
    });
  });

  it('gives a command the target refuses its own status', async () => {
    await withDriver({}, async (d) => {
      const q = await d.createIoQueuePair({ entries: 8 });
      await expect(q.read(NS.MEM4K, (8 << 20) / 4096, 1, new Uint8Array(4096))).rejects.toMatchObject({ code: 'NVMQ_LBA_OUT_OF_RANGE' });
      // A namespace the host does not know goes out raw: the target's status comes back.
      const c = await q.submitRaw({ opcode: 0x02, nsid: 77, cdw12: 0 }, { buffer: new Uint8Array(4096), direction: 'from-device' });
      expect(c.status & 0x7ff).toBe(0x0b); // SCT 0, Invalid Namespace or Format
    });
  });
});

describe('what goes wrong, in one line', () => {
  it('nothing listening: NVMQ_TARGET_UNREACHABLE', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    await expect(openController({ target: target({ port }) })).rejects.toMatchObject({ code: 'NVMQ_TARGET_UNREACHABLE', message: expect.stringMatching(/connection refused/) });
  });

  it('an unknown subsystem: NVMQ_UNKNOWN_SUBSYSTEM', async () => {
    await expect(openController({ target: target({ subnqn: 'nqn.2026-12.io.nvmq:nobody' }) })).rejects.toMatchObject({ code: 'NVMQ_UNKNOWN_SUBSYSTEM', message: expect.stringContaining('nqn.2026-12.io.nvmq:nobody') });
  });

  it('a host NQN the target does not allow: NVMQ_CONNECT_INVALID_HOST, naming it', async () => {
    const strict = await startTarget({ allowAnyHost: false, allowHosts: [HOST_A] });
    try {
      const o = { transport: 'tcp' as const, host: '127.0.0.1', port: strict.port, subnqn: SUBNQN };
      await expect(openController({ target: { ...o, hostnqn: 'nqn.2026-12.io.nvmq:stranger' } })).rejects.toMatchObject({ code: 'NVMQ_CONNECT_INVALID_HOST', message: expect.stringContaining('nqn.2026-12.io.nvmq:stranger') });
      const d = await openController({ target: { ...o, hostnqn: HOST_A } });
      await d.close();
    } finally {
      await strict.stop();
    }
  });

  it('nvmq identify names this host with --hostnqn; a target that does not allow it says so in one line', async () => {
    const strict = await startTarget({ allowAnyHost: false, allowHosts: [HOST_A] });
    try {
      const run = (hostnqn: string) => promisify(execFile)('node', [cli, 'identify', '--filename', `nvme-tcp://127.0.0.1:${strict.port}/${SUBNQN}`, '--hostnqn', hostnqn], { encoding: 'utf8', timeout: 30_000 });
      expect((await run(HOST_A)).stdout).toMatch(/^subnqn\s+: nqn\.2026-12\.io\.nvmq:test$/m);
      const refused = await run('nqn.2026-12.io.nvmq:stranger').then(() => undefined, (e: { code: number; stderr: string }) => e);
      expect(refused?.code).toBe(1);
      expect(refused?.stderr).toMatch(/^nvmq: the NVMe\/TCP target at 127\.0\.0\.1:\d+ refused host nqn\.2026-12\.io\.nvmq:stranger on nqn\.2026-12\.io\.nvmq:test \(Connect Invalid Host\): allow this host NQN on the target \[NVMQ_CONNECT_INVALID_HOST\]\n$/);
    } finally {
      await strict.stop();
    }
  });

  it('a peer that accepts and never answers: NVMQ_TIMEOUT within connectTimeoutMs', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const started = Date.now();
      await expect(openController({ target: target({ port: (silent.address() as net.AddressInfo).port, connectTimeoutMs: 300 }) })).rejects.toMatchObject({ code: 'NVMQ_TIMEOUT', message: expect.stringContaining('ICReq') });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a peer that answers something else than NVMe/TCP: NVMQ_TARGET_PROTOCOL', async () => {
    // resume(): the server reads to the end, so it sees the host close and the server can close too.
    const http = net.createServer((s) => s.resume().end('HTTP/1.1 400 Bad Request\r\n\r\n' + 'x'.repeat(200)));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      await expect(openController({ target: target({ port: (http.address() as net.AddressInfo).port }) })).rejects.toMatchObject({ code: 'NVMQ_TARGET_PROTOCOL' });
    } finally {
      await new Promise<void>((r) => http.close(() => r()));
    }
  });

  it('bad target options: NVMQ_INVALID_ARGUMENT naming the field', async () => {
    await expect(openController({ target: target({ port: 70000 }) })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('target.port') });
    await expect(openController({ target: target({ subnqn: '' }) })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('target.subnqn') });
    await expect(openController({ target: target({ digests: 'yes' }) })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringContaining('target.digests') });
  });

  it('the target going away mid-I/O: every outstanding command fails once with Host Pathing Error, and close() returns', async () => {
    const own = await startTarget();
    const d = await openController({ target: { transport: 'tcp', host: '127.0.0.1', port: own.port, subnqn: SUBNQN } });
    const q = await d.createIoQueuePair({ entries: 64 });
    const settled: Array<'ok' | string> = [];
    const running = Array.from({ length: 48 }, (_, i) =>
      (async () => {
        for (let k = 0; k < 1000; k++) await q.write(NS.MEM4K, i, 1, pattern(i, 1, 4096, k));
      })().then(
        () => settled.push('ok'),
        (e: { code?: string }) => settled.push(e.code ?? String(e)),
      ),
    );
    await new Promise((r) => setTimeout(r, 50));
    await own.stop();
    await Promise.all(running);
    expect(settled).toHaveLength(48);
    expect(new Set(settled)).toEqual(new Set(['NVMQ_HOST_PATHING_ERROR']));
    await expect(q.read(NS.MEM4K, 0, 1, new Uint8Array(4096))).rejects.toMatchObject({ code: 'NVMQ_HOST_PATHING_ERROR' });
    const closing = Date.now();
    await d.close();
    expect(Date.now() - closing).toBeLessThan(5000);
  });
});

describe('discovery', () => {
  it('reads the discovery log: the discovery subsystem and the NVM subsystem, as nvme discover prints them', async () => {
    const log = await discover({ host: '127.0.0.1', port: t.port });
    expect(log.entries.map((e) => e.subnqn).sort()).toEqual([SUBNQN, 'nqn.2014-08.org.nvmexpress.discovery'].sort());
    const nvm = log.entries.find((e) => e.subnqn === SUBNQN)!;
    expect(nvm).toMatchObject({ trtype: 3, adrfam: 1, subtype: 2, trsvcid: String(t.port), traddr: '127.0.0.1' });
    const text = formatDiscoveryLog(log);
    expect(text).toMatch(/^Discovery Log Number of Records 2, Generation counter \d+$/m);
    expect(text).toMatch(new RegExp(`^subnqn:  ${SUBNQN.replace(/\./g, '\\.')}$`, 'm'));
    expect(text).toMatch(/^subtype: nvme subsystem$/m);
    // Nothing stays connected.
    expect(await until(() => t.target.connectionCount === 0)).toBe(true);
  });

  it('nothing listening: one line', async () => {
    await expect(discover({ host: '127.0.0.1', port: 1 })).rejects.toMatchObject({ code: 'NVMQ_TARGET_UNREACHABLE' });
  });
});

describe('nvme-tcp:// addresses', () => {
  it('parse as nvme-cli users write them', () => {
    expect(parseTcpAddress('nvme-tcp://10.0.0.2:4421/nqn.2014-08.org.nvmexpress:uuid:1234')).toEqual({ transport: 'tcp', host: '10.0.0.2', port: 4421, subnqn: 'nqn.2014-08.org.nvmexpress:uuid:1234' });
    expect(parseTcpAddress('nvme-tcp://storage/nqn.2026-12.io.nvmq:subsystem')).toEqual({ transport: 'tcp', host: 'storage', port: 4420, subnqn: 'nqn.2026-12.io.nvmq:subsystem' });
    expect(parseTcpAddress('nvme-tcp://[::1]:4420/nqn.x')).toEqual({ transport: 'tcp', host: '::1', port: 4420, subnqn: 'nqn.x' });
    expect(parseTcpAddress('/dev/nvme0n1')).toBeUndefined();
    expect(parseTcpAddress('nvme-tcp://host')).toBeUndefined();
  });
});
