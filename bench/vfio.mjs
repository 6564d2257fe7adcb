#!/usr/bin/env node
// nvmq's host driver over VFIO against the kernel's nvme driver with fio (libaio and io_uring), on the same
// QEMU NVMe controller in one guest (test/fixtures/linux-peer/vfio-guest.sh, emulated IOMMU, TCG): 4 KiB
// random reads at each depth, in interleaved rounds (bench/vfio/guest.mjs moves the device between nvme
// and vfio-pci between runs). Under TCG the absolute figures are slow; only the ratios within one run count.
// The table gives medians over rounds, and nvmq / fio ratios as medians of the rounds' ratios.
//   node bench/vfio.mjs [--seconds 5] [--rounds 3] [--depth 1,32] [--cases fio-libaio,fio-io_uring,nvmq] [--json out.json]
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './tcp/procs.mjs';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, depth: { type: 'string', default: '1,32' },
  cases: { type: 'string', default: 'fio-libaio,fio-io_uring,nvmq' }, json: { type: 'string' },
} });
const root = fileURLToPath(new URL('../', import.meta.url));
const fixture = join(root, 'test/fixtures/linux-peer/vfio-guest.sh');
const share = mkdtempSync(join(tmpdir(), 'nvmq-vfio-bench-'));
const SIZE = 256 << 20;
try {
  // The controller's storage: written through, so no read lands on a hole.
  const image = join(share, 'nvme0.img');
  const fd = openSync(image, 'w');
  const chunk = randomFillSync(Buffer.alloc(4 << 20));
  for (let off = 0; off < SIZE; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  closeSync(fd);
  const guestCmd = `node bench/vfio/guest.mjs --pci "$NVMQ_VFIO_PCI" --group "$NVMQ_VFIO_IOMMU_GROUP" --out "$LP_SHARE_DIR/results.json" --seconds ${values.seconds} --rounds ${values.rounds} --depth ${values.depth} --cases ${values.cases}`;
  const r = spawnSync(fixture, {
    cwd: root,
    env: { ...process.env, LP_SHARE_DIR: share, LP_NVME_IMAGE: image, LP_NVME_DRIVER: 'nvme', LP_NVME_OPTS: 'logical_block_size=4096,physical_block_size=4096', LP_GUEST_CMD: guestCmd, LP_GUEST_CMD_TIMEOUT: '3000' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status === 77) {
    console.log('skipped: the vfio-guest fixture cannot run here (see its message above)');
    process.exit(0);
  }
  if (r.status !== 0) throw new Error(`the guest run failed (status ${r.status})`);
  const { results } = JSON.parse(readFileSync(join(share, 'results.json'), 'utf8'));
  const depths = [...new Set(results.map((x) => x.depth))];
  const names = [...new Set(results.map((x) => x.name))];
  const rounds = [...new Set(results.map((x) => x.round))];
  const pick = (depth, name, round) => results.find((x) => x.depth === depth && x.name === name && x.round === round);
  const rows = [];
  console.log('\n| depth | case | IOPS (median) | p50 µs | CPU µs per I/O | nvmq / this |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const depth of depths) {
    for (const name of names) {
      const xs = rounds.map((k) => pick(depth, name, k)).filter(Boolean);
      const ratio = name === 'nvmq' || !names.includes('nvmq') ? undefined : median(rounds.map((k) => pick(depth, 'nvmq', k).iops / pick(depth, name, k).iops));
      const row = { depth, name, iops: median(xs.map((x) => x.iops)), p50Us: median(xs.map((x) => x.p50Us)), cpuPerIoUs: median(xs.map((x) => x.cpuPerIoUs)), nvmqRatio: ratio };
      rows.push(row);
      console.log(`| ${depth} | ${name} | ${Math.round(row.iops)} | ${row.p50Us.toFixed(1)} | ${row.cpuPerIoUs.toFixed(1)} | ${ratio === undefined ? '' : `${ratio.toFixed(2)}x`} |`);
    }
  }
  if (values.json) writeFileSync(values.json, JSON.stringify({ rows, results }, null, 2));
} finally {
  rmSync(share, { recursive: true, force: true });
}
