/**
 * The CPU time of a command and of every process it starts, every thread of
 * each counted. io_uring's io-wq workers are threads of the process whose
 * ring they serve, so the kernel adds their time to that process as it does
 * any thread's. Node's child_process returns no rusage, so the command runs
 * under /bin/sh, whose `times` (POSIX: the shell's getrusage(RUSAGE_CHILDREN))
 * prints on fd 3, once the command has exited and been reaped, the user and
 * system time of the command and of every descendant it waited for.
 *
 * Optionally what the command used before it started its first child is
 * left out (fio spends about 0.1 s of CPU calibrating its clock before it
 * forks its jobs): the command's own time is read from /proc/<pid>/stat as
 * soon as /proc/<pid>/task/<pid>/children shows a child (one its main
 * thread started, as fio's are).
 */
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface CpuTime {
  userMs: number;
  systemMs: number;
}

export interface Measured {
  /** Exit status; 127 when the command is not on PATH. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time the CPU figure covers. */
  elapsedMs: number;
  /** Absent when it could not be measured (`why` says so). */
  cpu?: CpuTime;
  /** What the command used before it started its first child, left out of `cpu`. */
  startup?: CpuTime;
  /** Why `cpu` is absent, or why the startup could not be left out. */
  why?: string;
}

/** Exit status for a command not found on PATH, as a shell reports it. */
export const NOT_FOUND = 127;

/** The command runs without fd 3, which only the shell's `times` writes to. */
const WRAPPER = `command -v "$1" >/dev/null 2>&1 || exit ${NOT_FOUND}; "$@" 3>&-; s=$?; times >&3; exit $s`;

/** /proc's clock tick (USER_HZ): 100 on every architecture Node runs on. */
const USER_HZ = 100;

/**
 * The children's line of `times` (the second: user and system time as `<m>m<s>s`; dash prints
 * `0m1.230000s`, bash `0m1.230s` or `0m1,230s` in a locale with a decimal comma).
 */
export function parseTimes(text: string): CpuTime | undefined {
  const m = /^\s*(\d+)m\s*(\d+(?:[.,]\d*)?)s\s+(\d+)m\s*(\d+(?:[.,]\d*)?)s\s*$/.exec(text.split('\n')[1] ?? '');
  if (!m) return undefined;
  const ms = (min: string, sec: string): number => (Number(min) * 60 + Number(sec.replace(',', '.'))) * 1000;
  return { userMs: ms(m[1]!, m[2]!), systemMs: ms(m[3]!, m[4]!) };
}

/** utime and stime of /proc/<pid>/stat (all the process's threads, live and exited). */
export function parseProcStat(text: string): CpuTime {
  // Fields after the command name, which may hold spaces and parentheses: state is the first, utime the 12th.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { userMs: (Number(f[11]) * 1000) / USER_HZ, systemMs: (Number(f[12]) * 1000) / USER_HZ };
}

const childrenOf = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);

interface StartupWatch {
  stop(): void;
  /** The command's CPU time when it was first seen with a child, and when that was (performance.now()). */
  seen?: { cpu: CpuTime; at: number };
  /** Why there is no reading. */
  why?: string;
}

/** Watches for `shell`'s child (the command) to start a child of its own, then reads the command's CPU time so far. */
function watchStartup(shell: number, file: string): StartupWatch {
  if (!existsSync(`/proc/${process.pid}/task/${process.pid}/children`)) return { stop: () => undefined, why: 'this kernel has no /proc/<pid>/task/<pid>/children' };
  const w: StartupWatch = { stop: () => clearInterval(timer), why: `${file} started no child process that could be seen` };
  let command: number | undefined;
  const timer = setInterval(() => {
    try {
      command ??= childrenOf(shell)[0];
      if (command === undefined || childrenOf(command).length === 0) return;
      w.seen = { cpu: parseProcStat(readFileSync(`/proc/${command}/stat`, 'utf8')), at: performance.now() };
      delete w.why;
    } catch {
      // The command exited before it was seen starting a child.
    }
    clearInterval(timer);
  }, 1);
  return w;
}

/** Runs `file args` under /bin/sh (or `opts.shell`) and measures its CPU; with no such shell, runs it alone, unmeasured. */
export function runMeasured(file: string, args: readonly string[], opts: { leaveOutStartup: boolean; shell?: string }): Promise<Measured> {
  const shell = opts.shell ?? '/bin/sh';
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const out = { stdout: '', stderr: '', times: '' };
    const collect = (stream: NodeJS.ReadableStream | null | undefined, key: keyof typeof out): void => {
      stream?.setEncoding('utf8');
      stream?.on('data', (d: string) => (out[key] += d));
    };
    const child = spawn(shell, ['-c', WRAPPER, 'nvmq', file, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    collect(child.stdout, 'stdout');
    collect(child.stderr, 'stderr');
    collect(child.stdio[3] as NodeJS.ReadableStream | null, 'times');
    const startup = opts.leaveOutStartup && child.pid !== undefined ? watchStartup(child.pid, file) : undefined;
    child.once('error', (err: NodeJS.ErrnoException) => {
      startup?.stop();
      if (err.code !== 'ENOENT') return reject(err);
      // No shell: the command alone, its CPU unmeasured.
      const alone = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      collect(alone.stdout, 'stdout');
      collect(alone.stderr, 'stderr');
      alone.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? resolve({ code: NOT_FOUND, stdout: '', stderr: '', elapsedMs: 0 }) : reject(e)));
      alone.once('close', (code) => resolve({ code, stdout: out.stdout, stderr: out.stderr, elapsedMs: performance.now() - t0, why: `${shell} is not available to time ${file}` }));
    });
    child.once('close', (code) => {
      if (child.pid === undefined) return; // never started: the 'error' handler answers
      startup?.stop();
      const base = { code, stdout: out.stdout, stderr: out.stderr };
      const total = parseTimes(out.times);
      if (!total) return resolve({ ...base, elapsedMs: performance.now() - t0, why: `${shell}'s times printed ${JSON.stringify(out.times)}, not the children's user and system time` });
      const seen = startup?.seen;
      if (!seen) return resolve({ ...base, elapsedMs: performance.now() - t0, cpu: total, ...(startup?.why ? { why: startup.why } : {}) });
      const cpu = { userMs: Math.max(0, total.userMs - seen.cpu.userMs), systemMs: Math.max(0, total.systemMs - seen.cpu.systemMs) };
      resolve({ ...base, elapsedMs: performance.now() - seen.at, cpu, startup: seen.cpu });
    });
  });
}
