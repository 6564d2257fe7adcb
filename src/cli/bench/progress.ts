/**
 * Live progress, as fio shows it: on a terminal one line rewritten in place,
 *   Jobs: 2 (f=2): [m(2)][40.0%][r=48.1MiB/s,w=48.0MiB/s][r=12.3k,w=12.3k IOPS][eta 00m:03s]
 * and otherwise a plain line every few seconds (a log should not fill up with
 * carriage returns).
 */
import type { Sample } from './results.js';
import { WorkerStats, type JobLayout, Phase, C_PHASE, C_READ_IOS, C_WRITE_IOS } from './stats.js';
import { formatBytes, formatCount } from './units.js';

const STATE: Record<string, string> = { read: 'R', write: 'W', randread: 'r', randwrite: 'w', rw: 'M', randrw: 'm' };

export class Progress {
  private lastPlain = 0;
  private shown = false;

  constructor(
    private readonly out: { write(s: string): void; isTTY: boolean },
    private readonly layouts: JobLayout[],
    private readonly stats: WorkerStats[],
  ) {}

  /** `samples` ends with `s`; rates come from the last second or so of samples. */
  update(s: Sample, samples: Sample[]): void {
    let from = samples[0]!;
    for (let i = samples.length - 2; i >= 0; i--) {
      from = samples[i]!;
      if (s.t - from.t >= 900) break;
    }
    const dt = (s.t - from.t) / 1000;
    if (dt <= 0) return;
    const line = this.line(s, from, dt);
    if (this.out.isTTY) {
      this.out.write(`\r${line}\x1b[K`);
      this.shown = true;
    } else if (s.t - this.lastPlain >= (s.t > 60_000 ? 10_000 : 1000)) {
      this.lastPlain = s.t;
      this.out.write(`${line}\n`);
    }
  }

  private line(s: Sample, from: Sample, dt: number): string {
    let states = '';
    let running = 0;
    let percent = 0;
    let eta = 0;
    for (const l of this.layouts) {
      for (const w of l.workers) {
        const st = this.stats[w]!;
        const phase = st.counters[C_PHASE]!;
        states += phase === Phase.DONE ? '_' : phase === Phase.VERIFYING ? 'V' : phase === Phase.STARTING ? 'P' : STATE[l.job.rw];
        if (phase !== Phase.DONE) running++;
      }
      const j = l.job;
      const elapsed = s.t;
      let p: number;
      let left: number;
      if (j.runtime > 0) {
        p = Math.min(1, elapsed / (j.rampTime + j.runtime));
        left = Math.max(0, j.rampTime + j.runtime - elapsed);
      } else {
        p = 0;
        left = 0;
      }
      if (!j.timeBased) {
        // Size-bound: the share of the region's blocks done, whichever ends first.
        const blocks = (l.perWorker / j.bs) * l.workers.length;
        const ios = l.workers.reduce((sum, w) => sum + this.stats[w]!.counters[C_READ_IOS]! + this.stats[w]!.counters[C_WRITE_IOS]!, 0);
        const byIos = Math.min(1, ios / blocks);
        if (byIos > p) {
          p = byIos;
          left = byIos > 0 ? (elapsed * (1 - byIos)) / byIos : 0;
        }
      }
      percent = Math.max(percent, p);
      eta = Math.max(eta, left);
    }
    const runs = compress(states);
    const r = (s.readBytes - from.readBytes) / dt;
    const w = (s.writeBytes - from.writeBytes) / dt;
    const ri = (s.readIos - from.readIos) / dt;
    const wi = (s.writeIos - from.writeIos) / dt;
    const secs = Math.ceil(eta / 1000);
    const etaText = `${String(Math.floor(secs / 60)).padStart(2, '0')}m:${String(secs % 60).padStart(2, '0')}s`;
    return `Jobs: ${running} (f=${running}): [${runs}][${(percent * 100).toFixed(1)}%][r=${formatBytes(r)}/s,w=${formatBytes(w)}/s][r=${formatCount(ri)},w=${formatCount(wi)} IOPS][eta ${etaText}]`;
  }

  /** Clears the terminal line before the report. */
  end(): void {
    if (this.shown) this.out.write('\r\x1b[K');
  }
}

/** "mmmm" → "m(4)", as fio shortens its state string. */
function compress(states: string): string {
  let out = '';
  for (let i = 0; i < states.length; ) {
    let j = i;
    while (j < states.length && states[j] === states[i]) j++;
    out += j - i > 1 ? `${states[i]}(${j - i})` : states[i];
    i = j;
  }
  return out;
}
