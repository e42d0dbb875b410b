import { TlpwireError, errorMessage, silentLogger, type Logger } from '../core/index.js';
import { PciFunction, type BarRegion, type InterruptMessage } from '../pci/index.js';
import {
  PCI_CLASS,
  VIRTIO_COMMON,
  VIRTIO_F,
  VIRTIO_ISR,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI,
  VIRTIO_PCI_CAP,
  VIRTIO_PCI_CAP_LEN,
  VIRTIO_PCI_CFG_CAP_LEN,
  VIRTIO_PCI_NOTIFY_CAP_LEN,
  VIRTIO_STATUS,
} from '../spec/index.js';
import { BarrierPolicy, type BarrierSite } from './barriers.js';
import { featureBit, hasFeature } from './features.js';
import { SplitRingDevice, type DeviceMemory } from './split-ring-device.js';
import { isValidQueueSize } from './split-ring-layout.js';

/**
 * BAR 0 of a tlpwire virtio device (64-bit, prefetchable), one 4 KiB page per structure as
 * QEMU lays them out:
 *
 *   0x0000  common configuration   (virtio_pci_common_cfg)
 *   0x1000  ISR status             (1 byte, read to clear)
 *   0x2000  device configuration   (virtio_net_config for a NIC)
 *   0x3000  notifications          (queue q's doorbell at 0x3000 + q × 4)
 *
 * BAR 2 (32-bit) holds the MSI-X table at 0 and the PBA at 0x800.
 */
export const VIRTIO_BAR = 0;
export const VIRTIO_MSIX_BAR = 2;
export const VIRTIO_REGION = { COMMON: 0x0000, ISR: 0x1000, DEVICE: 0x2000, NOTIFY: 0x3000, SIZE: 0x4000 } as const;
export const VIRTIO_NOTIFY_OFF_MULTIPLIER = 4;

/** A virtio device type (net, …) behind the PCI transport. */
export interface VirtioDeviceImpl {
  readonly deviceId: number;
  /** Device-type feature bits offered (the transport adds its own). */
  readonly features: bigint;
  readonly numQueues: number;
  readonly maxQueueSize: number;
  readonly configSize: number;
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, data: Uint8Array): void;
  /** DRIVER_OK: the queues the driver enabled, and how to interrupt it. */
  start(ctx: VirtioStartContext): void;
  /** A doorbell for queue `queue`. */
  kick(queue: number): void;
  /** Device reset (status 0, FLR): drop all queue state. */
  reset(): void;
}

export interface VirtioStartContext {
  features: bigint;
  queues: (SplitRingDevice | undefined)[];
  /** Used buffers were published on `queue`: send its interrupt. */
  interrupt(queue: number): void;
  /** The driver gave nonsense: set DEVICE_NEEDS_RESET and raise a config interrupt. */
  needsReset(reason: string): void;
}

export interface VirtioPciDeviceOptions {
  impl: VirtioDeviceImpl;
  /** The device's DMA (its engine model): ring accesses and MSI-X writes go through it. */
  memory: DeviceMemory;
  /** Device-side barrier flavour (default strict). */
  deviceBarriers?: 'weak' | 'strict';
  /** Overrides of single barrier sites (stress runs). */
  barrierOverrides?: Iterable<readonly [BarrierSite, 'weak' | 'strict' | 'none']>;
  orderPlatform?: boolean;
  accessPlatform?: boolean;
  eventIdx?: boolean;
  indirectDesc?: boolean;
  serialNumber?: bigint;
  logger?: Logger;
  onBarrier?: (site: BarrierSite) => void;
}

interface QueueState {
  size: number;
  msixVector: number;
  enabled: boolean;
  desc: number;
  driver: number;
  device: number;
}

const U32 = 0x1_0000_0000;

/**
 * The device side of the virtio PCI transport: a PciFunction with the vendor capabilities
 * (common, notify with a multiplier, ISR, device-specific, PCI config access), the common
 * configuration with every field, config_generation, reset, per-queue and config MSI-X vectors.
 */
export class VirtioPciDevice {
  readonly pci: PciFunction;
  readonly offered: bigint;
  private readonly impl: VirtioDeviceImpl;
  private readonly log: Logger;
  private status = 0;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private driverFeatures = 0n;
  private negotiated = 0n;
  private configMsixVector = VIRTIO_MSI_NO_VECTOR;
  private queueSelect = 0;
  private configGeneration = 0;
  private isr = 0;
  private queues: QueueState[];
  private rings: (SplitRingDevice | undefined)[] = [];
  private readonly common = new Uint8Array(VIRTIO_COMMON.SIZE);
  private running = false;
  private readonly vectors: number;
  /** Why the device last asked for a reset, if it did. */
  needsResetReason: string | undefined;

  constructor(private readonly opts: VirtioPciDeviceOptions) {
    this.impl = opts.impl;
    this.log = (opts.logger ?? silentLogger).child({ virtio: 'device' });
    let f = featureBit(VIRTIO_F.VERSION_1) | this.impl.features;
    if (opts.accessPlatform ?? true) f |= featureBit(VIRTIO_F.ACCESS_PLATFORM);
    if (opts.orderPlatform ?? true) f |= featureBit(VIRTIO_F.ORDER_PLATFORM);
    if (opts.eventIdx ?? true) f |= featureBit(VIRTIO_F.EVENT_IDX);
    if (opts.indirectDesc ?? true) f |= featureBit(VIRTIO_F.INDIRECT_DESC);
    this.offered = f;
    this.queues = this.freshQueues();
    this.vectors = this.impl.numQueues + 1;

    const bar0: BarRegion = {
      read: (off, len) => this.barRead(off, len),
      write: (off, data) => this.barWrite(off, data),
      reset: () => this.reset(),
    };
    const cap = (cfgType: number, offset: number, length: number, capLen = VIRTIO_PCI_CAP_LEN, extra?: number): { length: number; body: Uint8Array } => {
      // body starts at cap byte 3: cfg_type, bar, id, padding[2], offset le32, length le32, [extra le32]
      const body = new Uint8Array(capLen - 3);
      const dv = new DataView(body.buffer);
      body[0] = cfgType;
      body[1] = VIRTIO_BAR;
      body[2] = 0;
      dv.setUint32(5, offset, true);
      dv.setUint32(9, length, true);
      if (extra !== undefined) dv.setUint32(13, extra, true);
      return { length: capLen, body };
    };
    this.pci = new PciFunction({
      vendorId: VIRTIO_PCI.VENDOR_ID,
      deviceId: VIRTIO_PCI.DEVICE_ID_BASE + this.impl.deviceId,
      revisionId: VIRTIO_PCI.MIN_REVISION,
      classCode: PCI_CLASS.NETWORK_ETHERNET,
      subsystemVendorId: VIRTIO_PCI.SUBSYSTEM_VENDOR_ID,
      subsystemId: 0x1100,
      bars: [
        { index: VIRTIO_BAR, kind: 'mem64', size: VIRTIO_REGION.SIZE, prefetchable: true, region: bar0 },
        { index: VIRTIO_MSIX_BAR, kind: 'mem32', size: 0x1000 },
      ],
      msix: { vectors: this.vectors, tableBar: VIRTIO_MSIX_BAR, tableOffset: 0, pbaBar: VIRTIO_MSIX_BAR, pbaOffset: 0x800 },
      ...(opts.serialNumber === undefined ? {} : { serialNumber: opts.serialNumber }),
      vendorCapabilities: [
        cap(VIRTIO_PCI_CAP.COMMON_CFG, VIRTIO_REGION.COMMON, 0x1000),
        cap(VIRTIO_PCI_CAP.ISR_CFG, VIRTIO_REGION.ISR, 0x1000),
        cap(VIRTIO_PCI_CAP.DEVICE_CFG, VIRTIO_REGION.DEVICE, 0x1000),
        cap(VIRTIO_PCI_CAP.NOTIFY_CFG, VIRTIO_REGION.NOTIFY, 0x1000, VIRTIO_PCI_NOTIFY_CAP_LEN, VIRTIO_NOTIFY_OFF_MULTIPLIER),
        cap(VIRTIO_PCI_CAP.PCI_CFG, 0, 0, VIRTIO_PCI_CFG_CAP_LEN),
      ],
    });
    this.setupPciCfgCap();
    this.pci.onReset = () => this.reset();
  }

  get deviceStatus(): number {
    return this.status;
  }

  get negotiatedFeatures(): bigint {
    return this.negotiated;
  }

  /** The device configuration changed (link status…): bump the generation, interrupt. */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    this.configInterrupt();
  }

  /** Sets DEVICE_NEEDS_RESET and tells the driver (a config interrupt). Stops the queues. */
  needsReset(reason: string): void {
    if ((this.status & VIRTIO_STATUS.DEVICE_NEEDS_RESET) !== 0) return;
    this.needsResetReason = reason;
    this.log.warn({ reason }, 'device needs reset');
    this.status |= VIRTIO_STATUS.DEVICE_NEEDS_RESET;
    this.running = false;
    this.configInterrupt();
  }

  private freshQueues(): QueueState[] {
    return Array.from({ length: this.impl.numQueues }, () => ({
      size: this.impl.maxQueueSize,
      msixVector: VIRTIO_MSI_NO_VECTOR,
      enabled: false,
      desc: 0,
      driver: 0,
      device: 0,
    }));
  }

  private reset(): void {
    if (this.running || this.status !== 0) this.log.debug('device reset');
    this.running = false;
    this.status = 0;
    this.driverFeatures = 0n;
    this.negotiated = 0n;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.configMsixVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
    this.isr = 0;
    this.queues = this.freshQueues();
    this.rings = [];
    this.needsResetReason = undefined;
    this.pci.setInterruptLevel(false);
    this.impl.reset();
  }

  // ---- BAR 0 ------------------------------------------------------------------------------

  private barRead(off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; ) {
      const a = off + i;
      const region = a & ~0xfff;
      const inRegion = a & 0xfff;
      const n = Math.min(len - i, 0x1000 - inRegion);
      if (region === VIRTIO_REGION.COMMON) {
        this.composeCommon();
        for (let k = 0; k < n; k++) out[i + k] = inRegion + k < this.common.length ? this.common[inRegion + k]! : 0;
      } else if (region === VIRTIO_REGION.ISR) {
        if (inRegion === 0) {
          out[i] = this.isr;
          // Reading ISR clears it and deasserts INTx (§4.1.4.5).
          this.isr = 0;
          this.pci.setInterruptLevel(false);
        }
      } else if (region === VIRTIO_REGION.DEVICE) {
        const avail = Math.max(0, Math.min(n, this.impl.configSize - inRegion));
        if (avail > 0) out.set(this.impl.readConfig(inRegion, avail), i);
      }
      i += n;
    }
    return out;
  }

  private barWrite(off: number, data: Uint8Array): void {
    const region = off & ~0xfff;
    const inRegion = off & 0xfff;
    if (region === VIRTIO_REGION.COMMON) this.commonWrite(inRegion, data);
    else if (region === VIRTIO_REGION.DEVICE) {
      const n = Math.max(0, Math.min(data.length, this.impl.configSize - inRegion));
      if (n > 0) this.impl.writeConfig(inRegion, data.subarray(0, n));
    } else if (region === VIRTIO_REGION.NOTIFY) {
      const q = inRegion / VIRTIO_NOTIFY_OFF_MULTIPLIER;
      if (Number.isInteger(q) && q < this.impl.numQueues && this.running) {
        try {
          this.impl.kick(q);
        } catch (e) {
          this.needsReset(errorMessage(e));
        }
      }
    }
  }

  private composeCommon(): void {
    const dv = new DataView(this.common.buffer);
    const C = VIRTIO_COMMON;
    const q = this.queues[this.queueSelect];
    dv.setUint32(C.DEVICE_FEATURE_SELECT, this.deviceFeatureSelect, true);
    dv.setUint32(C.DEVICE_FEATURE, this.deviceFeatureSelect < 2 ? Number((this.offered >> BigInt(32 * this.deviceFeatureSelect)) & 0xffffffffn) : 0, true);
    dv.setUint32(C.DRIVER_FEATURE_SELECT, this.driverFeatureSelect, true);
    dv.setUint32(C.DRIVER_FEATURE, this.driverFeatureSelect < 2 ? Number((this.driverFeatures >> BigInt(32 * this.driverFeatureSelect)) & 0xffffffffn) : 0, true);
    dv.setUint16(C.CONFIG_MSIX_VECTOR, this.configMsixVector, true);
    dv.setUint16(C.NUM_QUEUES, this.impl.numQueues, true);
    this.common[C.DEVICE_STATUS] = this.status;
    this.common[C.CONFIG_GENERATION] = this.configGeneration;
    dv.setUint16(C.QUEUE_SELECT, this.queueSelect, true);
    dv.setUint16(C.QUEUE_SIZE, q?.size ?? 0, true);
    dv.setUint16(C.QUEUE_MSIX_VECTOR, q?.msixVector ?? VIRTIO_MSI_NO_VECTOR, true);
    dv.setUint16(C.QUEUE_ENABLE, q?.enabled === true ? 1 : 0, true);
    dv.setUint16(C.QUEUE_NOTIFY_OFF, q === undefined ? 0 : this.queueSelect, true);
    for (const [lo, v] of [
      [C.QUEUE_DESC_LO, q?.desc ?? 0],
      [C.QUEUE_DRIVER_LO, q?.driver ?? 0],
      [C.QUEUE_DEVICE_LO, q?.device ?? 0],
    ] as const) {
      dv.setUint32(lo, v >>> 0, true);
      dv.setUint32(lo + 4, Math.floor(v / U32), true);
    }
    dv.setUint16(C.QUEUE_NOTIF_CONFIG_DATA, 0, true);
    dv.setUint16(C.QUEUE_RESET, 0, true);
  }

  private commonWrite(off: number, data: Uint8Array): void {
    this.composeCommon();
    const end = Math.min(off + data.length, this.common.length);
    if (off >= end) return;
    this.common.set(data.subarray(0, end - off), off);
    const dv = new DataView(this.common.buffer);
    const C = VIRTIO_COMMON;
    const touched = (at: number, width: number): boolean => off < at + width && end > at;
    const q = this.queues[this.queueSelect];
    if (touched(C.DEVICE_FEATURE_SELECT, 4)) this.deviceFeatureSelect = dv.getUint32(C.DEVICE_FEATURE_SELECT, true);
    if (touched(C.DRIVER_FEATURE_SELECT, 4)) this.driverFeatureSelect = dv.getUint32(C.DRIVER_FEATURE_SELECT, true);
    if (touched(C.DRIVER_FEATURE, 4) && this.driverFeatureSelect < 2 && (this.status & VIRTIO_STATUS.FEATURES_OK) === 0) {
      const shift = BigInt(32 * this.driverFeatureSelect);
      const word = BigInt(dv.getUint32(C.DRIVER_FEATURE, true));
      this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (word << shift);
    }
    if (touched(C.CONFIG_MSIX_VECTOR, 2)) {
      const v = dv.getUint16(C.CONFIG_MSIX_VECTOR, true);
      this.configMsixVector = v < this.vectors ? v : VIRTIO_MSI_NO_VECTOR;
    }
    if (touched(C.QUEUE_SELECT, 2)) this.queueSelect = dv.getUint16(C.QUEUE_SELECT, true);
    if (q !== undefined && !touched(C.QUEUE_SELECT, 2)) {
      if (touched(C.QUEUE_SIZE, 2) && !q.enabled) q.size = dv.getUint16(C.QUEUE_SIZE, true);
      if (touched(C.QUEUE_MSIX_VECTOR, 2)) {
        const v = dv.getUint16(C.QUEUE_MSIX_VECTOR, true);
        q.msixVector = v < this.vectors ? v : VIRTIO_MSI_NO_VECTOR;
      }
      if (!q.enabled) {
        const addr = (lo: number): number => dv.getUint32(lo, true) + dv.getUint32(lo + 4, true) * U32;
        if (touched(C.QUEUE_DESC_LO, 8)) q.desc = addr(C.QUEUE_DESC_LO);
        if (touched(C.QUEUE_DRIVER_LO, 8)) q.driver = addr(C.QUEUE_DRIVER_LO);
        if (touched(C.QUEUE_DEVICE_LO, 8)) q.device = addr(C.QUEUE_DEVICE_LO);
      }
      if (touched(C.QUEUE_ENABLE, 2) && dv.getUint16(C.QUEUE_ENABLE, true) === 1) q.enabled = true;
    }
    if (touched(C.DEVICE_STATUS, 1)) this.statusWrite(this.common[C.DEVICE_STATUS]!);
  }

  private statusWrite(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const before = this.status;
    let next = value | (before & VIRTIO_STATUS.DEVICE_NEEDS_RESET);
    if ((next & VIRTIO_STATUS.FEATURES_OK) !== 0 && (before & VIRTIO_STATUS.FEATURES_OK) === 0) {
      const problem = this.checkFeatures(this.driverFeatures);
      if (problem !== undefined) {
        this.log.warn({ problem }, 'driver features refused: FEATURES_OK not set');
        next &= ~VIRTIO_STATUS.FEATURES_OK;
      } else {
        this.negotiated = this.driverFeatures;
      }
    }
    this.status = next;
    if ((next & VIRTIO_STATUS.DRIVER_OK) !== 0 && (before & VIRTIO_STATUS.DRIVER_OK) === 0 && (next & VIRTIO_STATUS.FEATURES_OK) !== 0) {
      this.start();
    }
  }

  private checkFeatures(accepted: bigint): string | undefined {
    if ((accepted & ~this.offered) !== 0n) return `the driver accepted features the device did not offer (0x${(accepted & ~this.offered).toString(16)})`;
    if (!hasFeature(accepted, VIRTIO_F.VERSION_1)) return 'VERSION_1 not accepted: this device has no legacy interface';
    return undefined;
  }

  private start(): void {
    const eventIdx = hasFeature(this.negotiated, VIRTIO_F.EVENT_IDX);
    const indirect = hasFeature(this.negotiated, VIRTIO_F.INDIRECT_DESC);
    const policy = new BarrierPolicy('strict', this.opts.deviceBarriers ?? 'strict', this.opts.barrierOverrides ?? []);
    try {
      this.rings = this.queues.map((q) => {
        if (!q.enabled) return undefined;
        if (!isValidQueueSize(q.size) || q.size > this.impl.maxQueueSize) {
          throw new TlpwireError('ERR_VQ_INVALID', `queue size ${q.size} is not a power of two up to ${this.impl.maxQueueSize}`);
        }
        return new SplitRingDevice(this.opts.memory, {
          size: q.size,
          desc: q.desc,
          avail: q.driver,
          used: q.device,
          eventIdx,
          indirect,
          policy,
          ...(this.opts.onBarrier === undefined ? {} : { onBarrier: this.opts.onBarrier }),
        });
      });
    } catch (e) {
      this.needsReset(errorMessage(e));
      return;
    }
    this.running = true;
    this.impl.start({
      features: this.negotiated,
      queues: this.rings,
      interrupt: (queue) => this.queueInterrupt(queue),
      needsReset: (reason) => this.needsReset(reason),
    });
  }

  // ---- interrupts -----------------------------------------------------------------------------

  private queueInterrupt(queue: number): void {
    if (!this.running) return;
    const q = this.queues[queue];
    if (q === undefined) return;
    this.signal(VIRTIO_ISR.QUEUE, q.msixVector);
  }

  private configInterrupt(): void {
    this.signal(VIRTIO_ISR.CONFIG, this.configMsixVector);
  }

  private signal(isrBit: number, vector: number): void {
    if (this.pci.msix?.enabled === true) {
      if (vector === VIRTIO_MSI_NO_VECTOR) return;
      const msg = this.pci.raiseMsix(vector);
      if (msg !== null) this.sendMessage(msg);
      return;
    }
    this.isr |= isrBit;
    this.pci.setInterruptLevel(true);
  }

  /** MSI-X writes are device writes: they go through the device's DMA engine, in its order. */
  private sendMessage(msg: InterruptMessage): void {
    if (!this.pci.busMasterEnabled) return;
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, msg.data >>> 0, true);
    this.opts.memory.write(msg.address, b);
  }

  // ---- VIRTIO_PCI_CAP_PCI_CFG: BAR access through config space ---------------------------------

  private setupPciCfgCap(): void {
    const cap = this.pci.vendorCapabilities[4];
    if (cap === undefined) return;
    const space = this.pci.config;
    const base = cap.offset;
    // bar, offset, length and pci_cfg_data are driver-writable (§4.1.4.9).
    space.define(base + 4, 1, 0, { rw: 0xff });
    space.define(base + 8, 4, 0, { rw: 0xffffffff });
    space.define(base + 12, 4, 0, { rw: 0xffffffff });
    space.define(base + 16, 4, 0, { rw: 0xffffffff });
    const window = (): { bar: number; off: number; len: number } => ({
      bar: space.u8(base + 4),
      off: space.u32(base + 8),
      len: space.u32(base + 12),
    });
    const refresh = (): void => {
      const w = window();
      if (w.bar !== VIRTIO_BAR || (w.len !== 1 && w.len !== 2 && w.len !== 4) || w.off + w.len > VIRTIO_REGION.SIZE) return;
      const bytes = this.barRead(w.off, w.len);
      let v = 0;
      for (let i = 0; i < w.len; i++) v |= bytes[i]! << (8 * i);
      space.hwWrite(base + 16, 4, v >>> 0);
    };
    space.onWrite((base + 8) >> 2, refresh);
    space.onWrite((base + 12) >> 2, refresh);
    space.onWrite((base + 16) >> 2, () => {
      const w = window();
      if (w.bar !== VIRTIO_BAR || (w.len !== 1 && w.len !== 2 && w.len !== 4) || w.off + w.len > VIRTIO_REGION.SIZE) return;
      const v = space.u32(base + 16);
      const bytes = new Uint8Array(w.len);
      for (let i = 0; i < w.len; i++) bytes[i] = (v >>> (8 * i)) & 0xff;
      this.barWrite(w.off, bytes);
    });
  }
}
