/**
 * `nvmq serve`: open the namespaces in the engine, say what is served
 * (/metrics, and with --listen the NVMe/TCP target), and stay up until
 * SIGINT or SIGTERM; then close the target, flush every namespace and shut
 * the controller down (CC.SHN) before exiting.
 */
import { Engine } from '../engine/engine.js';
import type { NamespaceSpec } from '../engine/local-device.js';
import type { TcpTargetOptions } from '../engine/target/tcp-target.js';
import { DISCOVERY_NQN } from '../engine/spec/fabrics.js';
import type { RunSettings } from './options.js';
import { dataPath } from './bench/runner.js';
import { DEFAULT_METRICS_PORT } from '../engine/metrics/server.js';

export async function serve(namespaces: NamespaceSpec[], settings: RunSettings, tcp: TcpTargetOptions | undefined): Promise<number> {
  const engine = await Engine.open({ namespaces, workers: 1, metrics: settings.metrics ?? { port: DEFAULT_METRICS_PORT } });
  console.log(`nvmq serve: data path: ${dataPath(engine.controller)}`);
  for (const ns of engine.driver.namespaces.values()) {
    const spec = namespaces[ns.nsid - 1];
    console.log(`  namespace ${ns.nsid}: ${spec?.backend === 'file' ? spec.path : 'memory'}, ${ns.blocks} blocks of ${ns.lbaSize} bytes`);
  }
  console.log(`  metrics: ${engine.metricsAddress!.url}`);
  if (tcp) {
    let target;
    try {
      target = await engine.listen(tcp);
    } catch (e) {
      await engine.close();
      throw e;
    }
    const { host, port } = target.address;
    const who = tcp.allowAnyHost ? 'any host' : `hosts ${tcp.allowHosts!.join(', ')}`;
    // One thread serves every queue for now: the main thread's queue pair (see docs/ARCHITECTURE.md).
    console.log(`  NVMe/TCP: ${host.includes(':') ? `[${host}]` : host}:${port}, subsystem ${target.subnqn}, discovery ${DISCOVERY_NQN}, ${who}; every queue on the main thread`);
  }
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
