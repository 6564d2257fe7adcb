/**
 * `Atomics.waitAsync` that keeps its thread alive while it waits.
 *
 * A pending waitAsync holds no event-loop handle: a worker whose only work is
 * such a wait simply exits, and the wait is lost with it. Waiting for a lock
 * or a free request slot is work in progress, so a ref'd timer spans the
 * wait (it costs nothing when the wait resolves at once).
 */
export async function waitAsyncAlive(words: Int32Array, index: number, value: number, timeoutMs?: number): Promise<'ok' | 'not-equal' | 'timed-out'> {
  const r = Atomics.waitAsync(words, index, value, timeoutMs === Infinity ? undefined : timeoutMs);
  if (!r.async) return r.value;
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    return await r.value;
  } finally {
    clearInterval(keepAlive);
  }
}
