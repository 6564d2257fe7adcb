// The power-cut test in short (bench/power-cut.mjs; `npm run power-cut` is the long run):
// nvmq writes stamped blocks in a QEMU guest with FUA and flushes, QEMU is SIGKILLed at a
// random moment, and every acknowledged block must be in the image; the negative control
// acknowledges writes it never flushes and must lose some. Boots four guests (about 20 s
// each under TCG), so it runs only with NVMQ_LINUX_PEER=1; the fixtures are found in
// NVMQ_LINUX_PEER_DIR (default test/fixtures/linux-peer). Needs `npm run build` first.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const enabled = process.env.NVMQ_LINUX_PEER === '1';
const script = fileURLToPath(new URL('../../bench/power-cut.mjs', import.meta.url));

function powerCut(args: string[]): { status: number | null; summary: Record<string, number>; stderr: string } {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 560_000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  return { status: r.status, summary: last.startsWith('{') ? JSON.parse(last) : {}, stderr: r.stderr };
}

describe.skipIf(!enabled)('power cuts of a QEMU guest writing through nvmq (NVMQ_LINUX_PEER=1: boots QEMU guests)', () => {
  it('2 cuts: no acknowledged block (FUA writes, flushed writes) is lost', ({ skip }) => {
    const r = powerCut(['--cuts', '2', '--min-run', '1', '--max-run', '4']);
    if (r.status === 77) skip('the linux-peer fixture skipped (no QEMU or kernel)');
    expect(r.status, r.stderr).toBe(0);
    expect(r.summary.losses).toBe(0);
    expect(r.summary.ackedBlocksChecked).toBeGreaterThan(0);
  }, 600_000);

  it('2 cuts of the negative control (acknowledged, never flushed): blocks are lost, so the check can fail', ({ skip }) => {
    const r = powerCut(['--cuts', '2', '--mode', 'noflush', '--expect-loss', '--min-run', '1', '--max-run', '4']);
    if (r.status === 77) skip('the linux-peer fixture skipped (no QEMU or kernel)');
    expect(r.status, r.stderr).toBe(0);
    expect(r.summary.losses).toBeGreaterThan(0);
  }, 600_000);
});
