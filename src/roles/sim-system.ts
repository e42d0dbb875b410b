import { SeededRng, TlpwireError, silentLogger, type Logger } from '../core/index.js';
import { createMemoryTransportPair } from '../link/index.js';
import { HostCpu, type MemoryPlatform } from '../memory/index.js';
import { LoopbackBackend, type VirtioNetDriver } from '../net/index.js';
import { TrafficRun, type TrafficResult } from './net-traffic.js';
import { PciDevice, enumerateDevice, type EnumerationResult } from '../pci/index.js';
import { VirtualClock } from '../sim/index.js';
import type { BarrierFlavour, BarrierSite, DriverBarrierMode } from '../virtio/index.js';
import { Endpoint } from './endpoint.js';
import { RootComplex, type RootPort } from './root-complex.js';
import { VirtioNetCard } from './virtio-net-card.js';
import { VirtioNetHost, cpuMmioPort, isVirtioNet } from './virtio-net-host.js';

export interface SimSystemOptions {
  seed: number;
  hostPlatform?: MemoryPlatform;
  devicePlatform?: MemoryPlatform;
  driverBarriers?: DriverBarrierMode;
  deviceBarriers?: 'weak' | 'strict';
  orderPlatform?: boolean;
  accessPlatform?: boolean;
  iommu?: 'enabled' | 'disabled';
  /** Overrides of single sites (ablation). */
  barrierOverrides?: readonly (readonly [BarrierSite, BarrierFlavour])[];
  /** Adversarial ordering queues on both sides (default true). */
  adversarial?: boolean;
  queueSize?: number;
  logger?: Logger;
  onBarrier?: (site: BarrierSite) => void;
}

/**
 * A root complex and a virtio-net endpoint in one process, linked in memory, on a virtual clock
 * with a seeded random source: every run is a function of its options and seed. The host CPU and
 * the card's DMA engine use the chosen memory platforms; the ordering queues (adversarial by
 * default) perform every reordering the PCIe table allows.
 */
export class SimSystem {
  readonly clock = new VirtualClock();
  readonly rng: SeededRng;
  readonly rc: RootComplex;
  readonly ep: Endpoint;
  readonly card: VirtioNetCard;
  readonly cpu: HostCpu;
  host: VirtioNetHost | undefined;
  port: RootPort | undefined;
  enumeration: EnumerationResult | undefined;

  constructor(readonly o: SimSystemOptions) {
    this.rng = new SeededRng(o.seed);
    const log = o.logger ?? silentLogger;
    const adversarial = o.adversarial ?? true;
    const ordering = adversarial ? ({ mode: 'adversarial', holdBack: { probability: 0.2, maxNs: 2_000 } } as const) : ({ mode: 'in-order' } as const);
    this.rc = new RootComplex({
      clock: this.clock,
      rng: this.rng.fork(),
      logger: log,
      memoryBytes: 16 << 20,
      iommuMode: o.iommu ?? (o.accessPlatform === false ? 'disabled' : 'enabled'),
      ordering,
    });
    this.cpu = new HostCpu({ platform: o.hostPlatform ?? 'weak', ram: this.rc.ram, clock: this.clock, rng: this.rng.fork() });
    const backend = new LoopbackBackend(this.clock);
    this.card = new VirtioNetCard({
      clock: this.clock,
      rng: this.rng.fork(),
      logger: log,
      backend,
      devicePlatform: o.devicePlatform ?? 'weak',
      immediate: false,
      ...(o.deviceBarriers === undefined ? {} : { deviceBarriers: o.deviceBarriers }),
      ...(o.barrierOverrides === undefined ? {} : { barrierOverrides: o.barrierOverrides }),
      ...(o.orderPlatform === undefined ? {} : { orderPlatform: o.orderPlatform }),
      ...(o.accessPlatform === undefined ? {} : { accessPlatform: o.accessPlatform }),
      ...(o.onBarrier === undefined ? {} : { onBarrier: o.onBarrier }),
    });
    this.ep = new Endpoint({ clock: this.clock, rng: this.rng.fork(), logger: log, device: new PciDevice([this.card.pci]), ordering });
    this.card.bindDma(this.ep.dmaPort(0));
  }

  /** Runs the virtual clock, letting promise chains settle between slices, until `done()`. */
  async run(done: () => boolean, maxEvents = 50_000_000): Promise<boolean> {
    let idle = 0;
    const start = this.clock.eventsRun;
    while (!done()) {
      if (this.clock.eventsRun - start > maxEvents) return false;
      const n = this.clock.run({ maxEvents: 32 });
      await new Promise<void>((r) => setImmediate(r));
      if (n === 0 && this.clock.pending === 0) {
        if (++idle > 3) return done();
      } else idle = 0;
    }
    return true;
  }

  /** Waits for a promise while the simulation runs. */
  async settle<T>(p: Promise<T>, maxEvents?: number): Promise<T> {
    let state: { ok: true; v: T } | { ok: false; e: unknown } | undefined;
    p.then(
      (v) => (state = { ok: true, v }),
      (e: unknown) => (state = { ok: false, e }),
    );
    await this.run(() => state !== undefined, maxEvents);
    if (state === undefined) throw new TlpwireError('ERR_LINK_TIMEOUT', 'simulation stalled before the operation finished');
    if (!state.ok) throw state.e;
    return state.v;
  }

  /** Link training, enumeration, virtio start-up: resolves with the driver's NetDevice. */
  async bringUp(): Promise<VirtioNetDriver> {
    const [a, b] = createMemoryTransportPair(this.clock, { latencyNs: 500 });
    const port = this.rc.attach(a);
    this.ep.attach(b);
    this.port = port;
    await this.settle(port.stack.link.whenUp());
    const access = {
      cfgRead: (bdf: number, reg: number) => port.tl.requester.cfgRead(bdf, reg),
      cfgWrite: (bdf: number, reg: number, v: number, be: number) => port.tl.requester.cfgWrite(bdf, reg, v, be),
    };
    const r = port.tl.requester;
    this.enumeration = await this.settle(
      enumerateDevice(access, {
        bus: port.bus,
        mmio: { write32: (a2, v) => r.cpuWrite(a2, v, 4), read32: (a2) => r.cpuRead32(a2) },
        interrupts: this.rc.interrupts,
      }),
    );
    const fn = this.enumeration.functions.find(isVirtioNet);
    if (fn === undefined) throw new TlpwireError('ERR_CONFIG', 'no virtio-net function enumerated');
    this.cpu.attachMmio(cpuMmioPort(port));
    this.host = new VirtioNetHost({
      port,
      fn,
      cpu: this.cpu,
      ram: this.rc.ram,
      iommu: this.rc.iommu,
      interrupts: this.rc.interrupts,
      clock: this.clock,
      ...(this.o.driverBarriers === undefined ? {} : { driverBarriers: this.o.driverBarriers }),
      ...(this.o.barrierOverrides === undefined ? {} : { barrierOverrides: this.o.barrierOverrides }),
      ...(this.o.queueSize === undefined ? {} : { queueSize: this.o.queueSize }),
      ...(this.o.onBarrier === undefined ? {} : { onBarrier: this.o.onBarrier }),
    });
    return this.settle(this.host.start());
  }

  /**
   * Sends `frames` test frames through the card's loopback and back, keeping `window` in
   * flight; returns the checker's summary. Stops early when the device or driver fails.
   */
  async traffic(net: VirtioNetDriver, frames: number, window = 32, sizes = { min: 60, max: 1514 }): Promise<TrafficResult & { failure: string | undefined }> {
    const run = new TrafficRun(net, { frames, window, sizes, clock: this.clock, rng: this.rng.fork() });
    const failed = (): string | undefined => this.host?.failure ?? this.card.transport.needsResetReason;
    await this.run(() => run.done || failed() !== undefined);
    return { ...run.result(), failure: failed() };
  }
}
