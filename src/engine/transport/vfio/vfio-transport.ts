/**
 * The VFIO transport: a PCIe NVMe controller bound to vfio-pci, driven from
 * this process. The thread that opens it owns the controller: its registers,
 * the admin queue, the DMA mapping and the MSI-X vectors. BAR0 is mapped
 * into the process (bar.ts). When the device has MSI-X, an eventfd is
 * attached to every vector (which enables MSI-X: QEMU's controller refuses
 * any vector but 0 until then) and completions arrive through them (the
 * driver creates each I/O CQ with IEN set and vector = its QID; the admin
 * queue's is vector 0); otherwise, or when VFIO cannot attach them, the
 * transport polls, and `completions` says why. INTMS / INTMC do not apply
 * to MSI-X. The DMA arena (a SharedArrayBuffer) is
 * mapped through the IOMMU at its own IOVAs, so the PRPs the driver writes
 * are what the device uses, in whichever thread wrote them. Other threads
 * ring their own I/O queues through mappings of their own
 * (thread-transport.ts), made from the device fd `threadHandle()` names,
 * and watch their own vector's eventfd.
 */
import type { Transport } from '../transport.js';
import type { DmaArena } from '../../dma-arena.js';
import { NvmqError } from '../../errors.js';
import { loadVfio, type NativeVfio, type NativeVfioInterrupt } from '../../uring/native.js';
import { Regs } from '../../spec/registers.js';
import { BarTransport, IDLE_POLL_MS } from './bar.js';
import { MsixVectors } from './msix.js';
import { normalizePciAddress, vfioGroupOf } from './sysfs.js';
import type { VfioThreadHandle } from './thread-transport.js';

/** PCI command register (config space 04h): memory space and bus master enable. */
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 1 << 1;
const PCI_COMMAND_MASTER = 1 << 2;

export interface VfioOptions {
  /** PCI address (0000:00:04.0, 00:04.0, pci:..., or the sysfs path). */
  pci: string;
  /** The IOMMU group device; found through sysfs by default. */
  group?: string;
}

export class VfioTransport extends BarTransport implements Transport {
  readonly pci: string;
  readonly group: string;
  /** How completions arrive, for a data path line: "MSI-X interrupts (N vectors)" or "polled: why". */
  completions = 'polled';
  /** The eventfd of each MSI-X vector (empty while polling). */
  private eventfds: Int32Array = new Int32Array(0);

  private constructor(
    arena: DmaArena,
    private readonly dev: NativeVfio,
    pci: string,
    group: string,
  ) {
    super(arena, dev.bar0(), pci, IDLE_POLL_MS);
    this.pci = pci;
    this.group = group;
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
      t.startMsix(native.VfioInterrupt);
      return t;
    } catch (e) {
      dev.close();
      if (e instanceof NvmqError) throw e;
      throw new NvmqError('NVMQ_VFIO', `${pci}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Attaches an eventfd to every MSI-X vector and handles completions through them; polls when it cannot (and says why). */
  private startMsix(Interrupt: new (eventfd: number) => NativeVfioInterrupt): void {
    let count: number;
    try {
      count = this.dev.msixCount();
      if (count === 0) {
        this.completions = 'polled: the device has no MSI-X';
        return;
      }
      this.eventfds = this.dev.enableMsix(count);
    } catch (e) {
      this.completions = `polled: MSI-X cannot be enabled (${(e as Error).message})`;
      return;
    }
    this.useMsix(new MsixVectors(Interrupt, this.eventfds, (v) => this.vectors.raise(v), this.pci));
    this.completions = `MSI-X interrupts (${count} vectors)`;
  }

  /** What another thread needs to ring its own I/O queue on this controller (structured-cloneable). */
  threadHandle(): VfioThreadHandle {
    const { bar0 } = this.dev.regions();
    return { kind: 'vfio', pci: this.pci, deviceFd: this.dev.deviceFd(), bar0: { offset: bar0.offset, size: bar0.size }, eventfds: [...this.eventfds], arena: this.arena.handle() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.stopPolling();
    this.dev.close();
  }
}
