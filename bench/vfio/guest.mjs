#!/usr/bin/env node
// Runs inside the vfio-guest fixture's guest (bench/vfio.mjs starts it): the same 4 KiB random-read job on
// QEMU's NVMe controller three ways, in interleaved rounds, moving the device between drivers through sysfs:
//   fio-libaio, fio-io_uring   the kernel nvme driver, fio on /dev/nvme0n1 (--direct=1)
//   nvmq                       the device on vfio-pci, `nvmq bench --filename pci:ADDRESS` (one worker)
// Each run's IOPS, p50 latency and CPU (user + system over the run, as fio and nvmq bench report it) go to
// --out as JSON.
//   node bench/vfio/guest.mjs --pci 0000:00:03.0 --group 5 --out results.json [--seconds 5] [--rounds 3] [--depth 1,32]
//     [--cases fio-libaio,fio-io_uring,nvmq]
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({ options: {
  pci: { type: 'string' }, group: { type: 'string' }, out: { type: 'string' },
  seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, depth: { type: 'string', default: '1,32' },
  size: { type: 'string', default: '128m' }, cases: { type: 'string', default: 'fio-libaio,fio-io_uring,nvmq' },
} });
if (!values.pci || !values.group || !values.out) throw new Error('--pci, --group and --out are required');
const pci = values.pci;
const seconds = Number(values.seconds);
const depths = values.depth.split(',').map(Number);
const cli = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const dev = `/sys/bus/pci/devices/${pci}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const driverNow = () => (existsSync(`${dev}/driver`) ? basename(readlinkSync(`${dev}/driver`)) : undefined);

/** Moves the function to `driver` (nvme or vfio-pci) and waits for its device node. */
async function bind(driver) {
  if (driverNow() !== driver) {
    const current = driverNow();
    if (current) writeFileSync(`/sys/bus/pci/drivers/${current}/unbind`, pci);
    writeFileSync(`${dev}/driver_override`, driver);
    writeFileSync('/sys/bus/pci/drivers_probe', pci);
  }
  const node = driver === 'nvme' ? '/dev/nvme0n1' : `/dev/vfio/${values.group}`;
  for (let i = 0; i < 100 && !existsSync(node); i++) await sleep(50);
  if (driverNow() !== driver || !existsSync(node)) throw new Error(`${pci} did not bind to ${driver} (${node} missing)`);
}

/** A fio-style JSON report's first job: IOPS, p50 in µs, CPU µs per I/O. */
function fromReport(text) {
  const job = JSON.parse(text.slice(text.indexOf('{'))).jobs[0];
  const read = job.read;
  const runtimeS = (job.job_runtime ?? read.runtime) / 1000;
  const pct = read.clat_ns?.percentile ?? read.lat_ns?.percentile ?? {};
  const p50 = pct['50.000000'];
  return {
    iops: read.iops,
    p50Us: p50 === undefined ? undefined : p50 / 1000,
    cpuPerIoUs: (((job.usr_cpu + job.sys_cpu) / 100) * runtimeS * 1e6) / (read.iops * runtimeS),
  };
}

const run = {
  async fio(engine, depth) {
    await bind('nvme');
    const out = execFileSync('fio', ['--name=r', '--filename=/dev/nvme0n1', '--direct=1', '--rw=randread', '--bs=4k', `--iodepth=${depth}`, `--ioengine=${engine}`, `--size=${values.size}`, `--runtime=${seconds}`, '--time_based', '--output-format=json'], { encoding: 'utf8', timeout: (seconds + 60) * 1000 });
    return fromReport(out);
  },
  async nvmq(depth) {
    await bind('vfio-pci');
    const out = execFileSync('node', [cli, 'bench', '--filename', `pci:${pci}`, '--rw', 'randread', '--bs', '4k', '--iodepth', String(depth), '--numjobs', '1', '--size', values.size, '--runtime', `${seconds}s`, '--time_based', '--output-format', 'json'], { encoding: 'utf8', timeout: (seconds + 60) * 1000 });
    return fromReport(out);
  },
};

const cases = [
  ['fio-libaio', (d) => run.fio('libaio', d)],
  ['fio-io_uring', (d) => run.fio('io_uring', d)],
  ['nvmq', (d) => run.nvmq(d)],
].filter(([name]) => values.cases.split(',').includes(name));
const results = [];
for (let round = 0; round < Number(values.rounds); round++) {
  for (const depth of depths) {
    // Each round starts with another case, so none always runs first.
    for (let k = 0; k < cases.length; k++) {
      const [name, fn] = cases[(k + round) % cases.length];
      const r = await fn(depth);
      results.push({ round, depth, name, ...r });
      console.log(`round ${round + 1} depth ${depth} ${name}: ${Math.round(r.iops)} IOPS, p50 ${r.p50Us?.toFixed(1)} µs, ${r.cpuPerIoUs.toFixed(1)} µs CPU per I/O`);
    }
  }
}
await bind('nvme');
writeFileSync(values.out, JSON.stringify({ pci, seconds, results }, null, 2));
