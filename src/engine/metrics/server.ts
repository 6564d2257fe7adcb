/**
 * `/metrics` over HTTP (node:http): the Prometheus text exposition of a
 * registry, on 127.0.0.1 unless told otherwise.
 *
 * The default port, 9469, is none of the usual neighbours' (node_exporter
 * 9100, the OpenTelemetry Prometheus exporter 9464, Prometheus 9090), so an
 * instrumented Node.js service and nvmq in one host do not collide.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { NvmqError } from '../errors.js';

export const DEFAULT_METRICS_PORT = 9469;
export const DEFAULT_METRICS_HOST = '127.0.0.1';

export interface MetricsServerOptions {
  /** TCP port (default 9469); 0 for any free port (see `MetricsServer.port`). */
  port?: number;
  /** Address to listen on (default 127.0.0.1: the metrics are not exposed beyond this host unless asked). */
  host?: string;
}

export interface MetricsServer {
  /** The address and port actually bound. */
  readonly host: string;
  readonly port: number;
  /** `http://host:port/metrics` */
  readonly url: string;
  close(): Promise<void>;
}

/** Throws a one-line NVMQ_INVALID_ARGUMENT for a port or host that cannot be right. */
export function checkMetricsServerOptions(opts: MetricsServerOptions): { port: number; host: string } {
  const port = opts.port ?? DEFAULT_METRICS_PORT;
  const host = opts.host ?? DEFAULT_METRICS_HOST;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics port must be an integer 0..65535, got ${String(opts.port)}`);
  }
  if (typeof host !== 'string' || host.length === 0 || /\s|\//.test(host)) {
    throw new NvmqError('NVMQ_INVALID_ARGUMENT', `metrics host must be a host name or IP address, got ${JSON.stringify(opts.host)}`);
  }
  return { port, host };
}

/** Serves `registry` at /metrics; resolves once listening. */
export async function serveMetrics(registry: Registry, opts: MetricsServerOptions = {}): Promise<MetricsServer> {
  const { port, host } = checkMetricsServerOptions(opts);
  const server = createServer((req, res) => respond(registry, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      const why = e.code === 'EADDRINUSE' ? 'the address is already in use' : e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' ? 'no such local address' : e.message;
      reject(new NvmqError('NVMQ_METRICS_LISTEN', `metrics server cannot listen on ${where}: ${why} (${e.code ?? 'error'})`, { cause: e }));
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
