// The soak's verified I/O, shared by its pool task, its attached worker and the main thread: stamped 4 KiB
// blocks (magic, nsid, LBA, write sequence, region, checksum of the rest) written to and read back from a
// region that one participant owns, checked against a model in shared memory that survives the participant
// (a reset or a dying worker ends it mid-I/O).
//
// The model holds, per block, the sequences it may contain: a write is added as possible before it is
// submitted, and becomes the only one when it completes; a write that fails (or never completes, because
// its thread died) leaves both the old and the new content possible. A read that checks a block narrows
// its set to what it found. Sequence 0 is a block of zeroes (never written, or deallocated).

export const BS = 4096;
const MAGIC = 0x534f414b; // 'SOAK'
/** Ints per block in a model: the known content, then up to MAYBE more possible ones (EMPTY when unused). */
export const SLOTS = 4;
const MAYBE = SLOTS - 1;
const EMPTY = -1;
/** A block whose possible contents outgrew its slots: any correct stamp of its LBA and region, or zeroes. */
const ANY = -2;

/** Per-region counters (a Float64Array over shared memory, STRIDE entries per region). */
export const ST = {
  ios: 0, reads: 1, verified: 2, writes: 3, writesOk: 4, writesFailed: 5, deallocs: 6, flushes: 7,
  mismatches: 8, errors: 9, lastProgress: 10, inflight: 11, seq: 12, capacity: 13, resetErrors: 14, readsFailed: 15,
  timeouts: 16,
};
export const STRIDE = 17;
/** Per-region control words (an Int32Array, CSTRIDE per region): [0] stop, [1] 1 = exit the thread, 2 = throw. */
export const CSTRIDE = 2;

/** Fresh model for `blocks` blocks: every block zeroes. */
export function newModel(blocks) {
  const m = new Int32Array(new SharedArrayBuffer(blocks * SLOTS * 4)).fill(EMPTY);
  for (let b = 0; b < blocks; b++) m[b * SLOTS] = 0;
  return m;
}

function checksum(dv) {
  let h = 0x811c9dc5;
  for (let i = 24; i < BS; i += 4) h = Math.imul(h ^ dv.getUint32(i, true), 16777619) >>> 0;
  return h;
}

/** Writes the stamp of (nsid, lba, seq, region) into buf. */
export function stamp(buf, nsid, lba, seq, region) {
  const dv = new DataView(buf.buffer, buf.byteOffset, BS);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, nsid, true);
  dv.setUint32(8, lba, true);
  dv.setUint32(12, seq, true);
  dv.setUint32(16, region, true);
  let x = (Math.imul(lba + 1, 2654435761) ^ Math.imul(seq, 0x9e3779b1) ^ (nsid << 24) ^ region) >>> 0 || 1;
  for (let i = 24; i < BS; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    dv.setUint32(i, x, true);
  }
  dv.setUint32(20, checksum(dv), true);
}

/** What a block holds: { seq } (0 for zeroes) or { bad: reason }. */
export function inspect(buf, nsid, lba, region) {
  const dv = new DataView(buf.buffer, buf.byteOffset, BS);
  if (dv.getUint32(0, true) !== MAGIC) {
    for (let i = 0; i < BS; i += 4) if (dv.getUint32(i, true) !== 0) return { bad: 'no stamp and not zeroes' };
    return { seq: 0 };
  }
  if (dv.getUint32(4, true) !== nsid) return { bad: `nsid ${dv.getUint32(4, true)}` };
  if (dv.getUint32(8, true) !== lba) return { bad: `stamped for LBA ${dv.getUint32(8, true)}` };
  if (dv.getUint32(16, true) !== region) return { bad: `stamped by region ${dv.getUint32(16, true)}` };
  if (dv.getUint32(20, true) !== checksum(dv)) return { bad: 'checksum' };
  return { seq: dv.getUint32(12, true) };
}

/** The sequences block b may hold (null: any correct stamp). */
export function possible(model, b) {
  const o = b * SLOTS;
  if (model[o] === ANY) return null;
  const out = [model[o]];
  for (let i = 1; i <= MAYBE; i++) if (model[o + i] !== EMPTY) out.push(model[o + i]);
  return out;
}

/** Before a write (or deallocate, seq 0) is submitted: its content becomes possible. */
export function maybe(model, b, seq) {
  const o = b * SLOTS;
  if (model[o] === ANY || model[o] === seq) return;
  for (let i = 1; i <= MAYBE; i++) {
    if (model[o + i] === seq) return;
    if (model[o + i] === EMPTY) {
      model[o + i] = seq;
      return;
    }
  }
  model[o] = ANY;
}

/** The block is known to hold seq (a completed write, or what a check found). */
export function known(model, b, seq) {
  const o = b * SLOTS;
  model[o] = seq;
  for (let i = 1; i <= MAYBE; i++) model[o + i] = EMPTY;
}

/** Checks a block read back against the model; narrows the model to what it found. Returns null or a reason. */
export function check(model, b, buf, nsid, lba, region) {
  const got = inspect(buf, nsid, lba, region);
  if (got.bad) return got.bad;
  const may = possible(model, b);
  if (may && !may.includes(got.seq)) return `holds sequence ${got.seq}, expected ${may.join(' or ')}`;
  known(model, b, got.seq);
  return null;
}

/** xorshift32, seeded. */
export function rng(seed) {
  let x = seed >>> 0 || 0x2545f491;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

const codeOf = (e) => (e && typeof e === 'object' && 'code' in e ? String(e.code) : String(e?.name ?? e));

/**
 * Random verified I/O on one region until `deadline` (ms since the epoch) or a stop: `depth` lanes, each
 * one command at a time on a block no other lane holds. `io` adapts the caller's API:
 * { read(nsid, lba, buf), write(nsid, lba, buf), deallocate(nsid, lba), flush(nsid), alloc() }.
 * `ranges`: [{ nsid, model, first, count }] (LBAs first..first+count-1 of the namespace are this region's;
 * model index = lba). Returns error codes seen and the first mismatches; counters go to `stats`.
 * `control[region*CSTRIDE+1]` asks it to end its thread (1: process.exit with writes in flight) or throw (2).
 */
export async function runRegion(io, { region, ranges, stats, control, depth = 8, seed, deadline, stopOnReset = false, log = console.error }) {
  const s = region * STRIDE;
  const c = region * CSTRIDE;
  const rand = rng(seed);
  const busy = new Set();
  const codes = {};
  const mismatches = [];
  // A reset fails every command of this queue pair: with stopOnReset the lanes end rather than spin on it.
  let ended = null;
  const pick = () => {
    const r = ranges.length > 1 && rand() < 0.35 ? ranges[1] : ranges[0];
    for (;;) {
      const lba = r.first + Math.floor(rand() * r.count);
      const key = r.nsid * 2 ** 32 + lba;
      if (!busy.has(key)) return { r, lba, key };
    }
  };
  const progress = () => {
    stats[s + ST.ios]++;
    stats[s + ST.lastProgress] = Date.now();
  };
  const failed = (e, what) => {
    const code = codeOf(e);
    codes[code] = (codes[code] ?? 0) + 1;
    if (code === 'NVMQ_CONTROLLER_RESET') {
      stats[s + ST.resetErrors]++;
      if (stopOnReset) ended ??= 'reset';
    } else if (code === 'NVMQ_CAPACITY_EXCEEDED' && (what === 'write' || what === 'deallocate')) {
      // Out of space on the full disk: a write's new blocks; a deallocate too where holes cannot be punched
      // (without the native addon the file backend writes zeroes).
      stats[s + ST.capacity]++;
    } else if (code === 'NVMQ_TIMEOUT') {
      // Past its deadline (a frozen file system): aborted, or ended by the reset that followed. A write may
      // or may not have landed, as with a reset.
      stats[s + ST.timeouts]++;
    } else {
      // Anything else is a failure of the run: say what it was, from whichever thread saw it.
      if (stats[s + ST.errors]++ < 5) log(`soak: unexpected error on a ${what} (region ${region}): ${code}: ${e?.message ?? e}`);
    }
  };
  const inject = () => {
    const kind = Atomics.exchange(control, c + 1, 0);
    if (kind === 1) {
      // Writes in flight behind one doorbell, then the thread ends: none of them may be taken as done or lost.
      for (let i = 0; i < 4; i++) {
        const { r, lba } = pick();
        const seq = ++stats[s + ST.seq];
        maybe(r.model, lba, seq);
        stats[s + ST.writes]++;
        const buf = io.alloc();
        stamp(buf, r.nsid, lba, seq, region);
        io.write(r.nsid, lba, buf).catch(() => {});
      }
      process.exit(7);
    }
    if (kind === 2) ended ??= 'throw';
  };
  const lane = async () => {
    const buf = io.alloc();
    while (!ended && Date.now() < deadline && !Atomics.load(control, c)) {
      inject();
      if (ended) break;
      const { r, lba, key } = pick();
      busy.add(key);
      stats[s + ST.inflight]++;
      const x = rand();
      try {
        if (x < 0.45) {
          stats[s + ST.reads]++;
          buf.fill(0xee);
          try {
            await io.read(r.nsid, lba, buf);
          } catch (e) {
            stats[s + ST.readsFailed]++;
            failed(e, 'read');
            continue;
          }
          const bad = check(r.model, lba, buf, r.nsid, lba, region);
          if (bad) {
            stats[s + ST.mismatches]++;
            const m = { region, nsid: r.nsid, lba, reason: bad };
            if (mismatches.length < 10) mismatches.push(m);
            log(`soak: MISMATCH ${JSON.stringify(m)}`);
          } else stats[s + ST.verified]++;
          progress();
        } else if (x < 0.92) {
          const seq = ++stats[s + ST.seq];
          stamp(buf, r.nsid, lba, seq, region);
          maybe(r.model, lba, seq);
          stats[s + ST.writes]++;
          try {
            await io.write(r.nsid, lba, buf);
            known(r.model, lba, seq);
            stats[s + ST.writesOk]++;
          } catch (e) {
            stats[s + ST.writesFailed]++;
            failed(e, 'write');
          }
          progress();
        } else if (x < 0.98) {
          maybe(r.model, lba, 0);
          try {
            await io.deallocate(r.nsid, lba);
            known(r.model, lba, 0);
            stats[s + ST.deallocs]++;
          } catch (e) {
            failed(e, 'deallocate');
          }
          progress();
        } else {
          try {
            await io.flush(r.nsid);
            stats[s + ST.flushes]++;
          } catch (e) {
            failed(e, 'flush');
          }
          progress();
        }
      } finally {
        busy.delete(key);
        stats[s + ST.inflight]--;
      }
    }
  };
  await Promise.all(Array.from({ length: depth }, lane));
  if (ended === 'throw') throw Object.assign(new Error('soak: injected task failure'), { code: 'SOAK_INJECTED_THROW' });
  return { codes, mismatches, ended };
}
