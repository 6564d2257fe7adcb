// Shared by the VFIO guest tests: running a command in the vfio-guest fixture (a QEMU guest whose NVMe
// controller is bound to vfio-pci behind an emulated IOMMU), and what a fixture that could not run means.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Each test boots a guest (about 15 s under TCG): only with NVMQ_LINUX_PEER=1. */
export const enabled = process.env.NVMQ_LINUX_PEER === '1';
/** In CI the peer must run: a skipped fixture (no QEMU, no kernel package) fails the test there. */
const mustRun = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== '0';
const fixture = fileURLToPath(new URL('../fixtures/linux-peer/vfio-guest.sh', import.meta.url));
export const root = fileURLToPath(new URL('../../', import.meta.url));

/** Runs the fixture with `env` (LP_GUEST_CMD and the rest), `share` shared writable with the guest. */
export function vfioGuest(share: string, env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(fixture, { cwd: root, env: { ...process.env, LP_SHARE_DIR: share, ...env }, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The fixture exited 77 (a prerequisite is missing): skip, saying why; in CI, fail. */
export function skipOrFail(skip: (why: string) => void, stderr: string): void {
  const why = `the linux-peer fixture skipped: ${stderr.trim().split('\n').pop()}`;
  if (mustRun) throw new Error(why);
  skip(why);
}
