/**
 * `nvmq serve`: open the namespaces in the engine, say what is served, and
 * stay up until SIGINT or SIGTERM; then flush every namespace and shut the
 * controller down (CC.SHN) before exiting.
 */
import { Engine } from '../engine/engine.js';
import type { NamespaceSpec } from '../engine/local.js';
import type { RunSettings } from './options.js';
import { dataPath } from './bench/runner.js';

export async function serve(namespaces: NamespaceSpec[], settings: RunSettings): Promise<number> {
  // Issue 5 adds `metrics: settings.metrics` ({ port, host }) to these options; see engineOptions() in bench/runner.ts.
  const engine = await Engine.open({ namespaces, workers: 1 });
  const m = settings.metrics!;
  console.log(`nvmq serve: data path: ${dataPath(engine.controller)}`);
  for (const ns of engine.driver.namespaces.values()) {
    const spec = namespaces[ns.nsid - 1];
    console.log(`  namespace ${ns.nsid}: ${spec?.backend === 'file' ? spec.path : 'memory'}, ${ns.blocks} blocks of ${ns.lbaSize} bytes`);
  }
  console.log(`  metrics: http://${m.host.includes(':') ? `[${m.host}]` : m.host}:${m.port}/metrics requested; this build does not serve /metrics yet`);
  console.log('ready; SIGINT or SIGTERM to stop');
  // Signal handlers do not keep the event loop alive (nor do the engine's idle workers): a timer does.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      clearInterval(keepAlive);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  console.log(`${signal}: flushing and shutting down`);
  await engine.flush();
  await engine.close();
  console.log('closed');
  return 0;
}
