// Child processes of the TCP benchmarks: forked with an IPC channel, killed on every way out, and awaited by
// the message they send.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const children = new Set();
const killAll = () => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(130); });

/** Forks `script` (a path relative to bench/tcp/) with `args`. */
export function spawnChild(script, args, execArgv = []) {
  const c = fork(fileURLToPath(new URL(script, import.meta.url)), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

/** The child's next message that has `key`, within `timeoutMs`. */
export function nextMessage(child, key, timeoutMs) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { cleanup(); reject(new Error(`no ${key} from ${child.spawnargs.slice(-8).join(' ')} in ${timeoutMs} ms`)); }, timeoutMs);
    const onMsg = (m) => { if (m && m[key] !== undefined) { cleanup(); resolve(m); } };
    const onExit = (code) => { cleanup(); reject(new Error(`child exited (${code}) before ${key}`)); };
    const cleanup = () => { clearTimeout(t); child.off('message', onMsg); child.off('exit', onExit); };
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

export const exited = (child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r)));

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
