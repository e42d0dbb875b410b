import { errorMessage, silentLogger, type Logger } from '../core/index.js';
import { HostCpu, type MemoryPlatform, type MmioPort, type MmioSize } from '../memory/index.js';
import type { NetDevice } from '../net/index.js';
import { formatBdf } from '../pci/index.js';
import { VIRTIO_F, VIRTIO_NET_F } from '../spec/index.js';
import { featureBits, type DriverBarrierMode, type NegotiationReport } from '../virtio/index.js';
import { TrafficRun, type TrafficResult } from './net-traffic.js';
import type { RootComplex, RootPort } from './root-complex.js';
import type { FunctionDriver, HostFunctionContext } from './run-root-complex.js';
import { VirtioNetHost, cpuMmioPort, isVirtioNet } from './virtio-net-host.js';

const FEATURE_NAMES: Readonly<Record<number, string>> = {
  [VIRTIO_NET_F.CSUM]: 'CSUM',
  [VIRTIO_NET_F.GUEST_CSUM]: 'GUEST_CSUM',
  [VIRTIO_NET_F.MTU]: 'MTU',
  [VIRTIO_NET_F.MAC]: 'MAC',
  [VIRTIO_NET_F.MRG_RXBUF]: 'MRG_RXBUF',
  [VIRTIO_NET_F.STATUS]: 'STATUS',
  [VIRTIO_F.INDIRECT_DESC]: 'INDIRECT_DESC',
  [VIRTIO_F.EVENT_IDX]: 'EVENT_IDX',
  [VIRTIO_F.VERSION_1]: 'VERSION_1',
  [VIRTIO_F.ACCESS_PLATFORM]: 'ACCESS_PLATFORM',
  [VIRTIO_F.ORDER_PLATFORM]: 'ORDER_PLATFORM',
};

export function featureNames(f: bigint): string {
  return featureBits(f)
    .map((b) => FEATURE_NAMES[b] ?? `bit${b}`)
    .join(' ');
}

/** How the rc reports a negotiation, one line each. */
export function describeNegotiation(r: NegotiationReport, mode: DriverBarrierMode): string[] {
  const why =
    mode !== 'auto'
      ? `forced by --driver-barriers ${mode}`
      : r.orderPlatform
        ? 'ORDER_PLATFORM negotiated: a real PCI device needs the barriers of real I/O'
        : 'the device does not offer ORDER_PLATFORM: falling back to weak (virt_*) barriers, as Linux does';
  return [
    `  offered:    ${featureNames(r.offered)}`,
    `  negotiated: ${featureNames(r.negotiated)}`,
    `  barriers:   ${r.policy.driver} (${why})`,
    `  addressing: ${r.accessPlatform ? 'I/O virtual addresses through the IOMMU (ACCESS_PLATFORM)' : 'physical addresses (no ACCESS_PLATFORM)'}`,
  ];
}

/** Routes the host CPU's MMIO to the root port whose device decodes the address. */
class MmioRouter implements MmioPort {
  private readonly routes: { base: number; end: number; port: MmioPort }[] = [];

  add(base: number, size: number, port: RootPort): void {
    for (let i = this.routes.length - 1; i >= 0; i--) {
      const r = this.routes[i]!;
      if (r.base < base + size && base < r.end) this.routes.splice(i, 1);
    }
    this.routes.push({ base, end: base + size, port: cpuMmioPort(port) });
  }

  private find(address: number): MmioPort | undefined {
    return this.routes.find((r) => address >= r.base && address < r.end)?.port;
  }

  write32(address: number, value: number, relaxed: boolean): void {
    this.find(address)?.write32(address, value, relaxed);
  }
  read32(address: number): Promise<number> {
    return this.find(address)?.read32(address) ?? Promise.resolve(0xffffffff);
  }
  write(address: number, size: MmioSize, value: number, relaxed: boolean): void {
    this.find(address)?.write?.(address, size, value, relaxed);
  }
  read(address: number, size: MmioSize): Promise<number> {
    return this.find(address)?.read?.(address, size) ?? Promise.resolve(size === 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * size) - 1);
  }
}

export interface VirtioNetRcOptions {
  hostPlatform?: MemoryPlatform;
  driverBarriers?: DriverBarrierMode;
  /** on: devices that use ACCESS_PLATFORM are translated; off: no translation; passthrough: identity. */
  iommu?: 'on' | 'off' | 'passthrough';
  /** Checked test frames through the card and back after start-up. */
  traffic?: { frames: number; window?: number; timeoutMs?: number };
  /** Attach the driver's NetDevice to something (a TAP) after start-up. */
  attach?: (net: NetDevice, ctx: HostFunctionContext) => Promise<void> | void;
  out?: (line: string) => void;
  logger?: Logger;
}

/** Formats the traffic report. */
export function formatTrafficReport(r: TrafficResult): string[] {
  const s = r.elapsedNs / 1e9;
  const errors = r.corrupted + r.duplicate + r.outOfOrder + r.lost + r.foreign + (r.sent - r.received);
  const l = r.latencyNs;
  return [
    `  frames:     ${r.received} of ${r.sent} back (${r.ok} intact)`,
    `  bytes:      ${r.bytes}`,
    `  errors:     ${errors} (corrupted ${r.corrupted}, lost ${r.lost + r.sent - r.received}, duplicate ${r.duplicate}, out of order ${r.outOfOrder}, foreign ${r.foreign})`,
    `  rate:       ${(r.received / s).toFixed(0)} frames/s, ${((r.bytes * 8) / s / 1e6).toFixed(1)} Mbit/s each way`,
    `  round trip: p50 ${(l.p50 / 1e3).toFixed(0)} µs, p99 ${(l.p99 / 1e3).toFixed(0)} µs`,
  ];
}

/**
 * The root complex's virtio-net driver as a host FunctionDriver: the host CPU model (one per
 * root complex), the IOMMU policy, the virtio PCI start-up and the net driver, then an optional
 * checked traffic run through the card's loopback.
 */
export function virtioNetFunctionDriver(o: VirtioNetRcOptions = {}): FunctionDriver {
  const cpus = new WeakMap<RootComplex, { cpu: HostCpu; router: MmioRouter }>();
  const out = o.out ?? (() => {});
  return {
    name: 'virtio-net',
    matches: isVirtioNet,
    async run(ctx) {
      const log = (o.logger ?? ctx.logger ?? silentLogger).child({ fn: formatBdf(ctx.fn.bdf) });
      let entry = cpus.get(ctx.rc);
      if (entry === undefined) {
        const router = new MmioRouter();
        const cpu = new HostCpu({ platform: o.hostPlatform ?? 'weak', ram: ctx.rc.ram, clock: ctx.clock, rng: ctx.rng, mmio: router, maxStoreResidenceNs: 200_000, storeDelayNs: 1_000 });
        entry = { cpu, router };
        cpus.set(ctx.rc, entry);
      }
      for (const b of ctx.fn.bars) if (b.address !== null) entry.router.add(b.address, b.size, ctx.rootPort);
      const mode = o.iommu ?? 'on';
      ctx.rc.iommu.setMode(ctx.fn.bdf, mode === 'on' ? 'enabled' : mode === 'off' ? 'disabled' : 'passthrough');
      const host = new VirtioNetHost({
        port: ctx.rootPort,
        fn: ctx.fn,
        cpu: entry.cpu,
        ram: ctx.rc.ram,
        iommu: ctx.rc.iommu,
        interrupts: ctx.interrupts,
        clock: ctx.clock,
        logger: log,
        ...(o.driverBarriers === undefined ? {} : { driverBarriers: o.driverBarriers }),
      });
      const net = await host.start();
      const report = host.report!;
      out(`virtio-net ${formatBdf(ctx.fn.bdf)}: mac ${[...net.mac].map((b) => b.toString(16).padStart(2, '0')).join(':')}, mtu ${net.mtu}, link ${net.linkUp ? 'up' : 'down'}`);
      for (const line of describeNegotiation(report, o.driverBarriers ?? 'auto')) out(line);
      if (o.traffic !== undefined && o.traffic.frames > 0) {
        const frames = o.traffic.frames;
        out(`virtio-net ${formatBdf(ctx.fn.bdf)}: ${frames} checked frames through the card's backend and back`);
        let lastPct = -1;
        const run = new TrafficRun(net, {
          frames,
          window: o.traffic.window ?? 64,
          clock: ctx.clock,
          rng: ctx.rng,
          onProgress: (rcv, total) => {
            const pct = Math.floor((rcv / total) * 10) * 10;
            if (pct > lastPct && pct > 0) out(`  progress:   ${rcv}/${total} frames (${pct}%)`);
            lastPct = pct;
          },
        });
        let stop: (why: string) => void = () => {};
        const stopped = new Promise<string>((r) => (stop = r));
        host.onFailure = (reason) => stop(reason);
        const timer = setTimeout(() => stop('no progress: timed out'), o.traffic.timeoutMs ?? 60_000);
        const outcome = await Promise.race([run.finished.then(() => undefined), stopped]);
        clearTimeout(timer);
        const r = run.result();
        for (const line of formatTrafficReport(r)) out(line);
        const errors = r.corrupted + r.duplicate + r.outOfOrder + r.lost + r.foreign + (r.sent - r.received);
        if (outcome !== undefined) return { ok: false, text: outcome };
        if (errors > 0) return { ok: false, text: `${errors} frame errors` };
      }
      if (o.attach !== undefined) {
        try {
          await o.attach(net, ctx);
        } catch (e) {
          return { ok: false, text: errorMessage(e) };
        }
      }
      return { ok: true, text: `barriers ${report.policy.driver}` };
    },
  };
}
