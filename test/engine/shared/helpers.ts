/** Shared by the tests of src/engine/shared: runs a fixture worker and resolves with its one answer. */
import { Worker } from 'node:worker_threads';

const fixture = (name: string): URL => new URL(`../../fixtures/${name}`, import.meta.url);

export function run<T>(name: string, workerData: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(fixture(name), { workerData });
    w.once('message', (m: T) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
    // A worker that ends without answering (its event loop ran dry) is a failure, not a hang.
    w.once('exit', (code) => reject(new Error(`${name} exited (code ${code}) without answering`)));
  });
}
