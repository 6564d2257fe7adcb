/**
 * A namespace: an NSID, a logical block size, the backend holding its blocks
 * and its media state (shared by every thread executing the controller).
 */
import type { Backend } from './backends/backend.js';
import { MediaHealth } from './health.js';

export const SUPPORTED_LBA_SIZES = [512, 4096] as const;
export type LbaSize = (typeof SUPPORTED_LBA_SIZES)[number];

export interface NamespaceConfig {
  backend: Backend;
  /** Logical block size in bytes, 512 or 4096 (default 4096). */
  lbaSize?: LbaSize | undefined;
}

export class Namespace {
  readonly nsid: number;
  readonly lbaSize: number;
  /** log2(lbaSize), the LBADS of the namespace's only LBA format. */
  readonly lbaShift: number;
  /** NSZE: size in logical blocks. */
  readonly blocks: number;
  readonly backend: Backend;
  /** Position among the controller's namespaces: per-thread tables (a ring's operations) are indexed by it. */
  readonly index: number;
  /** Whether acknowledged data may have been lost (then the namespace is write protected and its flushes fail). */
  readonly media: MediaHealth;

  constructor(nsid: number, cfg: NamespaceConfig, index: number, media = MediaHealth.standalone()) {
    const lbaSize = cfg.lbaSize ?? 4096;
    if (!(SUPPORTED_LBA_SIZES as readonly number[]).includes(lbaSize)) {
      throw new RangeError(`namespace ${nsid}: LBA size must be 512 or 4096, got ${lbaSize}`);
    }
    if (cfg.backend.size < lbaSize) {
      throw new RangeError(`namespace ${nsid}: backend of ${cfg.backend.size} bytes holds no ${lbaSize}-byte block`);
    }
    this.nsid = nsid;
    this.lbaSize = lbaSize;
    this.lbaShift = Math.log2(lbaSize);
    // A trailing partial block is not addressable.
    this.blocks = Math.floor(cfg.backend.size / lbaSize);
    this.backend = cfg.backend;
    this.index = index;
    this.media = media;
  }

  /** Writes are refused with Namespace is Write Protected: opened read-only, or gone read-only after data may have been lost. */
  get writeProtected(): boolean {
    return this.backend.readOnly || this.media.lost;
  }
}
