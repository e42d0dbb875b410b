import { describe, expect, it } from 'vitest';
import { SimSystem, type SimSystemOptions } from '../../src/roles/index.js';
import { isTlpwireError } from '../../src/core/index.js';

/** Runs frames through the simulated rc ↔ ep virtio-net loopback; says whether anything went wrong. */
async function run(o: SimSystemOptions, frames: number) {
  const sys = new SimSystem(o);
  const net = await sys.bringUp();
  const r = await sys.traffic(net, frames);
  const bad = r.corrupted + r.foreign + r.duplicate + r.lost + r.outOfOrder;
  const stalled = r.received < frames;
  return { sys, r, detected: bad > 0 || r.failure !== undefined || stalled };
}

describe('virtio-net across the simulated PCIe link (rc and ep in one process, adversarial ordering)', () => {
  it('strict barriers (ORDER_PLATFORM negotiated) carry every frame intact on weak host and weak device', async () => {
    for (const seed of [1, 2, 3]) {
      const { sys, r, detected } = await run({ seed, hostPlatform: 'weak', devicePlatform: 'weak' }, 250);
      expect(sys.host?.report?.orderPlatform).toBe(true);
      expect(sys.host?.report?.policy.driver).toBe('strict');
      expect(r.failure).toBeUndefined();
      expect(r.ok).toBe(250);
      expect(detected).toBe(false);
    }
  }, 120_000);

  it('weak barriers on weak platforms are caught: corruption, a stall or a reset, for every seed tried', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const { detected } = await run({ seed, hostPlatform: 'weak', devicePlatform: 'weak', driverBarriers: 'weak', deviceBarriers: 'weak' }, 300);
      expect(detected).toBe(true);
    }
  }, 120_000);

  it('weak barriers pass on tso platforms (the hypervisor case)', async () => {
    for (const seed of [1, 2]) {
      const { r, detected } = await run({ seed, hostPlatform: 'tso', devicePlatform: 'tso', driverBarriers: 'weak', deviceBarriers: 'weak' }, 250);
      expect(r.failure).toBeUndefined();
      expect(detected).toBe(false);
    }
  }, 120_000);

  it('a device without ORDER_PLATFORM makes the driver fall back to weak barriers', async () => {
    const sys = new SimSystem({ seed: 5, orderPlatform: false, hostPlatform: 'tso', devicePlatform: 'tso' });
    await sys.bringUp();
    expect(sys.host?.report?.orderPlatform).toBe(false);
    expect(sys.host?.report?.policy.driver).toBe('weak');
  }, 60_000);

  it('without ACCESS_PLATFORM the driver refuses when the IOMMU translates, and works when it is off', async () => {
    const refused = new SimSystem({ seed: 6, accessPlatform: false, iommu: 'enabled' });
    await expect(refused.bringUp()).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_VIRTIO_FEATURES') && /--iommu off/.test(e.message));
    const { r, detected } = await run({ seed: 6, accessPlatform: false, iommu: 'disabled' }, 100);
    expect(r.ok).toBe(100);
    expect(detected).toBe(false);
  }, 60_000);

  it('with ACCESS_PLATFORM the device sees I/O virtual addresses, and DMA outside the mappings gets UR and a fault', async () => {
    const sys = new SimSystem({ seed: 7 });
    const net = await sys.bringUp();
    expect(sys.host?.report?.accessPlatform).toBe(true);
    const rid = sys.enumeration!.functions[0]!.bdf;
    expect(sys.rc.iommu.mode(rid)).toBe('enabled');
    expect(sys.rc.iommu.mappedBytes(rid)).toBeGreaterThan(0);
    const r = await sys.traffic(net, 50);
    expect(r.ok).toBe(50);
    // the card reads an address nobody mapped for it
    const read = sys.ep.dmaPort(0).read(0x40_0000_0000, 64);
    await expect(sys.settle(read)).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_CPL_UR'));
    expect(sys.rc.counters.get('iommu.fault')).toBeGreaterThan(0);
  }, 60_000);

  it('the same seed gives the same run, event for event', async () => {
    const a = await run({ seed: 11, driverBarriers: 'weak', deviceBarriers: 'weak' }, 120);
    const b = await run({ seed: 11, driverBarriers: 'weak', deviceBarriers: 'weak' }, 120);
    expect(b.sys.clock.eventsRun).toBe(a.sys.clock.eventsRun);
    expect(b.sys.clock.nowNs()).toBe(a.sys.clock.nowNs());
    expect({ ...b.r, latencyNs: 0 }).toEqual({ ...a.r, latencyNs: 0 });
  }, 60_000);
});

describe('feature negotiation combinations (simulated rc and ep)', () => {
  const cases: { op: boolean; ap: boolean; mode: 'auto' | 'weak' | 'strict'; barriers: 'weak' | 'strict' }[] = [];
  for (const op of [true, false]) for (const ap of [true, false]) for (const mode of ['auto', 'weak', 'strict'] as const) {
    cases.push({ op, ap, mode, barriers: mode === 'auto' ? (op ? 'strict' : 'weak') : mode });
  }
  it.each(cases)('ORDER_PLATFORM $op, ACCESS_PLATFORM $ap, --driver-barriers $mode → $barriers barriers', async ({ op, ap, mode, barriers }) => {
    const sys = new SimSystem({ seed: 21, orderPlatform: op, accessPlatform: ap, iommu: ap ? 'enabled' : 'disabled', driverBarriers: mode, hostPlatform: 'tso', devicePlatform: 'tso' });
    const net = await sys.bringUp();
    const r = sys.host!.report!;
    expect(r.orderPlatform).toBe(op);
    expect(r.accessPlatform).toBe(ap);
    expect(r.policy.driver).toBe(barriers);
    expect(sys.card.transport.negotiatedFeatures).toBe(r.negotiated);
    const t = await sys.traffic(net, 40);
    expect(t.ok).toBe(40);
  }, 30_000);
});
