// One measured run of the TCP benchmarks: a fresh server process and a fresh client process against it, the
// server's CPU read (process.cpuUsage, every thread) when the client starts and stops measuring.
import { spawnChild, nextMessage, exited } from './procs.mjs';

/**
 * Runs bench/tcp/server.mjs with `serverArgs` and bench/tcp/client.mjs against it with `clientArgs` (the port
 * and block count are added) for `seconds` after `warmup` s. Returns the client's result and the server's
 * CPU and system-call counts at the start and end of the measured window ({ cpu, syscalls } each).
 */
export async function measureServer({ serverArgs, clientArgs, seconds, warmup, serverExecArgv = [], clientExecArgv = [] }) {
  const server = spawnChild('./server.mjs', serverArgs, serverExecArgv);
  try {
    const { port, blocks } = await nextMessage(server, 'ready', 30_000);
    const client = spawnChild('./client.mjs', [...clientArgs, '--port', String(port), '--seconds', String(seconds), '--warmup', String(warmup), '--blocks', String(blocks)], clientExecArgv);
    const limit = (seconds + warmup) * 1000 + 30_000;
    const resultP = nextMessage(client, 'result', limit);
    resultP.catch(() => {});
    await nextMessage(client, 'measuring', limit);
    server.send({ cpu: true });
    const start = await nextMessage(server, 'cpu', 5000);
    await nextMessage(client, 'stopped', limit);
    server.send({ cpu: true });
    const end = await nextMessage(server, 'cpu', 5000);
    const { result } = await resultP;
    await exited(client);
    return { result, start, end };
  } finally {
    if (server.connected) server.send({ exit: true });
    await Promise.race([exited(server), new Promise((r) => setTimeout(r, 5000))]);
    server.kill('SIGKILL');
  }
}
