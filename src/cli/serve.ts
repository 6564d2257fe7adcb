/**
 * `nvmq serve`: open the namespaces in the engine, say what is served, and
 * stay up until SIGINT or SIGTERM; then flush every namespace and shut the
 * controller down (CC.SHN) before exiting.
 */
import { Engine } from '../engine/engine.js';
import type { NamespaceSpec } from '../engine/local-device.js';
import type { RunSettings } from './options.js';
import { dataPath } from './bench/runner.js';
import { DEFAULT_METRICS_PORT } from '../engine/metrics/server.js';

export async function serve(namespaces: NamespaceSpec[], settings: RunSettings): Promise<number> {
  const engine = await Engine.open({ namespaces, workers: 1, metrics: settings.metrics ?? { port: DEFAULT_METRICS_PORT } });
  console.log(`nvmq serve: data path: ${dataPath(engine.controller)}`);
  for (const ns of engine.driver.namespaces.values()) {
    const spec = namespaces[ns.nsid - 1];
    console.log(`  namespace ${ns.nsid}: ${spec?.backend === 'file' ? spec.path : 'memory'}, ${ns.blocks} blocks of ${ns.lbaSize} bytes`);
  }
  console.log(`  metrics: ${engine.metricsAddress!.url}`);
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
