/**
 * Every barrier in the ring code is a named site. The flavour at a site is chosen by feature
 * negotiation (ORDER_PLATFORM ⇒ strict, as Linux's `weak_barriers = !ORDER_PLATFORM`) unless a
 * stress run overrides one site: that is what makes the ablation table possible.
 */

/** Linux's barrier primitives, as the host CPU model implements them. */
export type CpuBarrier =
  | 'smp_wmb'
  | 'smp_rmb'
  | 'smp_mb'
  | 'virt_wmb'
  | 'virt_rmb'
  | 'virt_mb'
  | 'dma_wmb'
  | 'dma_rmb'
  | 'wmb'
  | 'rmb'
  | 'mb';

/** Barriers of the device's DMA engine; virt_* are a CPU-built device's SMP barriers (vringh's weak mode). */
export type DeviceBarrier = 'rmb' | 'wmb' | 'mb' | 'virt_rmb' | 'virt_wmb' | 'virt_mb';

export type BarrierFlavour = 'weak' | 'strict' | 'none';

/** What a site orders: stores before stores, loads before loads, or everything. */
export type BarrierOrder = 'w' | 'r' | 'rw';

export interface BarrierSiteInfo {
  side: 'driver' | 'device';
  order: BarrierOrder;
  /** What it orders and which site it pairs with. */
  why: string;
}

/** The split-ring sites, with the pairing each one is half of (see drivers/virtio/virtio_ring.c, drivers/vhost/vringh.c). */
export const BARRIER_SITES = {
  'driver.add.wmb-before-avail-idx': {
    side: 'driver',
    order: 'w',
    why: 'descriptors and avail ring entry before avail.idx (pairs with device.pop.rmb-after-avail-idx)',
  },
  'driver.kick.mb-before-event-check': {
    side: 'driver',
    order: 'rw',
    why: 'avail.idx store before reading avail_event / used.flags (pairs with device.enable-notify.mb-before-avail-recheck)',
  },
  'driver.get.rmb-after-used-idx': {
    side: 'driver',
    order: 'r',
    why: 'used.idx before the used element and the buffer it names (pairs with device.push.wmb-before-used-idx)',
  },
  'driver.get.mb-after-used-event': {
    side: 'driver',
    order: 'rw',
    why: 'used_event store before the next used.idx read (pairs with device.notify.mb-before-event-check)',
  },
  'driver.enable-cb.mb-before-used-recheck': {
    side: 'driver',
    order: 'rw',
    why: 'used_event / NO_INTERRUPT store before re-reading used.idx (pairs with device.notify.mb-before-event-check)',
  },
  'device.pop.rmb-after-avail-idx': {
    side: 'device',
    order: 'r',
    why: 'avail.idx before the avail ring entry and descriptors (pairs with driver.add.wmb-before-avail-idx)',
  },
  'device.push.wmb-before-used-idx': {
    side: 'device',
    order: 'w',
    why: 'buffer data and used element before used.idx (pairs with driver.get.rmb-after-used-idx)',
  },
  'device.notify.mb-before-event-check': {
    side: 'device',
    order: 'rw',
    why: 'used.idx store before reading used_event / avail.flags, and before the interrupt (pairs with driver.enable-cb.mb-before-used-recheck)',
  },
  'device.enable-notify.mb-before-avail-recheck': {
    side: 'device',
    order: 'rw',
    why: 'avail_event / used.flags store before re-reading avail.idx (pairs with driver.kick.mb-before-event-check)',
  },
} as const satisfies Record<string, BarrierSiteInfo>;

export type BarrierSite = keyof typeof BARRIER_SITES;

export const BARRIER_SITE_NAMES = Object.keys(BARRIER_SITES) as BarrierSite[];

export function isBarrierSite(name: string): name is BarrierSite {
  return Object.prototype.hasOwnProperty.call(BARRIER_SITES, name);
}

/** The CPU primitive Linux uses at a driver site for a flavour (virtio_wmb/virtio_rmb/virtio_mb). */
export function cpuBarrierFor(order: BarrierOrder, flavour: BarrierFlavour): CpuBarrier | undefined {
  if (flavour === 'none') return undefined;
  if (flavour === 'weak') return order === 'w' ? 'virt_wmb' : order === 'r' ? 'virt_rmb' : 'virt_mb';
  return order === 'w' ? 'dma_wmb' : order === 'r' ? 'dma_rmb' : 'mb';
}

/**
 * The device engine barrier for a flavour. A device's "weak" barriers are SMP barriers of the
 * device's own CPU (vringh's virtio_* with weak_barriers), which order its DMA only where the
 * device platform is TSO.
 */
export function deviceBarrierFor(order: BarrierOrder, flavour: BarrierFlavour): DeviceBarrier | undefined {
  if (flavour === 'none') return undefined;
  if (flavour === 'weak') return order === 'w' ? 'virt_wmb' : order === 'r' ? 'virt_rmb' : 'virt_mb';
  return order === 'w' ? 'wmb' : order === 'r' ? 'rmb' : 'mb';
}

/** Chooses a flavour per site: a default for each side plus per-site overrides. */
export class BarrierPolicy {
  private readonly overrides = new Map<BarrierSite, BarrierFlavour>();

  constructor(
    readonly driver: BarrierFlavour,
    readonly device: BarrierFlavour,
    overrides: Iterable<readonly [BarrierSite, BarrierFlavour]> = [],
  ) {
    for (const [site, f] of overrides) this.overrides.set(site, f);
  }

  flavour(site: BarrierSite): BarrierFlavour {
    return this.overrides.get(site) ?? (BARRIER_SITES[site].side === 'driver' ? this.driver : this.device);
  }

  /** Linux's rule: strict barriers iff ORDER_PLATFORM was negotiated. */
  static forNegotiation(orderPlatform: boolean, device: BarrierFlavour = 'strict'): BarrierPolicy {
    return new BarrierPolicy(orderPlatform ? 'strict' : 'weak', device);
  }

  withOverride(site: BarrierSite, flavour: BarrierFlavour): BarrierPolicy {
    return new BarrierPolicy(this.driver, this.device, [...this.overrides, [site, flavour]]);
  }

  describe(): string {
    const parts = [`driver ${this.driver}`, `device ${this.device}`];
    for (const [s, f] of this.overrides) parts.push(`${s}=${f}`);
    return parts.join(', ');
  }
}
