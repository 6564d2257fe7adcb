// Engine.open({ pci }) on QEMU's emulated NVMe controller, bound to vfio-pci behind an emulated IOMMU in a Linux
// guest (test/fixtures/linux-peer/vfio-guest.sh), in one boot: test/fixtures/vfio-engine-guest.mjs runs the
// engine with two workers, each ringing an I/O queue pair of its own through its own mapping of BAR0 and
// handling that queue's MSI-X vector, step after step (a refused open, verified I/O from both workers, admin commands, main-thread FUA
// write / flush / Write Zeroes / deallocate as ONCS allows, a worker dying, close with reads in flight), then
// `nvmq bench --filename pci:... --verify crc32c --numjobs 2` runs in the same guest. The blocks the workers and
// the main thread wrote are then compared with the controller's backing image here.
// Only with NVMQ_LINUX_PEER=1 (it boots a guest: about 15 s under TCG, and the steps about 40 s more: each node process and worker
// thread starts slowly there).
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { enabled, skipOrFail, vfioGuest } from './vfio-guest.js';

const share = mkdtempSync(join(tmpdir(), 'nvmq-vfio-engine-'));
afterAll(() => rmSync(share, { recursive: true, force: true }));

const LBA = 512;
interface Counts {
  fds: { total: number; vfio: number };
  maps: { total: number; vfio: number };
}
interface Step {
  ok: boolean;
  error?: { code: string; message: string };
  [k: string]: unknown;
}

/** A block as test/fixtures/verify-task.mjs writes it: (LBA, pass, seed, offset) in every 16 bytes. */
function tagged(lba: number, pass: number, seed: number): Buffer {
  const b = Buffer.alloc(LBA);
  for (let i = 0; i < LBA; i += 16) {
    b.writeUInt32LE(lba, i);
    b.writeUInt32LE(pass, i + 4);
    b.writeUInt32LE(seed, i + 8);
    b.writeUInt32LE(i, i + 12);
  }
  return b;
}

/** An inflight-task.mjs report: it ran, and each command it submitted completed exactly once. */
function expectEachOnce(t: { error?: unknown; submitted: number; once: number; never: number; twice: number }): void {
  expect(t.error).toBeUndefined();
  expect(t.submitted).toBeGreaterThan(0);
  expect(t.once).toBe(t.submitted);
  expect(t.never).toBe(0);
  expect(t.twice).toBe(0);
}

describe.skipIf(!enabled)('Engine.open({ pci }) on QEMU NVMe behind an emulated IOMMU (NVMQ_LINUX_PEER=1: boots a QEMU guest)', () => {
  it('runs two workers on queue pairs of their own, admin and main-thread I/O, a worker death, an attached thread, reset and close with I/O in flight, and nvmq bench', ({ skip }) => {
    const image = join(share, 'nvme0.img');
    writeFileSync(image, '');
    truncateSync(image, 64 << 20);
    const r = vfioGuest(share, {
      LP_NVME_IMAGE: image,
      LP_NVME_OPTS: 'max_ioqpairs=4,mdts=5',
      LP_GUEST_CMD:
        'node test/fixtures/vfio-engine-guest.mjs --pci "$NVMQ_VFIO_PCI" --out "$LP_SHARE_DIR/engine.json"; echo $? > "$LP_SHARE_DIR/engine.rc"; ' +
        'node dist/cli/main.js bench --filename "pci:$NVMQ_VFIO_PCI" --rw randrw --bs 4k --iodepth 8 --numjobs 2 --offset 32m --size 2m --verify crc32c > "$LP_SHARE_DIR/bench.txt" 2>&1; echo $? > "$LP_SHARE_DIR/bench.rc"',
    });
    if (r.status === 77) skipOrFail(skip, r.stderr);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const res = JSON.parse(readFileSync(join(share, 'engine.json'), 'utf8')) as { steps: Record<string, Step>; before: Counts; after: Counts };
    for (const [name, s] of Object.entries(res.steps)) expect(s.ok, `${name}: ${JSON.stringify(s.error)}`).toBe(true);
    expect(readFileSync(join(share, 'engine.rc'), 'utf8').trim()).toBe('0');
    const { refused, open, workers, admin, main, death, attached, reset, close } = res.steps as Record<string, any>;

    // More workers than granted queues: one line, nothing left open or mapped.
    expect(refused.opened).toBeUndefined();
    expect(refused.error.code).toBe('NVMQ_NO_QUEUE');
    expect(refused.error.message).toMatch(/^the PCIe controller 0000:00:0\d\.0 grants 4 I\/O queues; an engine on a PCIe controller needs one per worker and one for the main thread \(8 workers\): use at most 3 workers$/);
    expect(refused.after.fds).toEqual(res.before.fds);
    expect(refused.after.maps.vfio).toBe(0);

    // Two workers, a queue pair each; the container, group and device open once; BAR0 mapped by the main thread and by each worker.
    expect(open.granted).toBe(4);
    expect([...open.workerQids].sort()).toEqual([1, 2]);
    expect([...open.driverQids].sort()).toEqual([1, 2]);
    expect(open.namespace).toEqual({ blocks: (64 << 20) / LBA, lbaSize: LBA });
    expect(open.open.fds.vfio).toBe(3);
    expect(open.open.maps.vfio).toBe(3);
    // Idle: nothing counted outstanding on the main thread, and no thread spins (process CPU, every thread, over
    // 500 ms: one spinning thread alone would be a whole core; the main thread's 10 ms poll for AERs is not).
    expect(open.idle.mainInflight).toBe(0);
    expect(open.idle.cpuShare).toBeLessThan(0.5);
    // Completions arrive by MSI-X: once the workers have settled after their I/O (which they waited for asleep
    // on their vectors), an idle engine wakes for nothing, not even the main thread's AER poll.
    expect(open.msix.polled).toBe(false);
    expect(open.msix.completions).toBe(`MSI-X interrupts (${open.msix.vectors} vectors)`);
    expect(res.steps.idleAfterIo.cpuShare as number).toBeLessThan(0.05);

    // Verified writes and reads from both workers at once, each on its own queue.
    expect(workers.tasks.map((t: { qid: number }) => t.qid).sort()).toEqual([1, 2]);
    for (const t of workers.tasks) expect(t).toMatchObject({ ios: 512, bad: [], outstanding: 0 });

    // Admin commands from the main thread while the workers' queues exist.
    expect(admin.identifyNamespace).toEqual({ blocks: (64 << 20) / LBA, lbaSize: LBA });
    expect(admin.smart.hostWriteCommands).toBeGreaterThanOrEqual(512);
    expect(admin.smart.hostReadCommands).toBeGreaterThanOrEqual(512);
    expect(admin.smart.temperatureKelvin).toBeGreaterThan(0);
    // max_ioqpairs=4: four SQs and CQs, 0-based.
    expect(admin.numberOfQueues).toEqual({ nsqa: 3, ncqa: 3 });
    // Number of Queues is set before any I/O queue exists (NVMe 2.0, 5.27.1.5): afterwards, Command Sequence Error.
    expect(admin.setNumberOfQueues.error).toMatchObject({ code: 'NVMQ_COMMAND_SEQUENCE_ERROR', sct: 0, sc: 0x0c });

    // Main-thread I/O on a third queue pair; what ONCS advertises is exercised.
    expect(main.fua).toBe(true);
    expect(main.flushed).toBe(true);
    expect([...main.mainQids].sort()).toEqual([1, 2, 3]);
    if (main.oncs & 0x08) expect(main.writeZeroes).toBe(true);
    else expect(main.writeZeroes).toBeUndefined();
    if (main.oncs & 0x04) {
      // Deallocation is advisory (NVMe 2.0, 3.2.3.2.1): the blocks read back as they were, or as DLFEAT says
      // deallocated blocks read (001b: zeroes).
      const d = main.deallocated;
      expect(d.readsData || ((d.dlfeat & 7) === 1 && d.readsZero), JSON.stringify(d)).toBe(true);
    } else expect(main.deallocated).toBeUndefined();

    // A worker that dies: its queue is deleted, the other worker's I/O is unaffected, a replacement gets a queue.
    expect(death.died.code).toBe('NVMQ_WORKER_EXITED');
    expect(death.gone).toHaveLength(1);
    expect(death.survivor).toEqual({ ios: 512, bad: [] });
    expect(death.workerQids.every((q: number | null) => typeof q === 'number')).toBe(true);
    expect(new Set(death.workerQids).size).toBe(2);
    expect([...death.driverQids].sort()).toEqual([1, 2, 3]);
    for (const a of death.again) expect(a).toMatchObject({ ios: 128, bad: [] });

    // An attached application thread: a queue pair of its own (none of the workers'), verified I/O, detached.
    expect(attached.ok, JSON.stringify(attached.error)).toBe(true);
    expect(attached.code).toBe(0);
    const [report, detached] = attached.messages;
    expect(report.bad).toBe(0);
    expect(attached.workerQids).not.toContain(report.qid);
    expect(detached).toEqual({ detached: true, afterDetach: 'NVMQ_QUEUE_DELETED' });
    expect(attached.driverQids).not.toContain(report.qid);

    // engine.reset() with reads in flight from both workers: each command completed exactly once, those the reset
    // overtook with NVMQ_CONTROLLER_RESET; fresh workers then do verified I/O on queues of their own.
    expect(reset.ok, JSON.stringify(reset.error)).toBe(true);
    for (const t of reset.tasks) {
      expectEachOnce(t);
      expect(Object.keys(t.failures)).toEqual(['NVMQ_CONTROLLER_RESET']);
    }
    for (const a of reset.again) expect(a).toMatchObject({ ios: 128, bad: [] });
    expect(new Set(reset.again.map((a: { qid: number }) => a.qid)).size).toBe(2);

    // close() with reads in flight from both workers: each command completed exactly once, then everything released.
    for (const t of close.tasks) {
      expectEachOnce(t);
      // Still running when close() was called: it waited for them.
      expect(t.endedAt).toBeGreaterThan(close.closeAt);
    }
    expect(close.driverQids).toEqual([]);
    expect(close.after.fds.vfio).toBe(0);
    expect(res.after.fds.vfio).toBe(0);
    expect(res.after.maps.vfio).toBe(0);

    // nvmq bench on the same controller, after the engine closed it.
    const bench = readFileSync(join(share, 'bench.txt'), 'utf8');
    expect(readFileSync(join(share, 'bench.rc'), 'utf8').trim(), bench).toBe('0');
    expect(bench).toMatch(/data path: VFIO, PCIe function 0000:00:0\d\.0, one I\/O queue pair per thread \(completions: MSI-X interrupts \(\d+ vectors\)\)/);
    expect(bench).toMatch(/^ {2}verify: [1-9]\d* blocks checked \([1-9]\d* read back after the run\), no mismatch$/m);
    const qids = [...bench.matchAll(/^ {4}#\d qid (\d+):/gm)].map((m) => Number(m[1]));
    expect(qids).toHaveLength(2);
    expect(new Set(qids).size).toBe(2);

    // What the workers and the main thread wrote is what the controller stored.
    const fd = openSync(image, 'r');
    const at = (lba: number, blocks: number): Buffer => {
      const b = Buffer.alloc(blocks * LBA);
      readSync(fd, b, 0, b.length, lba * LBA);
      return b;
    };
    try {
      for (const [first, seed] of [[0, 11], [1024, 12]] as const) {
        for (let lba = first; lba < first + 128; lba++) expect(at(lba, 1).equals(tagged(lba, 2, seed)), `LBA ${lba}`).toBe(true);
      }
      const fua = Buffer.from(new Uint8Array(8 * LBA).map((_, i) => (i * 7 + 3) & 0xff));
      expect(at(60000, 8).equals(fua)).toBe(true);
      if (main.writeZeroes) expect(at(60016, 8).every((x) => x === 0)).toBe(true);
    } finally {
      closeSync(fd);
    }
  }, 310_000);
});
