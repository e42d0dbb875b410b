import { TlpwireError, errorMessage, silentLogger, type Clock, type Logger } from '../core/index.js';
import type { HostCpu, HostRam, Iommu, MmioPort, MmioSize } from '../memory/index.js';
import { NET_DEVICE_FEATURES, VirtioNetDriver, parseNetConfig } from '../net/index.js';
import type { EnumeratedFunction } from '../pci/index.js';
import { VIRTIO_F, VIRTIO_NET_CONFIG, VIRTIO_PCI, VIRTIO_STATUS } from '../spec/index.js';
import {
  VirtioPciDriver,
  featuresFromBits,
  type BarrierFlavour,
  type BarrierSite,
  type DmaMemory,
  type DriverBarrierMode,
  type NegotiationReport,
} from '../virtio/index.js';
import type { InterruptController } from './interrupts.js';
import type { RootPort } from './root-complex.js';

/** The transport features this driver understands, as Linux's virtio_pci_modern does. */
export const DRIVER_TRANSPORT_FEATURES = featuresFromBits([
  VIRTIO_F.VERSION_1,
  VIRTIO_F.ACCESS_PLATFORM,
  VIRTIO_F.ORDER_PLATFORM,
  VIRTIO_F.EVENT_IDX,
  VIRTIO_F.INDIRECT_DESC,
]);

export function isVirtioNet(fn: EnumeratedFunction): boolean {
  return fn.vendorId === VIRTIO_PCI.VENDOR_ID && fn.deviceId === VIRTIO_PCI.DEVICE_ID_BASE + 1;
}

/** MMIO from the host CPU model to one root port's requester. */
export function cpuMmioPort(port: RootPort): MmioPort {
  const req = port.tl.requester;
  const lost = (): void => {};
  return {
    write32: (address, value) => {
      req.cpuWrite(address, value, 4).catch(lost);
    },
    read32: (address) => req.cpuRead32(address),
    write: (address, size: MmioSize, value) => {
      if (size === 8) {
        req.cpuWrite(address, value >>> 0, 4).catch(lost);
        req.cpuWrite(address + 4, Math.floor(value / 0x1_0000_0000), 4).catch(lost);
      } else req.cpuWrite(address, value, size).catch(lost);
    },
    read: async (address, size: MmioSize) => {
      if (size === 8) return (await req.cpuRead32(address)) + (await req.cpuRead32(address + 4)) * 0x1_0000_0000;
      return req.cpuRead(address, size);
    },
  };
}

/**
 * Host memory for one function's rings and buffers. With ACCESS_PLATFORM the device gets IOVAs
 * mapped in the IOMMU for its requester ID; without it the device gets physical addresses, which
 * only work when the IOMMU does not translate for that device — otherwise this refuses clearly.
 */
export function functionDmaMemory(ram: HostRam, iommu: Iommu, requesterId: number, accessPlatform: boolean, log: Logger): DmaMemory {
  if (!accessPlatform && !iommu.isIdentity(requesterId)) {
    throw new TlpwireError(
      'ERR_VIRTIO_FEATURES',
      'the device does not use ACCESS_PLATFORM, so it would DMA to physical addresses, but the IOMMU translates for it: ' +
        'run the root complex with --iommu off (or passthrough), or let the device offer ACCESS_PLATFORM',
    );
  }
  log.info(
    { requesterId, addressing: accessPlatform ? 'iova' : 'physical', iommu: iommu.mode(requesterId) },
    accessPlatform ? 'DMA through the IOMMU (ACCESS_PLATFORM)' : 'DMA to physical addresses (no ACCESS_PLATFORM; the IOMMU passes this device through)',
  );
  return {
    allocate: (bytes, align) => {
      const a = ram.allocate(bytes, Math.max(align, 16));
      ram.fill(a, bytes, 0);
      return a;
    },
    free: (cpu) => {
      ram.free(cpu);
    },
    map: (cpu, bytes) => (accessPlatform ? iommu.dmaMap(requesterId, cpu, bytes, 'rw') : cpu),
    unmap: (dma) => {
      if (accessPlatform) iommu.dmaUnmap(requesterId, dma);
    },
  };
}

export interface VirtioNetHostOptions {
  port: RootPort;
  fn: EnumeratedFunction;
  cpu: HostCpu;
  ram: HostRam;
  iommu: Iommu;
  interrupts: InterruptController;
  clock: Clock;
  logger?: Logger;
  driverBarriers?: DriverBarrierMode;
  barrierOverrides?: Iterable<readonly [BarrierSite, BarrierFlavour]>;
  queueSize?: number;
  onBarrier?: (site: BarrierSite) => void;
}

/**
 * The root complex's side of one virtio-net card: the virtio PCI driver (start-up, features,
 * queues), the virtio-net driver over its rings, and the card's MSI-X vectors wired to them
 * (vector 0: configuration change; vector q + 1: queue q).
 */
export class VirtioNetHost {
  readonly driver: VirtioPciDriver;
  net: VirtioNetDriver | undefined;
  report: NegotiationReport | undefined;
  /** Set when the device asked for a reset (DEVICE_NEEDS_RESET) or the rings broke. */
  failure: string | undefined;
  onFailure: (reason: string) => void = () => {};
  private readonly log: Logger;

  constructor(private readonly o: VirtioNetHostOptions) {
    this.log = (o.logger ?? silentLogger).child({ fn: 'virtio-net', bdf: o.fn.bdf });
    const bars = new Map(o.fn.bars.map((b) => [b.index, b.address] as const));
    const req = o.port.tl.requester;
    this.driver = new VirtioPciDriver({
      cpu: o.cpu,
      config: {
        cfgRead: (reg) => req.cfgRead(o.fn.bdf, reg),
        cfgWrite: (reg, value, be) => req.cfgWrite(o.fn.bdf, reg, value, be),
      },
      barAddress: (bar) => {
        const a = bars.get(bar);
        if (a === undefined || a === null) throw new TlpwireError('ERR_CONFIG', `BAR ${bar} of ${o.fn.bdf} has no address`);
        return a;
      },
      dmaMemory: (ap) => functionDmaMemory(o.ram, o.iommu, o.fn.bdf, ap, this.log),
      supported: DRIVER_TRANSPORT_FEATURES | NET_DEVICE_FEATURES,
      ...(o.driverBarriers === undefined ? {} : { driverBarriers: o.driverBarriers }),
      ...(o.barrierOverrides === undefined ? {} : { barrierOverrides: o.barrierOverrides }),
      ...(o.queueSize === undefined ? {} : { queueSize: o.queueSize }),
      useMsix: (o.fn.msix?.vectors.length ?? 0) >= 3,
      logger: this.log,
      ...(o.onBarrier === undefined ? {} : { onBarrier: o.onBarrier }),
    });
  }

  /** Brings the device up: negotiation, queues, RX buffers posted. */
  async start(): Promise<VirtioNetDriver> {
    const report = await this.driver.init();
    this.report = report;
    const cfgBytes = await this.driver.readDeviceConfig(0, VIRTIO_NET_CONFIG.SIZE);
    const config = parseNetConfig(cfgBytes, report.negotiated);
    const [rxq, txq] = this.driver.queues;
    if (rxq === undefined || txq === undefined) throw new TlpwireError('ERR_NET', 'the device enabled fewer than two queues');
    const mem = functionDmaMemory(this.o.ram, this.o.iommu, this.o.fn.bdf, report.accessPlatform, silentLogger);
    const live = new Map<number, { dma: number; bytes: number }>();
    const cpu = this.o.cpu;
    const net = new VirtioNetDriver({
      rx: rxq.ring,
      tx: txq.ring,
      mem: { writeBytes: (a, d) => cpu.writeBytes(a, d), readBytes: (a, l) => cpu.readBytes(a, l) },
      allocator: {
        alloc: (bytes) => {
          const c = mem.allocate(bytes, 64);
          const dma = mem.map(c, bytes);
          live.set(c, { dma, bytes });
          return { cpu: c, dma };
        },
        free: (c) => {
          const e = live.get(c);
          if (e === undefined) return;
          live.delete(c);
          mem.unmap(e.dma, e.bytes);
          mem.free(c);
        },
      },
      features: report.negotiated,
      config,
      notify: (q) => {
        const queue = this.driver.queues[q];
        if (queue !== undefined) this.driver.notify(queue);
      },
      clock: this.o.clock,
      onError: (err) => this.fail(`virtio-net driver: ${err.message}`),
    });
    this.net = net;
    const vectors = this.o.fn.msix?.vectors ?? [];
    const handler = (v: number): void => {
      // The CPU takes the interrupt: loads in the handler see the DMA that preceded the MSI-X.
      cpu.interrupt();
      try {
        if (v === 0) void this.configInterrupt();
        else net.interrupt(v - 1);
      } catch (e) {
        this.fail(errorMessage(e));
      }
    };
    vectors.forEach((msg, i) => this.o.interrupts.setHandler(msg, () => handler(i)));
    net.start();
    return net;
  }

  private async configInterrupt(): Promise<void> {
    const status = await this.driver.deviceStatus();
    if ((status & VIRTIO_STATUS.DEVICE_NEEDS_RESET) !== 0) {
      this.fail('the device set DEVICE_NEEDS_RESET');
      return;
    }
    if (this.net !== undefined && this.report !== undefined) {
      const cfg = parseNetConfig(await this.driver.readDeviceConfig(0, VIRTIO_NET_CONFIG.SIZE), this.report.negotiated);
      this.net.setLinkUp(cfg.linkUp);
    }
  }

  private fail(reason: string): void {
    if (this.failure !== undefined) return;
    this.failure = reason;
    this.log.error({ reason }, 'virtio-net stopped');
    this.onFailure(reason);
  }
}
