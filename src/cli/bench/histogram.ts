/**
 * Latency histograms with a stated relative error, in the manner of
 * HdrHistogram: log-linear buckets, 2^SUB_BITS linear sub-buckets per power
 * of two. A value v >= 2^SUB_BITS falls into a bucket [m·2^e, (m+1)·2^e) with
 * 2^SUB_BITS <= m < 2^(SUB_BITS+1); reporting the bucket's midpoint is off by
 * at most half a bucket, 2^-(SUB_BITS+1) of the value. Smaller values are
 * exact.
 *
 * The counts live in a Float64Array view of a SharedArrayBuffer (exact to
 * 2^53) with a single writer, the worker recording its own completions; the
 * main thread reads them once the worker is done, and merges workers by
 * adding their buckets.
 */
export const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Values up to 2^MAX_MSB+1 ns (about 4.9 hours) are bucketed; larger ones land in the last bucket. */
const MAX_MSB = 43;
export const BUCKETS = (MAX_MSB - SUB_BITS + 2) * SUB;
/** Worst-case relative error of a reported percentile (bucket midpoint). */
export const RELATIVE_ERROR = 1 / (2 * SUB);

const F_COUNT = 0;
const F_SUM = 1;
const F_SUMSQ = 2;
const F_MIN = 3;
const F_MAX = 4;
const HEADER = 5;
/** Float64 slots one histogram takes. */
export const HISTOGRAM_SLOTS = HEADER + BUCKETS;

/** 2^e for every exponent a bucket uses. */
const POW2 = Float64Array.from({ length: MAX_MSB + 2 }, (_, e) => 2 ** e);

function msb(v: number): number {
  return v < 0x1_0000_0000 ? 31 - Math.clz32(v) : 63 - Math.clz32(Math.floor(v / 0x1_0000_0000));
}

/** The bucket of a non-negative integer value. */
export function bucketOf(v: number): number {
  if (v < SUB) return v;
  const top = msb(v);
  if (top > MAX_MSB) return BUCKETS - 1;
  const e = top - SUB_BITS;
  // A shift where the value fits 32 bits (every latency under 4.3 s): Math.pow per I/O showed in profiles.
  const m = v < 0x1_0000_0000 ? v >>> e : Math.floor(v / POW2[e]!);
  return (e + 1) * SUB + (m - SUB);
}

/** The [low, high) range of values a bucket holds. */
export function bucketRange(i: number): [number, number] {
  if (i < SUB) return [i, i + 1];
  const e = Math.floor(i / SUB) - 1;
  const m = (i % SUB) + SUB;
  return [m * 2 ** e, (m + 1) * 2 ** e];
}

export class Histogram {
  readonly data: Float64Array;

  /**
   * A view of `HISTOGRAM_SLOTS` Float64s of `buffer` from `byteOffset` (a
   * fresh buffer by default). All zeroes is the empty histogram, so a view
   * never initializes anything: the reader may attach while the writer records.
   */
  constructor(buffer: ArrayBufferLike = new ArrayBuffer(HISTOGRAM_SLOTS * 8), byteOffset = 0) {
    this.data = new Float64Array(buffer, byteOffset, HISTOGRAM_SLOTS);
  }

  reset(): void {
    this.data.fill(0);
  }

  /** Records one value (nanoseconds, rounded to an integer). */
  record(value: number): void {
    const v = value < 0 ? 0 : Math.round(value);
    const d = this.data;
    d[HEADER + bucketOf(v)]!++;
    const n = ++d[F_COUNT]!;
    d[F_SUM]! += v;
    d[F_SUMSQ]! += v * v;
    if (n === 1 || v < d[F_MIN]!) d[F_MIN] = v;
    if (v > d[F_MAX]!) d[F_MAX] = v;
  }

  /** Adds another histogram's counts into this one. */
  add(other: Histogram): this {
    const d = this.data;
    const o = other.data;
    if (o[F_COUNT] === 0) return this;
    d[F_MIN] = d[F_COUNT] === 0 ? o[F_MIN]! : Math.min(d[F_MIN]!, o[F_MIN]!);
    d[F_MAX] = Math.max(d[F_MAX]!, o[F_MAX]!);
    for (let i = HEADER; i < HISTOGRAM_SLOTS; i++) d[i]! += o[i]!;
    d[F_COUNT]! += o[F_COUNT]!;
    d[F_SUM]! += o[F_SUM]!;
    d[F_SUMSQ]! += o[F_SUMSQ]!;
    return this;
  }

  get count(): number {
    return this.data[F_COUNT]!;
  }

  get min(): number {
    return this.data[F_MIN]!;
  }

  get max(): number {
    return this.data[F_MAX]!;
  }

  get mean(): number {
    return this.count === 0 ? 0 : this.data[F_SUM]! / this.count;
  }

  /** Population standard deviation, as fio reports it. */
  get stddev(): number {
    const n = this.count;
    if (n < 2) return 0;
    const m = this.mean;
    return Math.sqrt(Math.max(0, this.data[F_SUMSQ]! / n - m * m));
  }

  /** Count in bucket i. */
  bucket(i: number): number {
    return this.data[HEADER + i]!;
  }

  /**
   * The value below or at which `p` percent of the recorded values lie: the
   * midpoint of the bucket holding that rank, kept within [min, max].
   */
  percentile(p: number): number {
    const n = this.count;
    if (n === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.data[HEADER + i]!;
      if (seen >= rank) {
        const [lo, hi] = bucketRange(i);
        const mid = i < SUB ? lo : Math.floor((lo + hi) / 2);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }
}
