import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { haveTool, tempDir } from '../helpers/harness.js';
import { parseTimes, parseProcStat, runMeasured, NOT_FOUND } from '../../src/cli/bench/child-cpu.js';
import { dataPathStatus } from '../../src/engine/uring/data-path.js';

const hasFio = haveTool('fio');

/** A busy loop of fixed work (not fixed time), so a loaded machine stretches it instead of shortening it. */
const SPIN = 'let x = 0; for (let i = 0; i < 1e8; i++) x += i % 7; if (x < 0) console.log(x);';

describe('the shell\'s times', () => {
  it('reads the children\'s user and system time as dash, bash and bash in a decimal-comma locale print them', () => {
    expect(parseTimes('0m0.000000s 0m0.000000s\n0m0.850000s 0m2.280000s\n')).toEqual({ userMs: 850, systemMs: 2280 });
    expect(parseTimes('0m0.003s 0m0.001s\n1m2.500s 0m0.020s\n')).toEqual({ userMs: 62_500, systemMs: 20 });
    expect(parseTimes('0m0,003s 0m0,001s\n0m1,250s 0m0,500s\n')).toEqual({ userMs: 1250, systemMs: 500 });
  });

  it('gives nothing for anything else: no children\'s line, or not <m>m<s>s', () => {
    expect(parseTimes('')).toBeUndefined();
    expect(parseTimes('0m0.00s 0m0.00s\n')).toBeUndefined();
    expect(parseTimes('0m0.00s 0m0.00s\nuser 0.85 sys 2.28\n')).toBeUndefined();
    expect(parseTimes('0m0.00s 0m0.00s\n0m0.85s\n')).toBeUndefined();
  });

  it('reads utime and stime of /proc/<pid>/stat, past a command name holding spaces and parentheses', () => {
    const fields = ['S', '1', '2', '3', '0', '-1', '4194304', '10', '0', '0', '0', '14', '3', '0', '0'];
    expect(parseProcStat(`4242 (fio (x) y) ${fields.join(' ')}`)).toEqual({ userMs: 140, systemMs: 30 });
  });
});

describe('a command\'s CPU time', () => {
  it('counts its descendants and keeps its exit status and output', async () => {
    // The command itself only waits: what it reports is its child's work.
    const r = await runMeasured(process.execPath, ['-e', `require('child_process').spawnSync(process.execPath, ['-e', ${JSON.stringify(SPIN)}]); console.log('out'); process.exit(3)`], { leaveOutStartup: false });
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('out\n');
    expect(r.why).toBeUndefined();
    expect(r.cpu!.userMs).toBeGreaterThanOrEqual(40);
  });

  it('leaves out what the command used before it started its first child', async () => {
    const r = await runMeasured(process.execPath, ['-e', `${SPIN} require('child_process').spawnSync(process.execPath, ['-e', ${JSON.stringify(SPIN)}])`], { leaveOutStartup: true });
    expect(r.code).toBe(0);
    expect(r.why).toBeUndefined();
    // The spin before the child is in the startup, the child's after it in the figure.
    expect(r.startup!.userMs).toBeGreaterThanOrEqual(40);
    expect(r.cpu!.userMs).toBeGreaterThanOrEqual(40);
  });

  it('says why the startup is in the figure when the command started no child', async () => {
    const r = await runMeasured(process.execPath, ['-e', SPIN], { leaveOutStartup: true });
    expect(r.startup).toBeUndefined();
    expect(r.why).toBe(`${process.execPath} started no child process that could be seen`);
    expect(r.cpu!.userMs).toBeGreaterThanOrEqual(40);
  });

  it('reports a command not on PATH with the shell\'s status for it, and no output', async () => {
    const r = await runMeasured('nvmq-no-such-command', [], { leaveOutStartup: true });
    expect(r.code).toBe(NOT_FOUND);
    expect(r.stderr).toBe('');
  });

  it('runs the command alone, and says its CPU was not measured, where there is no shell', async () => {
    const r = await runMeasured(process.execPath, ['-e', 'console.log("alone")'], { leaveOutStartup: true, shell: '/nonexistent/sh' });
    expect(r).toMatchObject({ code: 0, stdout: 'alone\n', why: `/nonexistent/sh is not available to time ${process.execPath}` });
    expect(r.cpu).toBeUndefined();
    expect((await runMeasured('nvmq-no-such-command', [], { leaveOutStartup: false, shell: '/nonexistent/sh' })).code).toBe(NOT_FOUND);
  });

  it('says what the shell printed when it is not the children\'s times', async () => {
    const t = tempDir();
    try {
      const sh = path.join(t.dir, 'sh');
      fs.writeFileSync(sh, '#!/bin/sh\necho "no times here" >&3\n', { mode: 0o755 });
      const r = await runMeasured('true', [], { leaveOutStartup: false, shell: sh });
      expect(r.code).toBe(0);
      expect(r.cpu).toBeUndefined();
      expect(r.why).toBe(`${sh}'s times printed "no times here\\n", not the children's user and system time`);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(!hasFio || dataPathStatus().path !== 'io_uring')('includes io_uring\'s io-wq workers: fio forced to punt every read to them', async () => {
    const t = tempDir();
    try {
      const file = path.join(t.dir, 'f');
      const job = ['--name=j', `--filename=${file}`, '--size=16m', '--ioengine=io_uring', '--bs=4k', '--iodepth=32', '--output-format=json'];
      expect((await runMeasured('fio', [...job, '--rw=write'], { leaveOutStartup: false })).code).toBe(0);
      // force_async=1: IOSQE_ASYNC on every read, so io-wq threads do the copying, not fio's job thread.
      const r = await runMeasured('fio', [...job, '--rw=randread', '--invalidate=0', '--runtime=500ms', '--time_based', '--force_async=1'], { leaveOutStartup: true });
      expect(r.code, r.stderr).toBe(0);
      const f = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<{ usr_cpu: number; sys_cpu: number; job_runtime: number }> }).jobs[0]!;
      const ownThreadMs = ((f.usr_cpu + f.sys_cpu) / 100) * f.job_runtime;
      expect(r.cpu!.userMs + r.cpu!.systemMs).toBeGreaterThan(1.3 * ownThreadMs);
    } finally {
      t.cleanup();
    }
  });
});
