/**
 * `--report out.html`: one self-contained page (inline CSS and SVG drawn
 * here, no script, nothing fetched from the network) with IOPS over time
 * from the progress samples, a latency histogram per direction, and the text
 * report (and the comparison, when there is one).
 */
import { BUCKETS, bucketRange, type Histogram } from './histogram.js';
import { formatComparison, formatNormal } from './report.js';
import type { RunResult, Sample } from './results.js';
import { formatCount, formatNs } from './units.js';

const W = 720;
const H = 240;
const PAD = { left: 60, right: 20, top: 20, bottom: 40 };
const COLORS = { read: '#1f77b4', write: '#d62728' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function svgOpen(title: string): string {
  // The SVG namespace is an identifier, not a resource: nothing is fetched.
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">`;
}

function axes(xLabel: string, yLabel: string, yMax: number, yFormat: (v: number) => string): string {
  const x0 = PAD.left;
  const y0 = H - PAD.bottom;
  let out = `<line x1="${x0}" y1="${y0}" x2="${W - PAD.right}" y2="${y0}" stroke="#444"/><line x1="${x0}" y1="${PAD.top}" x2="${x0}" y2="${y0}" stroke="#444"/>`;
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const y = y0 - ((y0 - PAD.top) * i) / 4;
    out += `<line x1="${x0 - 4}" y1="${y}" x2="${W - PAD.right}" y2="${y}" stroke="#ddd"/><text x="${x0 - 6}" y="${y + 4}" text-anchor="end" font-size="11">${esc(yFormat(v))}</text>`;
  }
  out += `<text x="${(x0 + W - PAD.right) / 2}" y="${H - 6}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`;
  out += `<text x="14" y="${(PAD.top + y0) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${(PAD.top + y0) / 2})">${esc(yLabel)}</text>`;
  return out;
}

/** IOPS over time, read and write, from the cumulative samples. */
export function iopsChart(samples: readonly Sample[]): string {
  const points: Array<{ t: number; r: number; w: number }> = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    points.push({ t: b.t / 1000, r: (b.readIos - a.readIos) / dt, w: (b.writeIos - a.writeIos) / dt });
  }
  const tMax = Math.max(1e-3, ...points.map((p) => p.t));
  const yMax = Math.max(1, ...points.map((p) => Math.max(p.r, p.w))) * 1.1;
  const x = (t: number): number => PAD.left + ((W - PAD.left - PAD.right) * t) / tMax;
  const y = (v: number): number => H - PAD.bottom - ((H - PAD.top - PAD.bottom) * v) / yMax;
  let out = svgOpen('IOPS over time') + axes(`seconds (0 to ${tMax.toFixed(1)})`, 'IOPS', yMax, formatCount);
  for (const dir of ['r', 'w'] as const) {
    if (points.every((p) => p[dir] === 0)) continue;
    const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p[dir]).toFixed(1)}`).join(' ');
    out += `<path d="${d}" fill="none" stroke="${dir === 'r' ? COLORS.read : COLORS.write}" stroke-width="2"/>`;
  }
  out += `<text x="${W - PAD.right}" y="14" text-anchor="end" font-size="12"><tspan fill="${COLORS.read}">read</tspan> <tspan fill="${COLORS.write}">write</tspan></text>`;
  return out + '</svg>';
}

/** A latency histogram: the fine buckets gathered into powers of two, on a log time axis. */
export function latencyChart(h: Histogram, label: string, color: string): string {
  const bins = new Map<number, number>();
  for (let i = 0; i < BUCKETS; i++) {
    const n = h.bucket(i);
    if (n === 0) continue;
    const k = Math.floor(Math.log2(Math.max(1, bucketRange(i)[0])));
    bins.set(k, (bins.get(k) ?? 0) + n);
  }
  const keys = [...bins.keys()];
  const lo = keys.length ? Math.min(...keys) : 0;
  const hi = keys.length ? Math.max(...keys) : 0;
  const n = hi - lo + 1;
  const yMax = Math.max(1, ...bins.values()) * 1.1;
  const bw = (W - PAD.left - PAD.right) / n;
  let out = svgOpen(`${label} latency histogram`) + axes(`${label} latency (bins of powers of two)`, 'I/Os', yMax, formatCount);
  for (let k = lo; k <= hi; k++) {
    const v = bins.get(k) ?? 0;
    const bh = ((H - PAD.top - PAD.bottom) * v) / yMax;
    const x = PAD.left + (k - lo) * bw;
    out += `<rect x="${(x + 1).toFixed(1)}" y="${(H - PAD.bottom - bh).toFixed(1)}" width="${Math.max(1, bw - 2).toFixed(1)}" height="${bh.toFixed(1)}" fill="${color}"><title>${esc(`${formatNs(2 ** k)}..${formatNs(2 ** (k + 1))}: ${v} I/Os`)}</title></rect>`;
    if ((k - lo) % Math.ceil(n / 8) === 0) out += `<text x="${(x + bw / 2).toFixed(1)}" y="${H - PAD.bottom + 14}" text-anchor="middle" font-size="11">${esc(formatNs(2 ** k))}</text>`;
  }
  return out + '</svg>';
}

export function renderHtml(r: RunResult, other?: RunResult): string {
  const sections: string[] = [`<h2>IOPS over time</h2>${iopsChart(r.samples)}`];
  for (const j of r.jobs) {
    if (!j.histograms) continue;
    for (const dir of ['read', 'write'] as const) {
      if (j.histograms[dir].count === 0) continue;
      sections.push(`<h2>${esc(j.job.name)}: ${dir} latency</h2>${latencyChart(j.histograms[dir], dir, COLORS[dir])}`);
    }
  }
  sections.push(`<h2>Report</h2><pre>${esc(formatNormal(r))}</pre>`);
  if (other) sections.push(`<h2>${esc(other.engine)}</h2><pre>${esc(formatNormal(other))}</pre><h2>Side by side</h2><pre>${esc(formatComparison(r, other))}</pre>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nvmq bench report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}svg{display:block;margin:0.5em 0 1.5em}</style>
</head><body>
<h1>nvmq bench report</h1>
<p>${esc(new Date().toISOString())} · data path: ${esc(r.dataPath)} · percentiles within ${(r.relativeError * 100).toFixed(2)}%</p>
${sections.join('\n')}
</body></html>
`;
}
