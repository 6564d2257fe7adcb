import { describe, it, expect, afterEach } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
// Engine runs its workers from the build (worker threads cannot run TypeScript): tests take it from there too.
import { Engine } from '../../dist/index.js';
import { tempDir, haveTool } from '../helpers/harness.js';
import { parseExposition } from '../helpers/exposition.js';

const fixture = (name: string): string => new URL(`../fixtures/${name}`, import.meta.url).href;
const MIX = { nsid: 1, reads: 50, writes: 20, flushes: 1, zeroes: 1, zeroBlocks: 4, deallocates: 1, bad: 3, badLba: 4096, depth: 4 };

let engine: Engine | undefined;
let prometheus: ChildProcess | undefined;
const cleanups: Array<() => void> = [];
afterEach(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus!.once('exit', r));
    prometheus.kill('SIGTERM');
    await exited;
  }
  prometheus = undefined;
  await engine?.close();
  engine = undefined;
  for (const c of cleanups.splice(0)) c();
});

/** Every PromQL expression of the Grafana dashboard, with its variables given values a query accepts. */
function dashboardExprs(): string[] {
  const dash = JSON.parse(readFileSync(new URL('../../dashboards/nvmq.json', import.meta.url), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', '.*')));
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface QueryResult {
  status: string;
  error?: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe('Grafana dashboard', () => {
  it('is valid JSON whose every expression names metrics the exposition has', async () => {
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 16 << 20 }], workers: 1 });
    await engine.run(fixture('mixed-io-task.mjs'), { ...MIX, first: 0 });
    const names = new Set(parseExposition(await engine.metrics()).map((s) => s.name));
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(10);
    for (const expr of exprs) {
      const used = expr.match(/\bnvmq_[a-z0-9_]+/g) ?? [];
      expect(used.length, expr).toBeGreaterThan(0);
      for (const name of used) expect(names.has(name), `${name} in ${expr}`).toBe(true);
    }
  });
});

describe('a real Prometheus server', () => {
  it('scrapes /metrics and finds the I/O done, and answers every dashboard query', async (ctx) => {
    if (!haveTool('prometheus')) return ctx.skip();
    engine = await Engine.open({ namespaces: [{ backend: 'memory', size: 16 << 20 }], workers: 2, metrics: { port: 0 } });
    await Promise.all([0, 1].map((k) => engine!.run(fixture('mixed-io-task.mjs'), { ...MIX, first: k * 512 })));
    const t = tempDir();
    cleanups.push(t.cleanup);
    const config = path.join(t.dir, 'prometheus.yml');
    writeFileSync(config, [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: nvmq',
      `    metrics_path: /metrics`,
      '    static_configs:',
      `      - targets: ['127.0.0.1:${engine.metricsAddress!.port}']`,
      '',
    ].join('\n'));
    const port = await freePort();
    const api = `http://127.0.0.1:${port}/api/v1`;
    let log = '';
    prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(t.dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const query = async (q: string): Promise<QueryResult> => (await (await fetch(`${api}/query?query=${encodeURIComponent(q)}`)).json()) as QueryResult;

    // Wait for Prometheus to come up and scrape once (scrape interval 1 s).
    const deadline = Date.now() + 15_000;
    let reads: QueryResult | undefined;
    while (Date.now() < deadline) {
      expect(prometheus.exitCode, `prometheus exited: ${log}`).toBeNull();
      reads = await query('nvmq_reads_completed_total').catch(() => undefined);
      if (reads?.status === 'success' && reads.data.result.length === 2) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(reads?.data.result, `no nvmq series in Prometheus; its log: ${log}`).toHaveLength(2);
    for (const r of reads!.data.result) {
      expect(r.metric).toMatchObject({ job: 'nvmq', namespace: '1', __name__: 'nvmq_reads_completed_total' });
      expect(Number(r.value[1])).toBe(MIX.reads);
    }
    const value = async (q: string): Promise<number> => Number((await query(q)).data.result[0]?.value[1]);
    expect(await value('sum(nvmq_written_bytes_total)')).toBe(2 * MIX.writes * 8192);
    expect(await value('sum(nvmq_io_errors_total{op="read",status="lba_out_of_range"})')).toBe(2 * MIX.bad);
    expect(await value('sum(nvmq_io_latency_seconds_count)')).toBe(2 * (MIX.reads + MIX.writes + MIX.flushes + MIX.zeroes + MIX.deallocates));
    const p99 = await value('histogram_quantile(0.99, sum by (le) (nvmq_io_latency_seconds_bucket{op="read"}))');
    expect(p99).toBeGreaterThan(0);
    expect(p99).toBeLessThan(17);
    expect(await value('nvmq_smart_host_read_commands_total')).toBe(2 * MIX.reads);
    expect((await query('nvmq_info')).data.result[0]?.metric).toMatchObject({ backend: 'memory', namespaces: '1' });
    // Every panel's query is valid PromQL over these series.
    for (const expr of dashboardExprs()) {
      const r = await query(expr);
      expect(r.status, `${expr}: ${r.error ?? ''}`).toBe('success');
    }
  }, 30_000);
});
