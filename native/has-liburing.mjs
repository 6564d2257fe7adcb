#!/usr/bin/env node
// Prints 1 when a program using liburing compiles and links on this machine,
// else 0. binding.gyp reads it to decide whether the addon gets io_uring
// (native/ring.cc with NVMQ_HAVE_LIBURING, linked with -luring) or builds
// without it, in which case the engine uses its portable node:fs path.
//
//   NVMQ_NO_URING=1   answer 0 regardless (CI builds the addon that way too).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function probe() {
  if (process.env.NVMQ_NO_URING === '1') return false;
  const dir = mkdtempSync(join(tmpdir(), 'nvmq-uring-'));
  try {
    const src = join(dir, 'probe.c');
    writeFileSync(src, '#include <liburing.h>\nint main(void) { struct io_uring r; return io_uring_queue_init(1, &r, 0) == 12345; }\n');
    const cc = process.env.CC || 'cc';
    const res = spawnSync(cc, [src, '-o', join(dir, 'probe'), '-luring'], { stdio: 'ignore' });
    return res.status === 0;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

process.stdout.write(probe() ? '1' : '0');
