import { TlpwireError, silentLogger, type Logger } from '../core/index.js';
import {
  PCI_CAP_ID,
  PCI_CFG,
  VIRTIO_COMMON,
  VIRTIO_F,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_CAP,
  VIRTIO_STATUS,
} from '../spec/index.js';
import { BarrierPolicy, type BarrierFlavour, type BarrierSite } from './barriers.js';
import { hasFeature } from './features.js';
import { SplitRingDriver, type DriverMemory, type IndirectAllocator } from './split-ring-driver.js';
import { splitRingFootprint, type SplitRingLayout } from './split-ring-layout.js';

/** The host CPU as the driver uses it: memory with barriers, and MMIO with Linux's ordering. */
export interface DriverCpu extends DriverMemory {
  mmioWrite(address: number, size: 1 | 2 | 4 | 8, value: number, relaxed: boolean): void;
  mmioRead(address: number, size: 1 | 2 | 4 | 8, relaxed: boolean): Promise<number>;
  write8(address: number, value: number): void;
}

/** Configuration requests to this one function. */
export interface FunctionConfigAccess {
  cfgRead(register: number): Promise<number>;
  cfgWrite(register: number, value: number, byteEnables: number): Promise<void>;
}

/** Host memory for rings and buffers: physical (CPU) addresses and what the device is given. */
export interface DmaMemory {
  /** Physically contiguous, zeroed memory; returns its CPU (physical) address. */
  allocate(bytes: number, align: number): number;
  free(cpu: number): void;
  /** The address the device must use for [cpu, cpu + bytes): an IOVA with ACCESS_PLATFORM. */
  map(cpu: number, bytes: number): number;
  unmap(dma: number, bytes: number): void;
}

export type DriverBarrierMode = 'auto' | 'weak' | 'strict';

export interface VirtioPciDriverOptions {
  cpu: DriverCpu;
  config: FunctionConfigAccess;
  /** Addresses the host assigned to the function's BARs. */
  barAddress(bar: number): number;
  /** Memory for rings with ACCESS_PLATFORM (IOVAs) and without it (physical). */
  dmaMemory(accessPlatform: boolean): DmaMemory;
  /** Feature bits the driver supports (device-type ones included). */
  supported: bigint;
  driverBarriers?: DriverBarrierMode;
  barrierOverrides?: Iterable<readonly [BarrierSite, BarrierFlavour]>;
  /** Largest queue size the driver will use (default 256). */
  queueSize?: number;
  /** MSI-X vectors: config and one per queue (queue q gets vector q + 1). Default true. */
  useMsix?: boolean;
  logger?: Logger;
  onBarrier?: (site: BarrierSite) => void;
}

export interface VirtioPciCaps {
  common: number;
  isr: number;
  device: number;
  notify: number;
  notifyMultiplier: number;
}

export interface VirtioDriverQueue {
  index: number;
  ring: SplitRingDriver<number>;
  layout: SplitRingLayout;
  notifyAddress: number;
}

export interface NegotiationReport {
  offered: bigint;
  negotiated: bigint;
  policy: BarrierPolicy;
  accessPlatform: boolean;
  orderPlatform: boolean;
}

const TWO_32 = 0x1_0000_0000;

/**
 * The driver side of the virtio PCI transport, following the spec's start-up sequence (§3.1.1):
 * reset and wait for 0, ACKNOWLEDGE, DRIVER, read the features and write the accepted subset,
 * FEATURES_OK and read it back, set up the queues, DRIVER_OK. It picks the ring barriers as
 * Linux does (strict when ORDER_PLATFORM is negotiated) unless overridden.
 */
export class VirtioPciDriver {
  private caps: VirtioPciCaps | undefined;
  private readonly log: Logger;
  queues: VirtioDriverQueue[] = [];
  report: NegotiationReport | undefined;

  constructor(private readonly opts: VirtioPciDriverOptions) {
    this.log = (opts.logger ?? silentLogger).child({ virtio: 'driver' });
  }

  /** Finds the virtio structures through the vendor capabilities in config space. */
  async findCaps(): Promise<VirtioPciCaps> {
    const found: Partial<Record<number, { bar: number; offset: number; capOffset: number }>> = {};
    const status = (await this.opts.config.cfgRead(PCI_CFG.COMMAND >> 2)) >>> 16;
    if ((status & 0x10) === 0) throw new TlpwireError('ERR_CONFIG', 'the function has no capability list');
    let ptr = (await this.opts.config.cfgRead(PCI_CFG.CAPABILITIES_POINTER >> 2)) & 0xfc;
    for (let hops = 0; ptr !== 0 && hops < 48; hops++) {
      const dw0 = await this.opts.config.cfgRead(ptr >> 2);
      const id = dw0 & 0xff;
      const next = (dw0 >>> 8) & 0xfc;
      if (id === PCI_CAP_ID.VENDOR_SPECIFIC) {
        const cfgType = (dw0 >>> 24) & 0xff;
        const dw1 = await this.opts.config.cfgRead((ptr + 4) >> 2);
        const offset = await this.opts.config.cfgRead((ptr + 8) >> 2);
        // The first capability of each type is the one to use (§4.1.4.1).
        if (found[cfgType] === undefined) found[cfgType] = { bar: dw1 & 0xff, offset, capOffset: ptr };
      }
      ptr = next;
    }
    const need = (t: number, name: string): { bar: number; offset: number; capOffset: number } => {
      const c = found[t];
      if (c === undefined) throw new TlpwireError('ERR_CONFIG', `no virtio ${name} capability: not a modern virtio device`);
      return c;
    };
    const common = need(VIRTIO_PCI_CAP.COMMON_CFG, 'common configuration');
    const isr = need(VIRTIO_PCI_CAP.ISR_CFG, 'ISR');
    const device = need(VIRTIO_PCI_CAP.DEVICE_CFG, 'device configuration');
    const notify = need(VIRTIO_PCI_CAP.NOTIFY_CFG, 'notification');
    const multiplier = await this.opts.config.cfgRead((notify.capOffset + 16) >> 2);
    const at = (c: { bar: number; offset: number }): number => this.opts.barAddress(c.bar) + c.offset;
    this.caps = { common: at(common), isr: at(isr), device: at(device), notify: at(notify), notifyMultiplier: multiplier };
    return this.caps;
  }

  /** Runs the start-up sequence; the device is live when it resolves. */
  async init(): Promise<NegotiationReport> {
    const caps = this.caps ?? (await this.findCaps());
    const cpu = this.opts.cpu;
    const C = VIRTIO_COMMON;
    const c = caps.common;
    const rd = (off: number, size: 1 | 2 | 4): Promise<number> => cpu.mmioRead(c + off, size, false);
    const wr = (off: number, size: 1 | 2 | 4, v: number): void => cpu.mmioWrite(c + off, size, v, false);

    wr(C.DEVICE_STATUS, 1, 0);
    for (let i = 0; (await rd(C.DEVICE_STATUS, 1)) !== 0; i++) {
      if (i > 1000) throw new TlpwireError('ERR_VIRTIO_FEATURES', 'device did not finish its reset');
    }
    let status = VIRTIO_STATUS.ACKNOWLEDGE;
    wr(C.DEVICE_STATUS, 1, status);
    status |= VIRTIO_STATUS.DRIVER;
    wr(C.DEVICE_STATUS, 1, status);

    wr(C.DEVICE_FEATURE_SELECT, 4, 0);
    const lo = await rd(C.DEVICE_FEATURE, 4);
    wr(C.DEVICE_FEATURE_SELECT, 4, 1);
    const hi = await rd(C.DEVICE_FEATURE, 4);
    const offered = (BigInt(hi) << 32n) | BigInt(lo);
    if (!hasFeature(offered, VIRTIO_F.VERSION_1)) {
      wr(C.DEVICE_STATUS, 1, status | VIRTIO_STATUS.FAILED);
      throw new TlpwireError('ERR_VIRTIO_FEATURES', 'the device does not offer VERSION_1 (legacy devices are not supported)');
    }
    const negotiated = offered & this.opts.supported;
    wr(C.DRIVER_FEATURE_SELECT, 4, 0);
    wr(C.DRIVER_FEATURE, 4, Number(negotiated & 0xffffffffn));
    wr(C.DRIVER_FEATURE_SELECT, 4, 1);
    wr(C.DRIVER_FEATURE, 4, Number(negotiated >> 32n));
    status |= VIRTIO_STATUS.FEATURES_OK;
    wr(C.DEVICE_STATUS, 1, status);
    if (((await rd(C.DEVICE_STATUS, 1)) & VIRTIO_STATUS.FEATURES_OK) === 0) {
      wr(C.DEVICE_STATUS, 1, status | VIRTIO_STATUS.FAILED);
      throw new TlpwireError('ERR_VIRTIO_FEATURES', 'the device refused the accepted features (FEATURES_OK did not stick)');
    }

    const accessPlatform = hasFeature(negotiated, VIRTIO_F.ACCESS_PLATFORM);
    const orderPlatform = hasFeature(negotiated, VIRTIO_F.ORDER_PLATFORM);
    const mode = this.opts.driverBarriers ?? 'auto';
    const driverFlavour: BarrierFlavour = mode === 'auto' ? (orderPlatform ? 'strict' : 'weak') : mode;
    const policy = new BarrierPolicy(driverFlavour, 'strict', this.opts.barrierOverrides ?? []);
    const mem = this.opts.dmaMemory(accessPlatform);
    const eventIdx = hasFeature(negotiated, VIRTIO_F.EVENT_IDX);
    const indirect = hasFeature(negotiated, VIRTIO_F.INDIRECT_DESC);

    const numQueues = await rd(C.NUM_QUEUES, 2);
    const useMsix = this.opts.useMsix ?? true;
    if (useMsix) {
      wr(C.CONFIG_MSIX_VECTOR, 2, 0);
      if ((await rd(C.CONFIG_MSIX_VECTOR, 2)) === VIRTIO_MSI_NO_VECTOR) {
        throw new TlpwireError('ERR_VIRTIO_FEATURES', 'the device refused MSI-X vector 0 for configuration changes');
      }
    }
    this.queues = [];
    for (let q = 0; q < numQueues; q++) {
      wr(C.QUEUE_SELECT, 2, q);
      const max = await rd(C.QUEUE_SIZE, 2);
      if (max === 0) continue;
      let size = Math.min(max, this.opts.queueSize ?? 256);
      size = 2 ** Math.floor(Math.log2(size));
      wr(C.QUEUE_SIZE, 2, size);
      const fp = splitRingFootprint(size);
      const cpuBase = mem.allocate(fp.bytes, 4096);
      const dmaBase = mem.map(cpuBase, fp.bytes);
      const layout: SplitRingLayout = {
        size,
        desc: { cpu: cpuBase + fp.descOff, dma: dmaBase + fp.descOff },
        avail: { cpu: cpuBase + fp.availOff, dma: dmaBase + fp.availOff },
        used: { cpu: cpuBase + fp.usedOff, dma: dmaBase + fp.usedOff },
      };
      const ring = new SplitRingDriver<number>(cpu, layout, {
        eventIdx,
        indirect,
        policy,
        indirectAllocator: indirectPool(mem),
        ...(this.opts.onBarrier === undefined ? {} : { onBarrier: this.opts.onBarrier }),
      });
      ring.initRing();
      for (const [off, v] of [
        [C.QUEUE_DESC_LO, layout.desc.dma],
        [C.QUEUE_DRIVER_LO, layout.avail.dma],
        [C.QUEUE_DEVICE_LO, layout.used.dma],
      ] as const) {
        wr(off, 4, v >>> 0);
        wr(off + 4, 4, Math.floor(v / TWO_32));
      }
      if (useMsix) {
        wr(C.QUEUE_MSIX_VECTOR, 2, q + 1);
        if ((await rd(C.QUEUE_MSIX_VECTOR, 2)) === VIRTIO_MSI_NO_VECTOR) {
          throw new TlpwireError('ERR_VIRTIO_FEATURES', `the device refused MSI-X vector ${q + 1} for queue ${q}`);
        }
      }
      const notifyOff = await rd(C.QUEUE_NOTIFY_OFF, 2);
      wr(C.QUEUE_ENABLE, 2, 1);
      this.queues.push({ index: q, ring, layout, notifyAddress: caps.notify + notifyOff * caps.notifyMultiplier });
    }
    status |= VIRTIO_STATUS.DRIVER_OK;
    wr(C.DEVICE_STATUS, 1, status);
    this.report = { offered, negotiated, policy, accessPlatform, orderPlatform };
    this.log.info({ offered: `0x${offered.toString(16)}`, negotiated: `0x${negotiated.toString(16)}`, barriers: policy.describe() }, 'virtio device ready');
    return this.report;
  }

  /** The doorbell: a 16-bit MMIO write of the queue index (ordered after the ring stores). */
  notify(queue: VirtioDriverQueue): void {
    this.opts.cpu.mmioWrite(queue.notifyAddress, 2, queue.index, false);
  }

  /** Reads the device status (to notice DEVICE_NEEDS_RESET after a config interrupt). */
  async deviceStatus(): Promise<number> {
    const caps = this.caps ?? (await this.findCaps());
    return this.opts.cpu.mmioRead(caps.common + VIRTIO_COMMON.DEVICE_STATUS, 1, false);
  }

  /** Reads `length` bytes of device configuration, retrying until config_generation is stable. */
  async readDeviceConfig(offset: number, length: number): Promise<Uint8Array> {
    const caps = this.caps ?? (await this.findCaps());
    const cpu = this.opts.cpu;
    for (;;) {
      const g0 = await cpu.mmioRead(caps.common + VIRTIO_COMMON.CONFIG_GENERATION, 1, false);
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = await cpu.mmioRead(caps.device + offset + i, 1, false);
      const g1 = await cpu.mmioRead(caps.common + VIRTIO_COMMON.CONFIG_GENERATION, 1, false);
      if (g0 === g1) return out;
    }
  }

  /** Resets the device (status 0). */
  reset(): void {
    if (this.caps !== undefined) this.opts.cpu.mmioWrite(this.caps.common + VIRTIO_COMMON.DEVICE_STATUS, 1, 0, false);
  }
}

/** Indirect tables from DMA memory, mapped once each. */
function indirectPool(mem: DmaMemory): IndirectAllocator {
  const live = new Map<number, { dma: number; bytes: number }>();
  return {
    alloc: (bytes) => {
      const cpu = mem.allocate(bytes, 16);
      const dma = mem.map(cpu, bytes);
      live.set(cpu, { dma, bytes });
      return { cpu, dma };
    },
    free: (cpu) => {
      const e = live.get(cpu);
      if (e === undefined) return;
      live.delete(cpu);
      mem.unmap(e.dma, e.bytes);
      mem.free(cpu);
    },
  };
}

