// Guest side of the power-cut test (bench/power-cut.mjs runs it inside a QEMU guest).
//
// Opens a block device through nvmq's public Engine API and writes stamped blocks
// (stamp.mjs) to a small region of it, forever, until the guest is killed. After each
// write or flush that makes blocks durable it appends one acknowledgement line per block,
// "A <lba> <gen>", to the ack file and fdatasyncs it before issuing the next write. The ack
// file lives in a 9p share (cache=none) whose file is on the machine running QEMU: a line is
// out of the guest once write() returns, so the host's record can lag the truth by the
// line being written, never lead it.
//
// Modes:
//   durable   rounds alternate: one Write with FUA, acknowledged when it completes; then a
//             batch of plain Writes followed by engine.flush(), acknowledged when the flush
//             completes. What the engine's README promises to be on the medium.
//   noflush   the negative control: plain Writes acknowledged as soon as they complete,
//             never flushed (a buffered namespace leaves them in the guest's page cache).
//
// node writer.mjs --dev /dev/nvme0n1 --acks FILE --mode durable|noflush [--direct] [--portable]
//                 [--blocks 2048] [--batch 8] [--cut N] [--seed N]
import { openSync, writeSync, fdatasyncSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/index.js';
import { BLOCK, makeBlock } from './stamp.mjs';

const { values: a } = parseArgs({
  options: {
    dev: { type: 'string', default: process.env.NVMQ_NVME_DEV ?? '/dev/nvme0n1' },
    acks: { type: 'string' },
    mode: { type: 'string', default: 'durable' },
    direct: { type: 'boolean', default: false },
    // The portable data path (node:fs) instead of io_uring.
    portable: { type: 'boolean', default: false },
    blocks: { type: 'string', default: '2048' },
    batch: { type: 'string', default: '8' },
    cut: { type: 'string', default: '0' },
    seed: { type: 'string', default: '1' },
  },
});
if (!a.acks) throw new Error('--acks is required');
if (a.mode !== 'durable' && a.mode !== 'noflush') throw new Error(`--mode must be durable or noflush, got ${a.mode}`);
const blocks = Number(a.blocks);
const batch = Number(a.batch);
const cut = Number(a.cut);

// xorshift32: the LBA sequence differs per cut, reproducible from the seed.
let s = (Number(a.seed) >>> 0) || 1;
const rnd = (n) => {
  s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
  return s % n;
};

const ackFd = openSync(a.acks, 'a');
const say = (text) => {
  writeSync(ackFd, text);
  fdatasyncSync(ackFd);
};

const engine = await Engine.open({
  namespaces: [{ backend: 'file', path: a.dev, force: true, direct: a.direct, lbaSize: BLOCK }],
  workers: 1,
  ...(a.portable ? { controller: { dataPath: 'portable' } } : {}),
});
const gen = new Uint32Array(blocks);
say(`S cut=${cut} mode=${a.mode} direct=${a.direct ? 1 : 0} dataPath=${engine.controller.dataPath} blocks=${blocks}\n`);

const next = () => {
  const lba = rnd(blocks);
  gen[lba] += 1;
  return { lba, g: gen[lba] };
};

for (let round = 0; ; round++) {
  if (a.mode === 'noflush') {
    const { lba, g } = next();
    await engine.write(1, lba, makeBlock(lba, g, cut));
    say(`A ${lba} ${g}\n`);
  } else if (round % 2 === 0) {
    const { lba, g } = next();
    await engine.write(1, lba, makeBlock(lba, g, cut), { fua: true });
    say(`A ${lba} ${g}\n`);
  } else {
    const ws = [];
    for (let i = 0; i < batch; i++) ws.push(next());
    // A block picked twice in one batch: only its last generation may be acknowledged,
    // and the two writes must not race: write the batch in order.
    for (const { lba, g } of ws) await engine.write(1, lba, makeBlock(lba, g, cut));
    await engine.flush();
    say(ws.map(({ lba, g }) => `A ${lba} ${g}\n`).join(''));
  }
}
