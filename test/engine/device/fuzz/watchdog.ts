/**
 * The fuzz tests' watchdog: a thread of its own that fails the run when the
 * fuzzing thread stops making progress. A controller call that never returns
 * (a loop that never ends) cannot be timed out from the thread it blocks, so
 * the watchdog watches a step counter in shared memory; when it stands still
 * for `ms`, it writes the label of the step (world, property, seed, run) to
 * stderr and aborts the process.
 */
import { Worker } from 'node:worker_threads';

const SOURCE = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const words = new Int32Array(workerData.words);
const label = new Uint8Array(workerData.label);
let last = Atomics.load(words, 0);
for (;;) {
  Atomics.wait(words, 1, 0, workerData.ms);
  if (Atomics.load(words, 1) !== 0) break;
  const now = Atomics.load(words, 0);
  if (now === last && Atomics.load(words, 2) === 1) {
    const end = label.indexOf(0);
    const text = Buffer.from(label.subarray(0, end < 0 ? label.length : end)).toString();
    fs.writeSync(2, '\\nfuzz watchdog: no progress for ' + workerData.ms + ' ms at step ' + now + ': ' + text + '\\n');
    process.kill(process.pid, 'SIGABRT');
  }
  last = now;
}
`;

const LABEL_BYTES = 1024;

export class Watchdog {
  /** [0] step counter, [1] stop word, [2] armed. */
  private readonly words = new Int32Array(new SharedArrayBuffer(12));
  private readonly label = new Uint8Array(new SharedArrayBuffer(LABEL_BYTES));
  private readonly worker: Worker;
  private readonly encoder = new TextEncoder();

  constructor(readonly ms: number) {
    this.worker = new Worker(SOURCE, { eval: true, workerData: { words: this.words.buffer, label: this.label.buffer, ms } });
    this.worker.unref();
  }

  /** What is running now: printed if it stalls. */
  set(label: string): void {
    this.label.fill(0);
    this.encoder.encodeInto(label.slice(0, LABEL_BYTES / 4), this.label.subarray(0, LABEL_BYTES - 1));
    Atomics.store(this.words, 2, 1);
  }

  /** One step done. */
  beat(): void {
    Atomics.add(this.words, 0, 1);
  }

  /** Nothing watched: between tests, or while the thread is idle on purpose. */
  disarm(): void {
    Atomics.store(this.words, 2, 0);
  }

  async stop(): Promise<void> {
    Atomics.store(this.words, 1, 1);
    Atomics.notify(this.words, 1);
    await this.worker.terminate();
  }
}
