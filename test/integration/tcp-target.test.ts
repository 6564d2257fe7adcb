/**
 * The NVMe/TCP target inside an engine, as `engine.listen()` gives it: its
 * I/O threads, its per-host metrics, its bounds on connections that never
 * connect a queue, and its close. The protocol itself is tested in
 * test/engine/target/ and against Linux in test/linux-peer/tcp-target.test.ts.
 */
import { describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { Engine, NvmqError } from '../../dist/index.js';
import * as path from 'node:path';
import { deferPerTest, pattern, tempDirsPerTest, waitFor, writtenImage } from '../helpers/harness.js';
import { nativeStatus } from '../../dist/engine/uring/native.js';

/** Moving a connection to another thread needs the addon's dup(2): without it every queue stays on the main thread. */
const canMove = nativeStatus().loaded;

const defer = deferPerTest();
const dir = tempDirsPerTest();

async function open(opts: Parameters<Engine['listen']>[0] = {}, workers = 2): Promise<{ engine: Engine; target: Awaited<ReturnType<Engine['listen']>> }> {
  const engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 8 << 20 }], workers });
  defer(() => engine.close());
  const target = await engine.listen({ port: 0, allowAnyHost: true, ...opts });
  return { engine, target };
}

const series = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('engine.listen()', () => {
  // O_DIRECT needs the addon (it places buffers on the boundaries), and so do I/O threads.
  it.skipIf(!canMove)(`serves an O_DIRECT file namespace from its I/O threads: reads and writes in the capsule and by R2T land and come back${canMove ? '' : ' (skipped: no native addon)'}`, async () => {
    const engine = await Engine.open({ namespaces: [{ backend: 'file', path: writtenImage(path.join(dir(), 'direct.img'), 8 << 20), direct: true }], workers: 1 });
    defer(() => engine.close());
    const target = await engine.listen({ port: 0, allowAnyHost: true });
    const host = await Engine.open({ target: { transport: 'tcp', host: '127.0.0.1', port: target.address.port, subnqn: 'nqn.2026-12.io.nvmq:subsystem' }, workers: 1, metrics: false });
    defer(() => host.close());
    // 4 KiB goes in the capsule, 64 KiB by R2T; both are read back through the target and straight from the file.
    for (const [lba, blocks, seed] of [[3, 1, 1], [100, 16, 2]] as const) {
      const data = pattern(blocks * 4096, seed);
      await host.write(1, lba, data);
      expect(Buffer.from(await host.read(1, lba, blocks)).equals(Buffer.from(data))).toBe(true);
      expect(Buffer.from(await engine.read(1, lba, blocks)).equals(Buffer.from(data))).toBe(true);
    }
  });

  it('starts one I/O thread per pool worker (or as asked; none without the addon), and says so; closing the engine closes the target', async () => {
    const { engine, target } = await open();
    expect(target.ioThreads).toBe(canMove ? 2 : 0);
    expect(target.address).toEqual({ host: '127.0.0.1', port: expect.any(Number) as unknown });
    const other = await engine.listen({ port: 0, allowAnyHost: true, ioThreads: 0 });
    expect(other.ioThreads).toBe(0);
    // Each target's series carry its address.
    const listens = new Set(series(await engine.metrics(), 'nvmq_tcp_commands_total').map((l) => /listen="([^"]+)"/.exec(l)?.[1]));
    expect(listens).toEqual(new Set([`127.0.0.1:${target.address.port}`, `127.0.0.1:${other.address.port}`]));
    await other.close();
    expect(new Set(series(await engine.metrics(), 'nvmq_tcp_commands_total').map((l) => /listen="([^"]+)"/.exec(l)?.[1]))).toEqual(new Set([`127.0.0.1:${target.address.port}`]));
    const { port } = target.address;
    await engine.close();
    // Nothing listens any more.
    await expect(new Promise((resolve, reject) => net.connect(port, '127.0.0.1').once('connect', resolve).once('error', reject))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('refuses in one line: no say on hosts, a bad address or thread count, a port in use', async () => {
    const { engine, target } = await open();
    await expect(engine.listen({ port: 0 })).rejects.toThrow(/^say which hosts may connect: allowHosts \(host NQNs\) or allowAnyHost: true$/);
    await expect(engine.listen({ host: 'localhost', allowAnyHost: true })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message: expect.stringMatching(/^host must be an IPv4 or IPv6 address/) as unknown });
    await expect(engine.listen({ port: 0, allowAnyHost: true, ioThreads: -1 })).rejects.toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT' });
    const busy = engine.listen({ port: target.address.port, allowAnyHost: true });
    await expect(busy).rejects.toBeInstanceOf(NvmqError);
    await expect(busy).rejects.toMatchObject({ code: 'NVMQ_TCP_LISTEN', message: expect.stringMatching(/the address is already in use \(EADDRINUSE\)$/) as unknown });
  });

  it('closes a connection that connects no queue within connectTimeoutMs, and counts it meanwhile under host "none"', async () => {
    const { engine, target } = await open({ connectTimeoutMs: 300 });
    const sock = net.connect(target.address.port, '127.0.0.1');
    sock.on('error', () => {});
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    await new Promise((r) => sock.once('connect', r));
    await waitFor(() => target.connectionCount === 1, 'the connection', 2000);
    const listen = `127.0.0.1:${target.address.port}`;
    expect(series(await engine.metrics(), 'nvmq_tcp_connections')).toContain(`nvmq_tcp_connections{listen="${listen}",host="none",queue="none"} 1`);
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(2000);
    await waitFor(() => target.connectionCount === 0, 'the connection gone', 2000);
    expect(series(await engine.metrics(), 'nvmq_tcp_connections')).toEqual([]);
  });

  it('a PDU that is not an ICReq: a C2HTermReq, the connection closed, counted as a termination; the target serves on', async () => {
    const { engine, target } = await open();
    const sock = net.connect(target.address.port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (b) => got.push(b));
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    await new Promise((r) => sock.once('connect', r));
    // A CapsuleCmd common header (type 04h, HLEN 72, PLEN 72) before any ICReq.
    const pdu = Buffer.alloc(72);
    pdu.writeUInt8(0x04, 0);
    pdu.writeUInt8(72, 2);
    pdu.writeUInt32LE(72, 4);
    sock.write(pdu);
    await closed;
    const reply = Buffer.concat(got);
    expect(reply[0]).toBe(0x03); // C2HTermReq
    expect(series(await engine.metrics(), 'nvmq_tcp_terminations_total')).toContain(`nvmq_tcp_terminations_total{listen="127.0.0.1:${target.address.port}",host="none"} 1`);
    expect(target.connectionCount).toBe(0);
    // The engine and the listener are unaffected.
    await engine.write(1, 0, new Uint8Array(4096).fill(5));
    expect((await engine.read(1, 0, 1))[0]).toBe(5);
    const again = net.connect(target.address.port, '127.0.0.1');
    await new Promise((r) => again.once('connect', r));
    again.destroy();
  });
});
