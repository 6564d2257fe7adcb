/**
 * The VFIO transport: a PCIe NVMe controller bound to vfio-pci, driven from
 * this process. BAR0 is mapped into the process and read and written as
 * memory (Atomics on a Uint32Array over the mapping: each access is one
 * 32-bit load or store, ordered after every earlier store, as doorbell writes
 * after SQE writes require); the DMA arena is mapped through the IOMMU at its
 * own IOVAs, so the PRPs the driver writes are what the device uses.
 *
 * Completions are found by polling: while commands are outstanding
 * (outstanding.ts counts them from the doorbells), every installed handler
 * runs from setImmediate, as an interrupt would run it; otherwise a slow,
 * unreferenced timer polls. MSI-X is not used yet.
 */
import type { Transport } from '../transport.js';
import type { DmaArena } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { loadVfio, type NativeVfio } from '../../uring/native.js';
import { Cap, Regs } from '../../spec/registers.js';
import { bitsOf } from '../../spec/layout.js';
import { Vectors } from '../vectors.js';
import { OutstandingCommands } from './outstanding.js';
import { normalizePciAddress, vfioGroupOf } from './sysfs.js';

/** PCI command register (config space 04h): memory space and bus master enable. */
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 1 << 1;
const PCI_COMMAND_MASTER = 1 << 2;
/** Poll period while nothing is counted as outstanding (an AER may still complete). */
const IDLE_POLL_MS = 10;
/** NVMe registers and doorbells: what BAR0 must hold at least. */
const MIN_BAR0 = 0x2000;

export interface VfioOptions {
  /** PCI address (0000:00:04.0, 00:04.0, pci:..., or the sysfs path). */
  pci: string;
  /** The IOMMU group device; found through sysfs by default. */
  group?: string;
}

export class VfioTransport implements Transport {
  readonly name = 'vfio';
  readonly polled = true;
  readonly pci: string;
  readonly group: string;
  private readonly regs: Uint32Array;
  private readonly vectors = new Vectors();
  private readonly handlers = this.vectors.handlers;
  private readonly outstanding: OutstandingCommands;
  private busyTimer: NodeJS.Immediate | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly arena: DmaArena,
    private readonly dev: NativeVfio,
    pci: string,
    group: string,
  ) {
    this.pci = pci;
    this.group = group;
    const bar = dev.bar0();
    if (bar.byteLength < MIN_BAR0) throw new NvmqError('NVMQ_VFIO', `BAR0 of ${pci} is ${bar.byteLength} bytes: too small for NVMe registers`);
    this.regs = new Uint32Array(bar);
    const stride = 4 << bitsOf(this.read32(Regs.CAP_HI.offset), Cap.DSTRD);
    this.outstanding = new OutstandingCommands(arena, stride);
  }

  /**
   * Opens `opts.pci` through VFIO, maps BAR0 and `arena` (at its IOVAs) and
   * enables bus mastering. On any failure everything opened so far is closed
   * and the error says, in one line, what to do.
   */
  static open(opts: VfioOptions, arena: DmaArena): VfioTransport {
    const pci = normalizePciAddress(opts.pci);
    const native = loadVfio();
    if ('reason' in native) throw new NvmqError('NVMQ_VFIO_UNAVAILABLE', `VFIO unavailable: ${native.reason}`);
    const group = opts.group ?? vfioGroupOf(pci);
    let dev: NativeVfio;
    try {
      dev = new native.Vfio(group, pci);
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      const code = errno === -13 || errno === -1 ? 'NVMQ_VFIO_PERMISSION' : errno === -2 ? 'NVMQ_VFIO_NO_GROUP' : 'NVMQ_VFIO';
      throw new NvmqError(code, `${pci}: ${(e as Error).message}`, { cause: e });
    }
    try {
      dev.mapDma(arena.bytes, arena.base);
      const cmd = dev.configRead(PCI_COMMAND, 2);
      if (cmd < 0 || dev.configWrite(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) !== 2) {
        throw new NvmqError('NVMQ_VFIO', `${pci}: cannot enable bus mastering in its PCI command register`);
      }
      const t = new VfioTransport(arena, dev, pci, group);
      if (t.read32(Regs.CSTS.offset) === 0xffffffff) throw new NvmqError('NVMQ_CONTROLLER_GONE', `${pci}: CSTS reads all ones: the device is gone or not responding`);
      return t;
    } catch (e) {
      dev.close();
      if (e instanceof NvmqError) throw e;
      throw new NvmqError('NVMQ_VFIO', `${pci}: ${(e as Error).message}`, { cause: e });
    }
  }

  read32(offset: number): number {
    return Atomics.load(this.regs, offset >> 2) >>> 0;
  }
  read64(offset: number): number {
    return this.read32(offset) + this.read32(offset + 4) * 0x1_0000_0000;
  }
  write32(offset: number, value: number): void {
    Atomics.store(this.regs, offset >> 2, value);
    this.outstanding.write32(offset, value >>> 0);
    this.schedule();
  }
  /** Low dword, then high (NVMe allows 32-bit accesses to 64-bit registers). */
  write64(offset: number, value: number): void {
    this.write32(offset, value % 0x1_0000_0000);
    this.write32(offset + 4, Math.floor(value / 0x1_0000_0000));
  }

  /** Runs every installed handler, as if each vector had been raised. */
  poll(): void {
    for (const v of this.handlers.keys()) this.vectors.raise(v);
  }

  setInterruptHandler(vector: number, handler: (() => void) | undefined): void {
    if (handler) this.handlers.set(vector, handler);
    else this.handlers.delete(vector);
    this.schedule();
  }

  /** Commands outstanding as counted from the doorbells. */
  get inflight(): number {
    return this.outstanding.count;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.outstanding.count > 0) {
      this.busyTimer ??= setImmediate(this.tick);
    } else if (this.handlers.size > 0 && !this.idleTimer) {
      this.idleTimer = setInterval(() => this.poll(), IDLE_POLL_MS);
      this.idleTimer.unref();
    }
  }

  private readonly tick = (): void => {
    this.busyTimer = undefined;
    if (this.closed) return;
    this.poll();
    // The handlers run from a microtask, after this: the next tick sees what they consumed.
    if (this.outstanding.count > 0) this.busyTimer = setImmediate(this.tick);
  };

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.busyTimer) clearImmediate(this.busyTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.handlers.clear();
    this.dev.close();
  }
}
