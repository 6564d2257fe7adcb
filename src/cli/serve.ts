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
  console.log(`nvmq serve: data path: ${dataPath(engine.controller, engine.remote)}`);
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
    const threads = target.ioThreads > 0 ? `I/O queues on ${target.ioThreads} thread${target.ioThreads > 1 ? 's' : ''} of their own` : 'every queue on the main thread (no native addon to move connections)';
    console.log(`  NVMe/TCP: ${host.includes(':') ? `[${host}]` : host}:${port}, subsystem ${target.subnqn}, discovery ${DISCOVERY_NQN}, ${who}; ${threads}`);
  }
  console.log('ready; SIGINT or SIGTERM to stop');
  // Signal handlers do not keep the event loop alive (nor do the engine's idle workers): a timer does.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    // Installed until the process exits: a second signal (a process group signalled, and its supervisor
    // passing the signal on) must not kill it halfway through the flush.
    let first = true;
    const on = (s: NodeJS.Signals): void => {
      if (!first) return void console.log(`${s}: already shutting down`);
      first = false;
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
