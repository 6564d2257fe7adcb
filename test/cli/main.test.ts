import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, haveTool } from '../helpers/harness.js';
import { dataPathStatus } from '../../src/engine/uring/data-path.js';

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function nvmq(cwd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000, env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Runs `f` in a fresh temporary directory. */
function inTemp(f: (dir: string) => void): void {
  const t = tempDir();
  try {
    f(t.dir);
  } finally {
    t.cleanup();
  }
}

const hasFio = haveTool('fio');

/**
 * What a command that opens a file namespace prints on stderr on this build: nothing on the io_uring
 * path or when the portable path is asked for, else one plain line saying why.
 */
function portableNotice(): string {
  const st = dataPathStatus();
  if (st.path === 'io_uring' || process.env.NVMQ_DISABLE_NATIVE === '1') return '';
  return `nvmq: io_uring is unavailable (${st.reason}); file namespaces use the portable node:fs path\n`;
}
const NOTICE = portableNotice();

/** stderr past the portable-path line, which must come first. */
function afterNotice(err: string): string {
  expect(err.slice(0, NOTICE.length)).toBe(NOTICE);
  return err.slice(NOTICE.length);
}

const SHORT = ['--runtime', '0.3', '--time_based'];

/** An image nvmq creates (a write job over all of it): what read-only commands need first. */
function makeImage(dir: string, file: string, size: string): void {
  const r = nvmq(dir, ['bench', '--filename', file, '--size', size, '--rw', 'write']);
  expect(r.code, r.err).toBe(0);
}

describe('nvmq bench', () => {
  beforeAll(() => {
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build (npm test does)`);
  });

  it('--metrics-port serves /metrics for the length of the run and says where', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--backend', 'memory', '--size', '16m', '--rw', 'randread', '--metrics-port', '0', ...SHORT]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/metrics were served on http:\/\/127\.0\.0\.1:\d+\/metrics during the run/);
    });
  });

  it('names the portable data path in the header and in one plain stderr line, with no process warning (bench, identify, smart-log)', () => {
    inTemp((dir) => {
      const st = dataPathStatus();
      const header = st.path === 'io_uring' ? 'data path: io_uring (one ring per I/O queue, zero copy)' : `data path: node:fs (libuv thread pool): ${st.reason}`;
      const b = nvmq(dir, ['bench', '--size', '16m', '--rw', 'write']);
      expect(b.code).toBe(0);
      expect(b.err).toBe(NOTICE);
      expect(b.out.split('\n')[0]).toBe(`nvmq 0.1.0: ${header}`);
      for (const command of ['identify', 'smart-log']) {
        const r = nvmq(dir, [command]);
        expect(r.code, command).toBe(0);
        expect(r.err, command).toBe(NOTICE);
      }
      expect(nvmq(dir, ['identify']).out).toContain(`\ndata path : ${header.slice('data path: '.length)}\n`);
    });
  });

  it('says which data path moved the data: the portable one, and why, when io_uring is switched off', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--size', '16m', '--rw', 'randwrite', ...SHORT], { ...process.env, NVMQ_DISABLE_NATIVE: '1' });
      expect(r.code).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toMatch(/data path: node:fs \(libuv thread pool\): disabled by NVMQ_DISABLE_NATIVE=1/);
      const id = nvmq(dir, ['identify', '--filename', 'nvmq-data/default.img']);
      expect(id.code).toBe(0);
      expect(id.out).toMatch(dataPathStatus().path === 'io_uring' ? /^data path : io_uring/m : /^data path : node:fs/m);
    });
  });

  it('runs the embedded default with no job options: ./nvmq-data/default.img, 1 GiB sparse, two workers, verified', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--runtime', '0.4']);
      expect(r.err).toBe(NOTICE);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(dataPathStatus().path === 'io_uring' ? /data path: io_uring/ : /data path: node:fs/);
      expect(r.out).toMatch(/default: \(jobs=2\): rw=randrw rwmixread=50, bs=4\.0KiB, iodepth=16/);
      expect(r.out).toMatch(/read: IOPS=[\d.]+k?, BW=/);
      expect(r.out).toMatch(/write: IOPS=/);
      expect(r.out).toMatch(/50\.00th=.*99\.99th=/);
      expect(r.out).toMatch(/#0 qid \d+: read/);
      expect(r.out).toMatch(/#1 qid \d+: read/);
      // Regression: on a fresh image the default job used to check nothing and pass.
      const [, checked, readBack] = /verify: (\d+) blocks checked \((\d+) read back after the run\), no mismatch/.exec(r.out) ?? [];
      expect(Number(readBack)).toBeGreaterThan(0);
      expect(Number(checked)).toBeGreaterThanOrEqual(Number(readBack));
      expect(r.out).toMatch(/cpu: usr=[\d.]+%, sys=[\d.]+%.*peak RSS=/);
      const img = path.join(dir, 'nvmq-data', 'default.img');
      expect(fs.statSync(img).size).toBe(1 << 30);
      expect(fs.statSync(img).blocks * 512).toBeLessThan(256 << 20);
      expect(JSON.parse(fs.readFileSync(img + '.nvmq.json', 'utf8'))).toMatchObject({ format: 'nvmq-image', size: 1 << 30 });
    });
  });

  it('regression: a randrw verified job checks every block it wrote, and fails one that checked nothing', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--filename', 'm.img', '--rw', 'randrw', '--size', '64m', '--verify', 'crc32c', '--numjobs', '2', '--iodepth', '16', '--output-format', 'json']);
      expect(r.err).toBe(NOTICE);
      expect(r.code).toBe(0);
      const job = (JSON.parse(r.out) as { jobs: Array<Record<string, any>> }).jobs[0]!;
      // One pass over the region: each block is visited once, so the blocks written are the writes.
      expect(job.write.total_ios).toBeGreaterThan(0);
      expect(job.verify).toEqual({ checked: job.write.total_ios, read_back: job.write.total_ios, failures: [] });
      expect(job.workers.map((w: { read_back: number }) => w.read_back).reduce((a: number, b: number) => a + b)).toBe(job.write.total_ios);
      expect(job.error).toBe(0);
      // Nothing written, nothing stamped read: an error, not a pass.
      const none = nvmq(dir, ['bench', '--filename', 'n.img', '--rw', 'randrw', '--rwmixread', '100', '--size', '4m', '--verify', 'crc32c']);
      expect(none.code).toBe(1);
      expect(none.err).toBe(`${NOTICE}nvmq: verify checked no block in nvmq job nvmq (the job wrote none, and read none that carried a stamp)\n`);
      expect(none.out).toContain('verify: FAILED: no block checked');
      const json = nvmq(dir, ['bench', '--filename', 'n.img', '--rw', 'randrw', '--rwmixread', '100', '--size', '4m', '--verify', 'crc32c', '--output-format', 'json']);
      expect(json.code).toBe(1);
      expect((JSON.parse(json.out) as { jobs: Array<Record<string, any>> }).jobs[0]).toMatchObject({ error: 61, verify: { checked: 0, read_back: 0 } });
    });
  });

  it('catches corruption written into the image between a write job and a verifying read, naming the LBA', () => {
    inTemp((dir) => {
      const img = path.join(dir, 'v.img');
      const job = ['--filename', img, '--size', '4m', '--bs', '4k', '--iodepth', '8', '--verify', 'crc32c'];
      const w = nvmq(dir, ['bench', ...job, '--rw', 'write']);
      expect(w.err).toBe(NOTICE);
      expect(w.code).toBe(0);
      expect(w.out).toMatch(/verify: 1024 blocks checked \(1024 read back after the run\), no mismatch/);
      expect(nvmq(dir, ['bench', ...job, '--rw', 'randread']).code).toBe(0);
      // Garbage into block 37 (LBA 37 with 4 KiB LBAs), through a second handle.
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, Buffer.alloc(512, 0x5a), 0, 512, 37 * 4096 + 1024);
      fs.closeSync(fd);
      const r = nvmq(dir, ['bench', ...job, '--rw', 'randread']);
      expect(r.code).toBe(1);
      expect(afterNotice(r.err)).toMatch(/^nvmq: verify failed: nvmq job nvmq: LBA 37: crc32c 0x[0-9a-f]{8}, header has 0x[0-9a-f]{8}\n$/);
      expect(r.out).toMatch(/verify: FAILED at LBA 37/);
      // A block stamped for another LBA is caught too.
      const block = Buffer.alloc(4096);
      fs.readSync(fs.openSync(img, 'r'), block, 0, 4096, 5 * 4096);
      const fd2 = fs.openSync(img, 'r+');
      fs.writeSync(fd2, block, 0, 4096, 6 * 4096);
      fs.closeSync(fd2);
      const seq = nvmq(dir, ['bench', ...job, '--rw', 'read', '--size', '128k']);
      expect(seq.code).toBe(1);
      expect(seq.err).toContain('LBA 6: block stamped for LBA 5');
    });
  });

  it('prints fio-shaped JSON', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--backend', 'memory', '--size', '16m', '--rw', 'randrw', '--rwmixread', '70', '--numjobs', '2', '--iodepth', '4', '--name', 'mix', ...SHORT, '--output-format', 'json']);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.out) as Record<string, any>;
      expect(doc['nvmq version']).toMatch(/^nvmq-/);
      expect(typeof doc.timestamp).toBe('number');
      expect(doc.jobs).toHaveLength(1);
      const job = doc.jobs[0];
      expect(job.jobname).toBe('mix');
      expect(job.error).toBe(0);
      expect(job['job options']).toMatchObject({ name: 'mix', rw: 'randrw', rwmixread: '70', numjobs: '2', iodepth: '4' });
      expect(job['job options']).not.toHaveProperty('bs');
      for (const dir of ['read', 'write']) {
        const d = job[dir];
        for (const k of ['io_bytes', 'io_kbytes', 'bw_bytes', 'bw', 'iops', 'runtime', 'total_ios']) expect(typeof d[k], `${dir}.${k}`).toBe('number');
        expect(d.total_ios).toBeGreaterThan(0);
        expect(d.bw).toBe(Math.round(d.bw_bytes / 1024));
        expect(d.io_bytes).toBe(d.total_ios * 4096);
        expect(Object.keys(d.clat_ns.percentile)).toEqual(['50.000000', '90.000000', '99.000000', '99.900000', '99.990000']);
        expect(d.clat_ns).toMatchObject({ N: d.total_ios });
        expect(d.clat_ns.min).toBeLessThanOrEqual(d.clat_ns.percentile['50.000000']);
        expect(d.clat_ns.percentile['99.990000']).toBeLessThanOrEqual(d.clat_ns.max);
        expect(Object.keys(d.lat_ns)).toEqual(['min', 'max', 'mean', 'stddev', 'N']);
      }
      expect(job.read.total_ios / (job.read.total_ios + job.write.total_ios)).toBeGreaterThan(0.6);
      expect(typeof job.usr_cpu).toBe('number');
      expect(typeof job.sys_cpu).toBe('number');
      expect(job.workers).toHaveLength(2);
      expect(doc['percentile relative error']).toBeCloseTo(0.0039, 4);
    });
  });

  it('writes a self-contained HTML report with IOPS over time and a latency histogram', () => {
    inTemp((dir) => {
      const out = path.join(dir, 'r.html');
      const r = nvmq(dir, ['bench', '--backend', 'memory', '--size', '16m', '--rw', 'randread', '--iodepth', '8', '--runtime', '0.6', '--time_based', '--report', out]);
      expect(r.code).toBe(0);
      const html = fs.readFileSync(out, 'utf8');
      expect(html).toMatch(/^<!doctype html>/);
      expect(html).toContain('IOPS over time');
      expect(html).toMatch(/<svg[^>]*>.*<path d="M[\d.]+,[\d.]+ L/s);
      expect(html).toMatch(/read latency.*<rect /s);
      expect(html).not.toMatch(/\b(src|href)\s*=/i);
      expect(html.replaceAll('xmlns="http://www.w3.org/2000/svg"', '')).not.toMatch(/https?:\/\//);
    });
  });

  it('runs fio job files: [global] and job sections, unsupported keys named', () => {
    inTemp((dir) => {
      const f = path.join(dir, 'two.fio');
      fs.writeFileSync(f, ['[global]', 'backend=memory', 'size=8m', 'runtime=300ms', 'time_based', 'ioengine=libaio', '', '[reader]', 'rw=randread', 'iodepth=4', '', '[writer]', 'rw=write', 'bs=8k'].join('\n'));
      const r = nvmq(dir, ['bench', f, '--output-format', 'json']);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.out) as { jobs: Array<Record<string, any>>; notes: string[] };
      expect(doc.jobs.map((j) => j.jobname)).toEqual(['reader', 'writer']);
      expect(doc.jobs[0]!.read.total_ios).toBeGreaterThan(0);
      expect(doc.jobs[0]!.write.total_ios).toBe(0);
      expect(doc.jobs[1]!.write.io_bytes).toBe(doc.jobs[1]!.write.total_ios * 8192);
      expect(doc.notes).toContain('ioengine=libaio in the job file: nvmq runs its own engine');
      fs.writeFileSync(f, '[j]\nrw=read\nzonemode=zbd\n');
      const bad = nvmq(dir, ['bench', f]);
      expect(bad.code).toBe(2);
      expect(bad.err).toBe(`nvmq: ${f}:3 [j]: unsupported key 'zonemode' (nvmq reads: name, filename, backend, size, offset, rw, readwrite, rwmixread, rwmixwrite, bs, blocksize, iodepth, numjobs, runtime, time_based, ramp_time, direct, buffered, verify, ioengine, group_reporting)\n`);
    });
  });

  it('regression: a garbage job file or value is named with its control bytes escaped, in one line of bounded length', () => {
    inTemp((dir) => {
      const f = path.join(dir, 'garbage.fio');
      // An executable's first bytes, an escape sequence that would clear the terminal, a bell; CR LF ends the line.
      fs.writeFileSync(f, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0x07, 0x0d]), Buffer.from('\nrw=read\n')]));
      const keys = 'name, filename, backend, size, offset, rw, readwrite, rwmixread, rwmixwrite, bs, blocksize, iodepth, numjobs, runtime, time_based, ramp_time, direct, buffered, verify, ioengine, group_reporting';
      const r = nvmq(dir, ['bench', f]);
      expect(r.code).toBe(2);
      expect(r.err).toBe(`nvmq: ${f}:1 [global]: unsupported key '\\x7fELF\\x02\\x01\\x00\\x00\\x1b[2J\\x07' (nvmq reads: ${keys})\n`);
      // A long garbage line is cut short where the message echoes it.
      fs.writeFileSync(f, `[${'j'.repeat(5000)}]\n${'\x01'.repeat(5000)}\n`);
      const long = nvmq(dir, ['bench', f]);
      expect(long.code).toBe(2);
      expect(long.err).toBe(`nvmq: ${f}:2 [${'j'.repeat(60)}…]: unsupported key '${'\\x01'.repeat(60)}…' (nvmq reads: ${keys})\n`);
      const value = nvmq(dir, ['bench', '--rw', 'read\x1b[31m']);
      expect(value.code).toBe(2);
      expect(value.err).toBe('nvmq: --rw read\\x1b[31m is not one of read, write, randread, randwrite, rw, readwrite, randrw\n');
    });
  });

  it('refuses to write to a file it did not create unless --force, and reads one without', () => {
    inTemp((dir) => {
      const f = path.join(dir, 'mine.bin');
      fs.writeFileSync(f, Buffer.alloc(4 << 20, 7));
      const r = nvmq(dir, ['bench', '--filename', f, '--rw', 'randwrite', ...SHORT]);
      expect(r.code).toBe(1);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toContain('refusing to write');
      expect(fs.readFileSync(f).every((b) => b === 7)).toBe(true);
      const read = nvmq(dir, ['bench', '--filename', f, '--rw', 'read']);
      expect(read.code).toBe(0);
      expect(read.out).toMatch(/read: IOPS=.*\(4\.0MiB\//);
      expect(fs.readFileSync(f).every((b) => b === 7)).toBe(true);
      // Not the default either: no options on a foreign default image still refuses.
      fs.mkdirSync(path.join(dir, 'nvmq-data'));
      fs.writeFileSync(path.join(dir, 'nvmq-data', 'default.img'), Buffer.alloc(1 << 20, 7));
      expect(nvmq(dir, ['bench', '--runtime', '0.2']).err).toContain('refusing to write');
      const forced = nvmq(dir, ['bench', '--filename', f, '--rw', 'randwrite', ...SHORT, '--force']);
      expect(forced.err).toBe(NOTICE);
      expect(forced.code).toBe(0);
      expect(fs.readFileSync(f).every((b) => b === 7)).toBe(false);
    });
  });

  it('names a bad option value in one line with the accepted range, exit 2; --help lists every option with its default', () => {
    inTemp((dir) => {
      makeImage(dir, 's.img', '4m');
      for (const [args, line] of [
        [['--iodepth', '0'], 'nvmq: --iodepth 0 is out of range (1..4095)'],
        [['--bs', '1000'], 'nvmq: --bs 1000 is not a multiple of 512 (512..1m)'],
        [['--rw', 'up'], 'nvmq: --rw up is not one of read, write, randread, randwrite, rw, readwrite, randrw'],
        [['--metrics-port', '70000'], 'nvmq: --metrics-port 70000 is out of range (0..65535)'],
        [['--metrics-host', '0.0.0.0'], 'nvmq: --metrics-host 0.0.0.0 needs --metrics-port (0..65535): nvmq bench serves /metrics only on a port given'],
        [['--nope'], 'nvmq: unknown option --nope (nvmq --help lists them)'],
        [['--rw', 'randrw', '--rwmixread', '70', '--rwmixwrite', '70'], 'nvmq: --rwmixwrite 70 with --rwmixread 70 does not add up to 100 (give one, 0..100: the other is 100 minus it)'],
        [['frobnicate'], "nvmq: unknown command 'frobnicate' (commands: bench, identify, smart-log, serve, discover)"],
        [['discover'], 'nvmq: nvmq discover takes one address: HOST[:PORT] ([addr]:PORT for IPv6; the port defaults to 4420)'],
        [['discover', 'a.example', 'b.example'], 'nvmq: nvmq discover takes one address: HOST[:PORT] ([addr]:PORT for IPv6; the port defaults to 4420)'],
        [['discover', '127.0.0.1:99999'], 'nvmq: "127.0.0.1:99999" is not HOST[:PORT] (examples: 192.0.2.10, 192.0.2.10:4420, [::1]:4420)'],
        [['discover', '127.0.0.1', '--filename', 's.img'], 'nvmq: --filename does not apply to nvmq discover'],
        [['identify', '--filename', 's.img', '--hostnqn', 'nqn.2026-12.io.example:h'], 'nvmq: --hostnqn needs --filename nvme-tcp://HOST[:PORT]/SUBNQN (the target it names this host to)'],
        [['serve', '--hostnqn', 'nqn.2026-12.io.example:h'], 'nvmq: --hostnqn does not apply to nvmq serve'],
        [['--filename', 'pci:00:04', '--rw', 'read'], "nvmq: --filename pci:00:04: pci must be a PCI address such as 0000:00:04.0, got 'pci:00:04'"],
        // Found once the namespace is open: after the portable-path line, on a build that prints it.
        [['--filename', 's.img', '--offset', '4m', '--size', '4k', '--rw', 'read'], `${NOTICE}nvmq: job nvmq: offset 4194304 + size 4096 does not fit in s.img (4194304 bytes)`],
      ] as const) {
        const r = nvmq(dir, [...args]);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.err, args.join(' ')).toBe(`${line}\n`);
      }
      const help = nvmq(dir, ['--help']);
      expect(help.code).toBe(0);
      for (const o of ['--rw', '--rwmixread', '--bs', '--iodepth', '--numjobs', '--size', '--offset', '--runtime', '--time_based', '--ramp_time', '--direct', '--filename', '--backend', '--verify', '--output-format', '--metrics-port', '--compare', '--report', '--force']) {
        expect(help.out).toContain(o);
      }
      expect(help.out).toContain('(default 4k)');
    });
  });

  it('compares with node:fs on the same file in the same invocation', () => {
    inTemp((dir) => {
      makeImage(dir, 'c.img', '8m');
      const r = nvmq(dir, ['bench', '--filename', 'c.img', '--size', '8m', '--rw', 'randread', '--iodepth', '8', '--numjobs', '2', ...SHORT, '--compare', 'node-fs']);
      expect(r.err).toBe(NOTICE);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/node:fs: data path: node:fs\/promises FileHandle/);
      expect(r.out).toMatch(/Side by side.*\n.*job\s+dir\s+nvmq IOPS\s+node:fs IOPS\s+ratio\s+nvmq p99\s+node:fs p99\n\s+nvmq\s+read\s+\S+\s+\S+\s+[\d.]+x/);
    });
  });

  it.skipIf(!hasFio)('compares with fio, and never lets fio write to a file nvmq did not create', () => {
    inTemp((dir) => {
      const r = nvmq(dir, ['bench', '--filename', 'f.img', '--size', '8m', '--rw', 'randrw', '--iodepth', '4', '--numjobs', '2', ...SHORT, '--compare', 'fio', '--output-format', 'json']);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.out) as { compare: { engine: string; jobs: Array<Record<string, any>> } };
      expect(doc.compare.engine).toBe('fio');
      expect(doc.compare.jobs[0]!.read.total_ios).toBeGreaterThan(0);
      expect(doc.compare.jobs[0]!.read.clat_ns.percentile['99.000000']).toBeGreaterThan(0);
    });
  });

  it.skipIf(!hasFio)('puts CPU per I/O of both, all their threads, and its ratio side by side with fio, in text and JSON', () => {
    inTemp((dir) => {
      makeImage(dir, 'f.img', '16m');
      const job = ['bench', '--filename', 'f.img', '--size', '16m', '--rw', 'randread', '--iodepth', '32', ...SHORT, '--compare', 'fio'];
      const r = nvmq(dir, job);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^note: cpu: every thread of fio's processes, io_uring's io-wq workers included, from when fio forked its jobs \(its \d+ ms of CPU before, mostly clock calibration, left out\)$/m);
      expect(r.out).not.toMatch(/usr_cpu/);
      const us = (n: string, unit: string): number => Number(n) * ({ ns: 1e-3, us: 1, ms: 1e3 } as Record<string, number>)[unit]!;
      const [, a, ua, b, ub, ratio] = /\n {2}all jobs\s+CPU per I\/O\s+([\d.]+)(ns|us|ms)\s+([\d.]+)(ns|us|ms)\s+([\d.]+)x$/m.exec(r.out) ?? [];
      expect(ratio, r.out).toBeDefined();
      const [nvmqUs, fioUs] = [us(a!, ua!), us(b!, ub!)];
      expect(nvmqUs).toBeGreaterThan(0);
      expect(fioUs).toBeGreaterThan(0);
      // Two decimals each: the printed ratio is the ratio of the printed figures, within their rounding.
      expect(Math.abs(Number(ratio) - nvmqUs / fioUs)).toBeLessThanOrEqual(0.01 + (0.006 / Math.min(Number(a), Number(b))) * (nvmqUs / fioUs));
      const json = nvmq(dir, [...job, '--output-format', 'json']);
      expect(json.code, json.err).toBe(0);
      const doc = JSON.parse(json.out) as { cpu_per_io_us: number; cpu_per_io_ratio: number; compare: { cpu_per_io_us: number; jobs: Array<{ read: { total_ios: number }; usr_cpu: number; sys_cpu: number }>; elapsed: number } };
      expect(doc.cpu_per_io_us).toBeGreaterThan(0);
      expect(doc.compare.cpu_per_io_us).toBeGreaterThan(0);
      expect(doc.cpu_per_io_ratio).toBeCloseTo(doc.cpu_per_io_us / doc.compare.cpu_per_io_us, 9);
      expect(doc.compare.jobs[0]!.usr_cpu + doc.compare.jobs[0]!.sys_cpu).toBeGreaterThan(0);
    });
  });

  it('says in one line that fio is missing and exits non-zero', () => {
    inTemp((dir) => {
      makeImage(dir, 'f.img', '4m');
      const r = nvmq(dir, ['bench', '--backend', 'file', '--filename', 'f.img', '--size', '4m', '--rw', 'read', '--compare', 'fio'], { ...process.env, PATH: dir });
      expect(r.code).toBe(1);
      expect(r.err).toBe(`${NOTICE}nvmq: fio is not installed (not found on PATH): --compare fio needs it [NVMQ_FIO_MISSING]\n`);
    });
  });
});

describe('nvmq identify, smart-log, serve', () => {
  it('prints identify as nvme id-ctrl / id-ns do, and the SMART log', () => {
    inTemp((dir) => {
      makeImage(dir, 'x.img', '16m');
      const id = nvmq(dir, ['identify', '--size', '16M', '--filename', 'x.img']);
      expect(id.code).toBe(0);
      expect(id.out).toMatch(/^NVME Identify Controller:\nvid\s+: 0x[0-9a-f]+\nssvid\s+: 0x[0-9a-f]+\nsn\s+: \S+/);
      for (const k of ['mn', 'fr', 'mdts', 'nn', 'oncs', 'vwc', 'sqes', 'cqes', 'subnqn']) expect(id.out).toMatch(new RegExp(`\\n${k}\\s+: `));
      expect(id.out).toMatch(/NVME Identify Namespace 1:\nnsze\s+: 0x1000\nncap\s+: 0x1000/);
      expect(id.out).toMatch(/nlbaf\s+: 0\nflbas\s+: 0x0/);
      expect(id.out).toMatch(/lbaf  0 : ms:0   lbads:12  rp:0x0 \(in use\)/);
      const smart = nvmq(dir, ['smart-log', '--filename', 'x.img']);
      expect(smart.code).toBe(0);
      expect(smart.out).toMatch(/available_spare\s+: 100%/);
      expect(smart.out).toMatch(/power_cycles\s+: 1/);
      // A file nvmq did not create can be looked at without --force.
      fs.writeFileSync(path.join(dir, 'foreign.bin'), Buffer.alloc(1 << 20));
      expect(nvmq(dir, ['identify', '--filename', 'foreign.bin']).out).toMatch(/nsze\s+: 0x100\n/);
    });
  });

  it('regression: identify, smart-log and read-only jobs create nothing on a missing file, and say so in one line (exit 1)', () => {
    inTemp((dir) => {
      const tree = (): string[] => (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
      const why = '(identify, smart-log and read-only jobs never create an image; a write job or nvmq serve does) [NVMQ_IMAGE_NOT_FOUND]';
      for (const [args, file] of [
        [['identify', '--filename', 'missing/dir/x.img'], 'missing/dir/x.img'],
        [['identify'], 'nvmq-data/default.img'],
        [['smart-log', '--filename', 'missing/dir/x.img'], 'missing/dir/x.img'],
        [['bench', '--filename', 'missing/dir/x.img', '--rw', 'read'], 'missing/dir/x.img'],
        [['bench', '--filename', 'missing/dir/x.img', '--rw', 'randread', '--verify', 'crc32c', ...SHORT], 'missing/dir/x.img'],
        [['bench', '--filename', 'missing/dir/x.img', '--rw', 'randread', '--compare', 'node-fs'], 'missing/dir/x.img'],
      ] as const) {
        const r = nvmq(dir, [...args]);
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.err, args.join(' ')).toBe(`nvmq: ${file} does not exist ${why}\n`);
        expect(tree(), args.join(' ')).toEqual([]);
      }
      // Write jobs and serve still create their image (serve: below).
      makeImage(dir, 'new/dir/w.img', '4m');
      expect(tree()).toEqual(['new', path.join('new', 'dir'), path.join('new', 'dir', 'w.img'), path.join('new', 'dir', 'w.img.nvmq.json')]);
    });
  });

  it('serve opens the namespaces, serves /metrics, waits for SIGTERM, flushes and exits 0', async () => {
    const t = tempDir();
    try {
      const child = spawn(process.execPath, [BIN, 'serve', '--filename', 'a.img:b.img', '--size', '4m', '--metrics-port', '0'], { cwd: t.dir });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      // 'close', not 'exit': the output is all read only once the pipes close.
      const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      const deadline = Date.now() + 15_000;
      while (!out.includes('ready') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(out).toMatch(/namespace 1: a\.img, 1024 blocks of 4096 bytes\n\s+namespace 2: b\.img/);
      // A real scrape of the port the OS picked.
      const url = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(out)?.[1];
      expect(url).toBeDefined();
      const res = await fetch(url!);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).toMatch(/^nvmq_info\{.*namespaces="2".*\} 1$/m);
      expect(text).toMatch(/^nvmq_namespace_capacity_bytes\{namespace="2"\} 4194304$/m);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toMatch(/SIGTERM: flushing and shutting down\nclosed\n$/);
      expect(err).toBe(NOTICE);
      expect(fs.existsSync(path.join(t.dir, 'b.img.nvmq.json'))).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});
