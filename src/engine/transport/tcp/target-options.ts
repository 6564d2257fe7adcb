/**
 * Where a remote NVMe/TCP controller is and how to reach it: the `target`
 * option of `openController()` and `Engine.open()`, and the
 * `nvme-tcp://HOST:PORT/SUBNQN` address the CLI takes.
 */
import { invalidArgument } from '../../host/arguments.js';
import { NQN_MAX_LENGTH } from '../../spec/fabrics.js';
import { NVME_TCP_PORT } from '../../spec/tcp-pdu.js';

export interface TcpTarget {
  transport: 'tcp';
  host: string;
  /** Default 4420, the NVMe/TCP port. */
  port?: number;
  subnqn: string;
  /** Default: /etc/nvme/hostnqn, else an NQN made from a random UUID. */
  hostnqn?: string;
  /** Header and data digests (CRC32C): both with `true` (default false). */
  digests?: boolean | { header?: boolean; data?: boolean };
  /** Milliseconds to connect a queue (TCP connect, ICReq, Connect) and for each of its setup commands (default 10000). */
  connectTimeoutMs?: number;
  /** The keep-alive timeout asked for in the admin Connect, in ms (default 5000, Linux's; 0: none). Keep Alive is sent every half of it. */
  keepAliveMs?: number;
  /**
   * An engine's reconnection when the association breaks (Linux's nvme-tcp
   * options, the same meaning): wait `reconnectDelayMs` between attempts
   * (default 10000, Linux's reconnect_delay of 10 s) and give up once
   * `ctrlLossTmoMs` has passed since the loss (default 600000, Linux's
   * ctrl_loss_tmo; 0: give up at the first failure). Meanwhile I/O waits
   * for the reconnect, or, past `fastIoFailTmoMs` since the loss (default:
   * never, as Linux's fast_io_fail_tmo of -1), fails with a path error.
   */
  reconnectDelayMs?: number;
  ctrlLossTmoMs?: number;
  fastIoFailTmoMs?: number;
}

export interface ResolvedTcpTarget {
  transport: 'tcp';
  host: string;
  port: number;
  subnqn: string;
  headerDigest: boolean;
  dataDigest: boolean;
  connectTimeoutMs: number;
  keepAliveMs: number;
  reconnectDelayMs: number;
  ctrlLossTmoMs: number;
  /** Infinity: never. */
  fastIoFailTmoMs: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function nqnOk(s: unknown): s is string {
  return typeof s === 'string' && s.length > 0 && new TextEncoder().encode(s).length <= NQN_MAX_LENGTH && !s.includes('\0');
}

/** Checks `target` field by field; throws NVMQ_INVALID_ARGUMENT naming the first bad one. */
export function checkTcpTarget(target: unknown): ResolvedTcpTarget {
  if (typeof target !== 'object' || target === null) throw invalidArgument('target', "{ transport: 'tcp', host, port?, subnqn, ... }", target);
  const t = target as Record<string, unknown>;
  if (t.transport !== 'tcp') throw invalidArgument('target.transport', "'tcp'", t.transport);
  if (typeof t.host !== 'string' || t.host.length === 0) throw invalidArgument('target.host', 'a host name or address', t.host);
  const port = t.port ?? NVME_TCP_PORT;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument('target.port', 'a TCP port, 1 to 65535', t.port);
  if (!nqnOk(t.subnqn)) throw invalidArgument('target.subnqn', `an NQN of 1 to ${NQN_MAX_LENGTH} bytes`, t.subnqn);
  if (t.hostnqn !== undefined && !nqnOk(t.hostnqn)) throw invalidArgument('target.hostnqn', `an NQN of 1 to ${NQN_MAX_LENGTH} bytes`, t.hostnqn);
  const d = t.digests ?? false;
  let header: unknown;
  let data: unknown;
  if (typeof d === 'boolean') header = data = d;
  else if (typeof d === 'object' && d !== null) ({ header = false, data = false } = d as Record<string, unknown>);
  if (typeof header !== 'boolean' || typeof data !== 'boolean') throw invalidArgument('target.digests', 'true, false or { header?, data? }', t.digests);
  const connectTimeoutMs = t.connectTimeoutMs ?? 10_000;
  if (typeof connectTimeoutMs !== 'number' || !Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 1 || connectTimeoutMs > 600_000) {
    throw invalidArgument('target.connectTimeoutMs', 'an integer number of ms from 1 to 600000', t.connectTimeoutMs);
  }
  // Node's timers take at most 2^31 - 1 ms; a longer one would fire at once.
  const keepAliveMs = t.keepAliveMs ?? 5_000;
  if (typeof keepAliveMs !== 'number' || !Number.isInteger(keepAliveMs) || keepAliveMs < 0 || keepAliveMs > MAX_TIMER_MS) {
    throw invalidArgument('target.keepAliveMs', `an integer number of ms up to ${MAX_TIMER_MS} (0: no keep-alive)`, t.keepAliveMs);
  }
  const ms = (name: string, dflt: number, infinite: boolean): number => {
    const v = t[name] ?? dflt;
    if (typeof v !== 'number' || !(v >= 0) || (v === Infinity ? !infinite : !Number.isInteger(v) || v > MAX_TIMER_MS)) {
      throw invalidArgument(`target.${name}`, `a whole number of ms up to ${MAX_TIMER_MS}${infinite ? ', or Infinity' : ''}`, t[name]);
    }
    return v;
  };
  return {
    transport: 'tcp',
    host: t.host,
    port,
    subnqn: t.subnqn,
    headerDigest: header,
    dataDigest: data,
    connectTimeoutMs,
    keepAliveMs,
    reconnectDelayMs: ms('reconnectDelayMs', 10_000, false),
    ctrlLossTmoMs: ms('ctrlLossTmoMs', 600_000, true),
    fastIoFailTmoMs: ms('fastIoFailTmoMs', Infinity, true),
  };
}

/**
 * `nvme-tcp://HOST[:PORT]/SUBNQN` (an IPv6 host in brackets) as a target, or
 * undefined when `s` is not that form. The NQN is taken as written after the
 * first slash (NQNs contain colons, not slashes).
 */
export function parseTcpAddress(s: string): TcpTarget | undefined {
  const m = /^nvme-tcp:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?\/(.+)$/.exec(s);
  if (!m) return undefined;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { transport: 'tcp', host, port: m[2] === undefined ? NVME_TCP_PORT : Number(m[2]), subnqn: decodeURIComponent(m[3]!) };
}
