// An application's own worker thread: attaches with the handle it was given and runs the same loop as the
// engine task (randread.mjs) on its own queue pair, then detaches and posts the result.
import { workerData, parentPort } from 'node:worker_threads';
import { attach } from '../../dist/index.js';
import randread from './randread.mjs';

const q = await attach(workerData.handle);
const result = await randread(q, workerData.args);
await q.detach();
parentPort.postMessage(result);
