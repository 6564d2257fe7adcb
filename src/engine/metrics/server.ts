/**
 * `/metrics` over HTTP (node:http): the Prometheus text exposition of a
 * registry, on 127.0.0.1 unless told otherwise.
 *
 * The default port, 9469, is none of the usual neighbours' (node_exporter
 * 9100, the OpenTelemetry Prometheus exporter 9464, Prometheus 9090), so an
 * instrumented Node.js service and nvmq in one host do not collide.
 *
 * No client holds a connection for long: a scrape is one small GET, so a
 * connection that has not sent its request headers within a few seconds, or
 * its whole request, or that sits idle between requests, is closed, and at
 * most `maxConnections` are open at once (more are closed as soon as they
 * are accepted). Node's own defaults would keep a silent or slow connection
 * for a minute or more (headers 60 s, request 300 s, checked every 30 s),
 * so that a few hundred of them would hold as many sockets for that long.
 * Slow connections cost the server nothing while they wait (the event loop
 * serves other requests meanwhile), so a scrape is answered as long as the
 * cap leaves it room.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { debuglog } from 'node:util';
import type { Registry } from 'prom-client';
import { NvmqError } from '../errors.js';

const trace = debuglog('nvmq');

/** Where a listen failed and why, in words: `127.0.0.1:4420: the address is already in use (EADDRINUSE)`. */
export function describeListenError(e: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = e.code === 'EADDRINUSE' ? 'the address is already in use' : e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' ? 'no such local address' : e.message;
  return `${where}: ${why} (${e.code ?? 'error'})`;
}

export const DEFAULT_METRICS_PORT = 9469;
export const DEFAULT_METRICS_HOST = '127.0.0.1';
/** The limits a metrics server applies when not told otherwise (milliseconds, and connections). */
export const DEFAULT_METRICS_LIMITS = { headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000, maxConnections: 64 } as const;
/** The longest any of the timeouts may be: an hour. */
const MAX_TIMEOUT_MS = 3_600_000;
/** Expired requests are looked for this often at most (Node's default is every 30 s, far longer than the timeouts). */
const MAX_CHECK_INTERVAL_MS = 1_000;

export interface MetricsServerOptions {
  /** TCP port (default 9469); 0 for any free port (see `MetricsServer.port`). */
  port?: number;
  /** Address to listen on (default 127.0.0.1: the metrics are not exposed beyond this host unless asked). */
  host?: string;
  /** A request's headers must arrive within this many ms of its start (for a new connection, of connecting), else the connection is closed; default 5000, at most `requestTimeoutMs`. */
  headersTimeoutMs?: number;
  /** A whole request must arrive within this many ms, else the connection is closed (408); default 10000. */
  requestTimeoutMs?: number;
  /** A kept-alive connection with no request for this many ms is closed; default 5000. */
  keepAliveTimeoutMs?: number;
  /** Connections open at once; one more is closed as soon as it is accepted. Default 64. */
  maxConnections?: number;
}

type Limits = { -readonly [K in keyof typeof DEFAULT_METRICS_LIMITS]: number };

export interface MetricsServer {
  /** The address and port actually bound. */
  readonly host: string;
  readonly port: number;
  /** `http://host:port/metrics` */
  readonly url: string;
  close(): Promise<void>;
}

/** Throws a one-line NVMQ_INVALID_ARGUMENT for an option that cannot be right; returns every setting, defaults filled in. */
export function checkMetricsServerOptions(opts: MetricsServerOptions): { port: number; host: string } & Limits {
  const port = opts.port ?? DEFAULT_METRICS_PORT;
  const host = opts.host ?? DEFAULT_METRICS_HOST;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics port must be an integer 0..65535, got ${String(opts.port)}`);
  }
  if (typeof host !== 'string' || host.length === 0 || /\s|\//.test(host)) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics host must be a host name or IP address, got ${JSON.stringify(opts.host)}`);
  }
  const requestTimeoutMs = whole(opts, 'requestTimeoutMs', MAX_TIMEOUT_MS);
  // Headers come with the request: a default longer than a shorter request timeout given is cut to it.
  const headersTimeoutMs = opts.headersTimeoutMs === undefined ? Math.min(DEFAULT_METRICS_LIMITS.headersTimeoutMs, requestTimeoutMs) : whole(opts, 'headersTimeoutMs', MAX_TIMEOUT_MS);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics headersTimeoutMs must not exceed requestTimeoutMs (${requestTimeoutMs}), got ${headersTimeoutMs}`);
  }
  return { port, host, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs: whole(opts, 'keepAliveTimeoutMs', MAX_TIMEOUT_MS), maxConnections: whole(opts, 'maxConnections', 65535) };
}

/** A limit given as an integer 1..max, or its default. */
function whole(opts: MetricsServerOptions, key: keyof Limits, max: number): number {
  const v = opts[key];
  if (v === undefined) return DEFAULT_METRICS_LIMITS[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics ${key} must be an integer 1..${max}, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
  }
  return v;
}

/** Serves `registry` at /metrics; resolves once listening. */
export async function serveMetrics(registry: Registry, opts: MetricsServerOptions = {}): Promise<MetricsServer> {
  const { port, host, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections } = checkMetricsServerOptions(opts);
  const server = createServer(
    {
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: keepAliveTimeoutMs,
      // Node closes expired requests only when it looks for them: every quarter of the headers timeout, and at least every second.
      connectionsCheckingInterval: Math.max(10, Math.min(MAX_CHECK_INTERVAL_MS, Math.floor(headersTimeoutMs / 4))),
    },
    (req, res) => respond(registry, req, res),
  );
  server.maxConnections = maxConnections;
  server.on('drop', (c?: { remoteAddress?: string; remotePort?: number }) => trace('metrics: closed a connection from %s:%s unanswered: maxConnections (%d) are open', c?.remoteAddress, c?.remotePort, maxConnections));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(new NvmqError('NVMQ_METRICS_LISTEN', `metrics server cannot listen on ${describeListenError(e, host, port)}`, { cause: e }));
    });
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const shown = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    host: bound.address,
    port: bound.port,
    url: `http://${shown}:${bound.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper keeps its connection alive between scrapes: close() alone would wait for it.
        server.closeAllConnections();
      }),
  };
}

/**
 * Serves an engine's metrics (`Engine.open({ metrics: { port, host } })` does
 * this itself; this is for a caller that decides later, like `nvmq serve`).
 * Close it before closing the engine.
 */
export function startMetricsServer(engine: { readonly metricsRegistry: Registry }, opts: MetricsServerOptions = {}): Promise<MetricsServer> {
  return serveMetrics(engine.metricsRegistry, opts);
}

function respond(registry: Registry, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET, HEAD' }).end(`${req.method ?? ''} not allowed: use GET\n`);
    return;
  }
  registry.metrics().then(
    (body) => {
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    (e: unknown) => {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${e instanceof Error ? e.message : String(e)}\n`);
    },
  );
}
