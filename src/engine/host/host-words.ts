/**
 * A queue pair's host words: Int32 cells in one small SharedArrayBuffer,
 * shared by the threads using the pair (the submission path in
 * `queue-pair.ts`, the reaper in `completions.ts`).
 *
 * | word      | field                              | writer                          |
 * | --------- | ---------------------------------- | ------------------------------- |
 * | H_LOCK    | Mutex over SQ tail and CQ reaping  | any thread                      |
 * | H_SQ_TAIL | next SQ entry to fill              | submitter, under H_LOCK         |
 * | H_CQ_HEAD, H_CQ_PHASE | next CQE to read, its expected phase | reaper, under H_LOCK |
 * | H_DB_LOCK | Mutex ordering doorbell writes     | the thread writing a doorbell   |
 * | H_DEAD    | the pair was failed (reset, delete)| fail()                          |
 *
 * No doorbell write and no completion callback runs under H_LOCK. H_DB_LOCK
 * only keeps doorbell values monotonic when threads race to write them (each
 * writes the newest tail / head, read inside the lock). An unshared pair has
 * one thread on it, so it skips both locks and the request table's.
 */
import { NvmqError } from '../errors.js';
import { CACHE_LINE } from '../shared/request-table.js';

export const H_LOCK = 0;
export const H_SQ_TAIL = 1;
export const H_CQ_HEAD = 2;
export const H_CQ_PHASE = 3;
export const H_DB_LOCK = 4;
export const H_DEAD = 5;
export const HOST_WORDS = 8;

/** Why the pair was failed, by H_DEAD's value (0: it was not); other threads rebuild the error from it. */
const DEAD_CODES: readonly string[] = ['', 'NVMQ_CONTROLLER_RESET', 'NVMQ_QUEUE_DELETED', 'NVMQ_CONTROLLER_SHUTDOWN'];

/** A new pair's words: an empty SQ and CQ, the CQ expecting phase 1. */
export function createHostWords(): Int32Array {
  // Padded past a cache line: see CACHE_LINE.
  const host = new Int32Array(new SharedArrayBuffer(HOST_WORDS * 4 + CACHE_LINE), 0, HOST_WORDS);
  host[H_CQ_PHASE] = 1;
  return host;
}

/** Marks the pair failed with `err`'s reason, for every thread using it. */
export function markDead(host: Int32Array, err: NvmqError): void {
  Atomics.store(host, H_DEAD, Math.max(1, DEAD_CODES.indexOf(err.code)));
  Atomics.notify(host, H_DEAD);
}

/** The error commands on queue `qid` fail with once the pair was failed, or undefined while it was not. */
export function deadError(host: Int32Array, qid: number): NvmqError | undefined {
  const code = DEAD_CODES[Atomics.load(host, H_DEAD)];
  if (!code) return undefined;
  if (code === 'NVMQ_QUEUE_DELETED') return new NvmqError(code, `I/O queue ${qid} was deleted`);
  return new NvmqError(code, code === 'NVMQ_CONTROLLER_SHUTDOWN' ? 'the controller was shut down' : 'the controller was reset');
}
