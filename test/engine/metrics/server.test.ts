// /metrics holds no connection for long: slow and silent clients are closed within the timeouts, idle
// kept-alive ones too, at most maxConnections are open at once, and a normal scrape is answered while slow
// clients wait. Real sockets (node:net) against the real server; the timeouts are set short through the
// options, and only generous upper bounds are put on the machine's speed.
import { describe, it, expect, afterEach } from 'vitest';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Registry, Counter } from 'prom-client';
import { serveMetrics, checkMetricsServerOptions, DEFAULT_METRICS_LIMITS, type MetricsServer, type MetricsServerOptions } from '../../../src/engine/metrics/server.js';
// Engine runs its workers from the build (worker threads cannot run TypeScript): tests take it from there too.
import { Engine } from '../../../dist/index.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server over a registry with one counter, closed after the test. */
async function server(opts: MetricsServerOptions): Promise<MetricsServer> {
  const registry = new Registry();
  new Counter({ name: 'probe_total', help: 'A counter, so a scrape has a body', registers: [registry] }).inc(3);
  const s = await serveMetrics(registry, { port: 0, ...opts });
  cleanups.push(() => s.close());
  return s;
}

interface Client {
  socket: net.Socket;
  /** When the socket was connected (performance.now()). */
  readonly connectedAt: number;
  /** Resolves when the server has closed it: how long after connecting, and what it had sent. */
  closed: Promise<{ afterMs: number; received: string }>;
  readonly open: boolean;
}

/** Connects and sends `send` (perhaps nothing, perhaps part of a request), then nothing more. */
async function slowClient(port: number, send: string): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());
  socket.on('error', () => {});
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (received += d));
  let open = true;
  let connectedAt = performance.now();
  const closed = new Promise<{ afterMs: number; received: string }>((resolve) => socket.once('close', () => {
    open = false;
    resolve({ afterMs: performance.now() - connectedAt, received });
  }));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  connectedAt = performance.now();
  if (send) socket.write(send);
  return {
    socket,
    connectedAt,
    closed,
    get open() {
      return open;
    },
  };
}

/** One scrape on a fresh connection (no keep-alive): its status line ('' when the connection was closed unanswered) and body. */
function scrape(port: number): Promise<{ status: string; body: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    cleanups.push(() => socket.destroy());
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    // A connection closed before it is read ends in a reset: that is the answer "no room".
    socket.on('error', () => {});
    socket.on('close', () => resolve({ status: text.split('\r\n')[0] ?? '', body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
  });
}

/**
 * A scrape once the server has room again: the server counts a connection until its own side has closed,
 * which may come a moment after the client saw it close, so a refusal is retried (for a few seconds at most).
 */
async function scrapeWhenRoom(port: number): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const { status } = await scrape(port);
    if (status !== '' || attempt === 100) return status;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('/metrics closes slow and idle connections', () => {
  it('silent clients and clients stuck mid request line or headers are closed after headersTimeoutMs, with a 408; a scrape is answered meanwhile', async () => {
    const headersTimeoutMs = 2000;
    const s = await server({ headersTimeoutMs, requestTimeoutMs: 4000 });
    const partial = ['', 'GET /metr', 'GET /metrics HTTP/1.1\r\n', 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag'];
    const clients = await Promise.all(Array.from({ length: 40 }, (_, i) => slowClient(s.port, partial[i % partial.length]!)));
    // A normal scrape, while all forty wait.
    const r = await scrape(s.port);
    expect(r.status).toBe('HTTP/1.1 200 OK');
    expect(r.body).toContain('probe_total 3');
    expect(clients.filter((c) => c.open).length).toBe(40);
    const ends = await Promise.all(clients.map((c) => c.closed));
    for (const e of ends) {
      // Not before the timeout (less a margin for the two sides' clocks); well within a generous bound after it.
      expect(e.afterMs).toBeGreaterThanOrEqual(headersTimeoutMs * 0.8);
      expect(e.afterMs).toBeLessThan(headersTimeoutMs + 10_000);
      expect(e.received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    }
    // And the server goes on answering.
    expect((await scrape(s.port)).status).toBe('HTTP/1.1 200 OK');
  });

  it('a client whose headers are in but whose body never finishes is closed after requestTimeoutMs', async () => {
    const requestTimeoutMs = 900;
    const s = await server({ headersTimeoutMs: 300, requestTimeoutMs });
    const c = await slowClient(s.port, 'POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc');
    const e = await c.closed;
    expect(e.afterMs).toBeGreaterThanOrEqual(requestTimeoutMs * 0.8);
    expect(e.afterMs).toBeLessThan(requestTimeoutMs + 10_000);
  });

  it('a kept-alive connection with no next request is closed after keepAliveTimeoutMs', async () => {
    const keepAliveTimeoutMs = 400;
    const s = await server({ keepAliveTimeoutMs });
    const c = await slowClient(s.port, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const e = await c.closed;
    expect(e.received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(e.afterMs).toBeGreaterThanOrEqual(keepAliveTimeoutMs * 0.8);
    expect(e.afterMs).toBeLessThan(keepAliveTimeoutMs + 10_000);
  });

  it('at most maxConnections are open: more are closed at once, unanswered; room again once the slow ones are closed', async () => {
    const headersTimeoutMs = 2000;
    const s = await server({ maxConnections: 8, headersTimeoutMs, requestTimeoutMs: headersTimeoutMs });
    const held = await Promise.all(Array.from({ length: 8 }, (_, i) => slowClient(s.port, i % 2 ? 'GET /met' : '')));
    // At the cap: further connections are accepted by the kernel, then closed by the server before it reads them.
    const extra = await Promise.all(Array.from({ length: 5 }, () => slowClient(s.port, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')));
    for (const e of await Promise.all(extra.map((c) => c.closed))) {
      expect(e.received).toBe('');
      expect(e.afterMs).toBeLessThan(headersTimeoutMs);
    }
    expect((await scrape(s.port)).status).toBe('');
    expect(held.every((c) => c.open)).toBe(true);
    for (const e of await Promise.all(held.map((c) => c.closed))) expect(e.received).toMatch(/^HTTP\/1\.1 408/);
    expect(await scrapeWhenRoom(s.port)).toBe('HTTP/1.1 200 OK');
  });
});

describe('/metrics limits: options', () => {
  it('has defaults in seconds, not minutes, and takes each limit as an option', () => {
    expect(DEFAULT_METRICS_LIMITS).toEqual({ headersTimeoutMs: 5000, requestTimeoutMs: 10000, keepAliveTimeoutMs: 5000, maxConnections: 64 });
    expect(checkMetricsServerOptions({})).toEqual({ port: 9469, host: '127.0.0.1', ...DEFAULT_METRICS_LIMITS });
    expect(checkMetricsServerOptions({ headersTimeoutMs: 1, requestTimeoutMs: 2, keepAliveTimeoutMs: 3, maxConnections: 4 })).toMatchObject({ headersTimeoutMs: 1, requestTimeoutMs: 2, keepAliveTimeoutMs: 3, maxConnections: 4 });
    // A request timeout shorter than the default headers timeout takes the headers timeout down with it.
    expect(checkMetricsServerOptions({ requestTimeoutMs: 2000 })).toMatchObject({ headersTimeoutMs: 2000, requestTimeoutMs: 2000 });
  });

  it('refuses a bad limit in one line, naming it and its range, before Engine.open starts anything', async () => {
    for (const [metrics, message] of [
      [{ headersTimeoutMs: 0 }, 'metrics headersTimeoutMs must be an integer 1..3600000, got 0'],
      [{ requestTimeoutMs: 1.5 }, 'metrics requestTimeoutMs must be an integer 1..3600000, got 1.5'],
      [{ keepAliveTimeoutMs: -1 }, 'metrics keepAliveTimeoutMs must be an integer 1..3600000, got -1'],
      [{ maxConnections: 70000 }, 'metrics maxConnections must be an integer 1..65535, got 70000'],
      [{ maxConnections: '8' }, 'metrics maxConnections must be an integer 1..65535, got "8"'],
      [{ headersTimeoutMs: 3000, requestTimeoutMs: 2000 }, 'metrics headersTimeoutMs must not exceed requestTimeoutMs (2000), got 3000'],
    ] as const) {
      const err = await Engine.open({ namespaces: [{ backend: 'memory', size: 1 << 20 }], workers: 1, metrics: { port: 0, ...(metrics as MetricsServerOptions) } }).catch((e: Error & { code: string }) => e);
      expect(err).toMatchObject({ code: 'NVMQ_INVALID_ARGUMENT', message });
    }
  });

  it('Engine.open({ metrics }) passes the limits to its server', async () => {
    const engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 8 << 20 }], workers: 1, metrics: { port: 0, headersTimeoutMs: 1000, requestTimeoutMs: 2000, maxConnections: 2 } });
    cleanups.push(() => engine.close());
    const port = engine.metricsAddress!.port;
    const slow = [await slowClient(port, 'GET /metri'), await slowClient(port, '')];
    const refused = await slowClient(port, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect((await refused.closed).received).toBe('');
    for (const e of await Promise.all(slow.map((c) => c.closed))) {
      expect(e.received).toMatch(/^HTTP\/1\.1 408/);
      expect(e.afterMs).toBeGreaterThanOrEqual(800);
      expect(e.afterMs).toBeLessThan(1000 + 10_000);
    }
    expect(await scrapeWhenRoom(port)).toBe('HTTP/1.1 200 OK');
  });
});
