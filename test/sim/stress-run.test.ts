import { describe, expect, it } from 'vitest';
import { isTlpwireError } from '../../src/core/index.js';
import { StressRun, type StressConfig, type StressResult } from '../../src/sim/index.js';

/** Runs to the end (a failure or the ring-operation limit), in slices of `slice` events. */
function runStress(config: Partial<StressConfig>, maxOps: number, slice = 50_000): StressResult {
  const run = new StressRun(config, {}, { maxOps, traceHash: true });
  for (let i = 0; !run.runFor(slice); i++) if (i > 100_000) throw new Error('stress run did not end');
  return run.result();
}

describe('StressRun: virtio-net both ways over the memory models and the PCIe ordering rules', () => {
  it('strict barriers on weak platforms carry every frame: no failure, no doorbell, no interrupt', () => {
    for (const seed of [1, 2]) {
      const r = runStress({ seed }, 40_000);
      expect(r.failure).toBeUndefined();
      expect(r.stoppedBy).toBe('ops');
      expect(r.ringOps).toBeGreaterThanOrEqual(40_000);
      expect(r.framesReceived).toBeGreaterThan(4_000);
      // every ring operation kind happened on both sides
      expect(Math.min(r.ops.driverAdd, r.ops.driverGet, r.ops.devicePop, r.ops.devicePush)).toBeGreaterThan(8_000);
      // notifications stayed suppressed: nothing but barriers ordered the rings
      expect(r.doorbells).toBe(0);
      expect(r.interrupts).toBe(0);
      expect(r.barriers['driver.add.wmb-before-avail-idx']).toBe('strict');
      expect(r.siteRuns['driver.add.wmb-before-avail-idx']).toBe(r.ops.driverAdd);
    }
  });

  it('weak barriers on weak platforms are caught within a few thousand ring operations', () => {
    for (const seed of [1, 2, 3]) {
      const r = runStress({ seed, driverBarriers: 'weak', deviceBarriers: 'weak' }, 200_000);
      expect(r.failure).toBeDefined();
      expect(r.failure!.ringOps).toBeLessThan(20_000);
      expect(r.stoppedBy).toBe('failure');
      // the report has the events that led to it, ring operations and DMA among them
      expect(r.lastEvents.length).toBeGreaterThan(20);
    }
  });

  it('the same seed and options give the same run, event for event, however it is sliced', () => {
    const a = runStress({ seed: 5 }, 20_000, 1_000);
    const b = runStress({ seed: 5 }, 20_000, 77_777);
    expect(a.traceHash).toMatch(/^[0-9a-f]{64}$/);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.traceEvents).toBe(a.traceEvents);
    expect(b.events).toBe(a.events);
    expect(b.virtualNs).toBe(a.virtualNs);
    const c = runStress({ seed: 6 }, 20_000);
    expect(c.traceHash).not.toBe(a.traceHash);
    // an option that changes nothing but the code path still changes the hash when it changes behaviour
    const d = runStress({ seed: 5, disabledBarriers: ['driver.kick.mb-before-event-check'] }, 20_000);
    expect(d.traceHash).not.toBe(a.traceHash);
  });

  it('a failure replays exactly from its seed and ring-operation count', () => {
    const cfg: Partial<StressConfig> = { seed: 11, disabledBarriers: ['device.push.wmb-before-used-idx'] };
    const a = runStress(cfg, 500_000);
    expect(a.failure).toBeDefined();
    const b = runStress(cfg, a.failure!.ringOps + 1, 3_333);
    expect(b.failure).toEqual(a.failure);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.lastEvents).toEqual(a.lastEvents);
  });

  it('refuses unknown sites and platforms with a usage error', () => {
    expect(() => new StressRun({ disabledBarriers: ['driver.nope' as 'driver.add.wmb-before-avail-idx'] })).toThrow(/valid sites: driver\.add\.wmb-before-avail-idx/);
    let err: unknown;
    try {
      new StressRun({ hostPlatform: 'arm' as 'weak' });
    } catch (e) {
      err = e;
    }
    expect(isTlpwireError(err, 'ERR_USAGE')).toBe(true);
  });
});
