/**
 * fio job files: INI text with a `[global]` section and job sections, `key=value`
 * or bare `key` (a boolean set), `#` and `;` comment lines. Each job starts
 * from the global keys seen before it, as fio does. Keys nvmq reads are the
 * job options of the option table; any other key is an error that names it,
 * never silently ignored.
 */
import * as fs from 'node:fs';
import { OPTIONS, RWMIX, UsageError, canonical, checkValue, clip, makeJob, type JobSpec, type OptionName, type RawOptions } from './options.js';

export interface JobFileJob {
  name: string;
  raw: RawOptions;
  /** How an error names a key of this job: `file:line [job] key=`. */
  where: (name: OptionName) => string;
}

export const JOB_FILE_KEYS: readonly string[] = Object.entries(OPTIONS)
  .filter(([, d]) => 'job' in d && d.job)
  .flatMap(([k, d]) => [k, ...('aliases' in d ? d.aliases : [])]);

/** Parses job file text; `file` only names it in errors. */
export function parseJobFile(text: string, file: string): JobFileJob[] {
  let global: RawOptions = {};
  let globalLines: Partial<Record<OptionName, number>> = {};
  const jobs: Array<JobFileJob & { lines: Partial<Record<OptionName, number>> }> = [];
  let current: { name: string; raw: RawOptions; lines: Partial<Record<OptionName, number>> } | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const at = `${file}:${i + 1}`;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) {
      const name = section[1]!.trim();
      if (name === 'global') {
        current = undefined;
      } else {
        const lineOf = { ...globalLines };
        current = { name, raw: { ...global, name }, lines: lineOf };
        const sectionName = clip(name);
        const job = current;
        jobs.push({
          name,
          raw: job.raw,
          lines: job.lines,
          where: (k) => `${file}:${job.lines[k] ?? '?'} [${sectionName}] ${k}=`,
        });
      }
      continue;
    }
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    const value = eq < 0 ? '1' : line.slice(eq + 1).trim();
    const name = canonical(key);
    const where = `${at} [${current ? clip(current.name) : 'global'}]`;
    if (!name || !JOB_FILE_KEYS.includes(key)) {
      throw new UsageError(`${where}: unsupported key '${clip(key)}' (nvmq reads: ${JOB_FILE_KEYS.join(', ')})`);
    }
    checkValue(name, value, `${where} ${key}=`);
    if (current) {
      // The job's own rwmixread / rwmixwrite replaces the pair it took from [global].
      if (RWMIX.includes(name)) {
        for (const k of RWMIX) {
          if (k !== name && current.lines[k] !== undefined && current.lines[k] === globalLines[k]) {
            delete current.raw[k];
            delete current.lines[k];
          }
        }
      }
      current.raw[name] = value;
      current.lines[name] = i + 1;
    } else {
      global = { ...global, [name]: value };
      globalLines = { ...globalLines, [name]: i + 1 };
    }
  }
  if (jobs.length === 0) throw new UsageError(`${file}: no job section (a [name] other than [global])`);
  return jobs.map(({ name, raw, where }) => ({ name, raw, where }));
}

/** Reads and parses a job file; command-line options override its values in every job. */
export function loadJobFile(file: string, overrides: RawOptions): JobSpec[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read job file ${file}: ${(e as Error).message}`);
  }
  const mixGiven = RWMIX.some((k) => overrides[k] !== undefined);
  return parseJobFile(text, file).map((j) => {
    const raw = { ...j.raw, ...overrides };
    if (mixGiven) for (const k of RWMIX) if (overrides[k] === undefined) delete raw[k];
    return makeJob(raw, (k) => (overrides[k] !== undefined ? `--${k}` : j.where(k)));
  });
}
