import { TlpwireError, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import { DeviceEngine, type DmaPort, type MemoryPlatform } from '../memory/index.js';
import { NET_DEVICE_FEATURES, NET_NUM_QUEUES, VirtioNetDevice, type NetBackend } from '../net/index.js';
import { VIRTIO_ID, VIRTIO_NET_CONFIG } from '../spec/index.js';
import {
  VirtioPciDevice,
  type BarrierSite,
  type DeviceMemory,
  type VirtioDeviceImpl,
  type VirtioStartContext,
} from '../virtio/index.js';

export interface VirtioNetCardOptions {
  clock: Clock;
  rng: Rng;
  logger?: Logger;
  backend: NetBackend;
  mac?: Uint8Array;
  mtu?: number;
  /** How the card's DMA engine may reorder its writes and reads (default weak). */
  devicePlatform?: MemoryPlatform;
  deviceBarriers?: 'weak' | 'strict';
  barrierOverrides?: Iterable<readonly [BarrierSite, 'weak' | 'strict' | 'none']>;
  orderPlatform?: boolean;
  accessPlatform?: boolean;
  queueSize?: number;
  serialNumber?: bigint;
  /** Real runtime: emit DMA as soon as ordering allows (no artificial delays). Default true. */
  immediate?: boolean;
  onBarrier?: (site: BarrierSite) => void;
}

/**
 * A virtio-net card: the PCI function (virtio PCI transport) in front of the virtio-net device,
 * whose DMA goes through a device engine model. `bindDma` connects it to the endpoint's
 * requester once the endpoint exists.
 */
export class VirtioNetCard {
  readonly transport: VirtioPciDevice;
  readonly net: VirtioNetDevice;
  readonly engine: DeviceEngine;
  private port: DmaPort | undefined;
  private ctx: VirtioStartContext | undefined;

  constructor(opts: VirtioNetCardOptions) {
    const log = (opts.logger ?? silentLogger).child({ fn: 'virtio-net' });
    const proxy: DmaPort = {
      read: (a, l) => (this.port === undefined ? Promise.reject(new TlpwireError('ERR_LINK_DOWN', 'the card is not attached to an endpoint')) : this.port.read(a, l)),
      write: (a, d, o) => this.port?.write(a, d, o),
    };
    const immediate = opts.immediate ?? true;
    this.engine = new DeviceEngine({
      platform: opts.devicePlatform ?? 'weak',
      port: proxy,
      clock: opts.clock,
      rng: opts.rng,
      logger: log,
      ...(immediate ? { maxWriteResidenceNs: 0, readIssueDelayMaxNs: 0, readAheadBytes: 0 } : {}),
    });
    const engine = this.engine;
    const memory: DeviceMemory = {
      read: (a, l) => engine.read(a, l),
      write: (a, d) => engine.write(a, d),
      barrier: (k) => engine.barrier(k),
    };
    const mac = opts.mac ?? Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
    this.net = new VirtioNetDevice({
      mac,
      ...(opts.mtu === undefined ? {} : { mtu: opts.mtu }),
      backend: opts.backend,
      clock: opts.clock,
      memory,
      interrupt: (q) => this.ctx?.interrupt(q),
      onNeedsReset: (reason) => this.transport.needsReset(reason),
      onConfigChange: () => this.transport.configChanged(),
    });
    const net = this.net;
    const impl: VirtioDeviceImpl = {
      deviceId: VIRTIO_ID.NET,
      features: NET_DEVICE_FEATURES,
      numQueues: NET_NUM_QUEUES,
      maxQueueSize: opts.queueSize ?? 256,
      configSize: VIRTIO_NET_CONFIG.SIZE,
      readConfig: (off, len) => {
        const out = new Uint8Array(len);
        for (let i = 0; i < len; i++) out[i] = net.readConfig(off + i, 1);
        return out;
      },
      writeConfig: () => {
        // virtio-net's configuration is read-only for the driver.
      },
      start: (ctx) => {
        this.ctx = ctx;
        net.setFeatures(ctx.features);
        ctx.queues.forEach((ring, q) => {
          if (ring !== undefined) net.attachQueue(q, ring);
        });
        log.info({ features: `0x${ctx.features.toString(16)}` }, 'driver ready: queues live');
      },
      kick: (q) => net.kick(q),
      reset: () => {
        this.ctx = undefined;
        net.reset();
      },
    };
    this.transport = new VirtioPciDevice({
      impl,
      memory,
      logger: log,
      ...(opts.deviceBarriers === undefined ? {} : { deviceBarriers: opts.deviceBarriers }),
      ...(opts.barrierOverrides === undefined ? {} : { barrierOverrides: opts.barrierOverrides }),
      ...(opts.orderPlatform === undefined ? {} : { orderPlatform: opts.orderPlatform }),
      ...(opts.accessPlatform === undefined ? {} : { accessPlatform: opts.accessPlatform }),
      ...(opts.serialNumber === undefined ? {} : { serialNumber: opts.serialNumber }),
      ...(opts.onBarrier === undefined ? {} : { onBarrier: opts.onBarrier }),
    });
  }

  get pci() {
    return this.transport.pci;
  }

  /** Connects the card's DMA to the endpoint's requester for this function. */
  bindDma(port: DmaPort): void {
    this.port = port;
  }
}
