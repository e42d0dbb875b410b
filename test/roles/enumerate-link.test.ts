import { describe, expect, it } from 'vitest';
import { enumerateDevice, type EnumerationResult } from '../../src/pci/index.js';
import { isLinkTester, runLinkTest, type LinktestTarget } from '../../src/roles/index.js';
import { simPair, type SimPair } from './sim.js';

async function enumerate(s: SimPair): Promise<EnumerationResult> {
  return s.settle(
    enumerateDevice(s.config, {
      bus: s.port.bus,
      mmio: s.mmio,
      interrupts: s.rc.interrupts,
      maxPayloadSize: 256,
      linkMaxPayloadSize: s.port.stack.link.partner!.maxPayloadSize,
    }),
  );
}

function target(s: SimPair, result: EnumerationResult, fn = 0): LinktestTarget {
  return {
    fn: result.functions[fn]!,
    port: s.port.index,
    config: s.config,
    mmio: s.mmio,
    ram: s.rc.ram,
    interrupts: s.rc.interrupts,
    clock: s.clock,
    rng: s.rng,
  };
}

describe('enumeration of a multi-function endpoint over an in-memory link', () => {
  it('finds both functions, and each captures its bus number and uses bus:dev.fn as Requester ID', async () => {
    const s = await simPair({ functions: [{ kind: 'linktest' }, { kind: 'linktest', params: { bars: '64', msix: '4', msi: '8' } }] });
    const result = await enumerate(s);
    expect(result.functions.map((f) => f.bdf)).toEqual([0x0100, 0x0101]);
    expect(result.functions.every(isLinkTester)).toBe(true);
    expect(result.functions[1]!.bars.map((b) => [b.index, b.kind])).toEqual([
      [0, 'mem64'],
      [2, 'mem64'],
      [4, 'mem64'],
    ]);
    expect(result.functions[1]!.msix!.vectors).toHaveLength(4);
    expect(result.functions[1]!.msi!.vectorsCapable).toBe(8);
    // BARs of the two functions never overlap and the endpoint decodes them as assigned.
    const ranges = result.ranges.slice().sort((a, b) => a.base - b.base);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.base).toBeGreaterThanOrEqual(ranges[i - 1]!.end);
    for (const f of result.functions) {
      for (const b of f.bars) expect(s.built.device.function(f.function)!.decodeBar(b.index)!.base).toBe(b.address);
    }

    // Function 1 raises MSI-X vector 3: the write carries Requester ID 01:00.1 and reaches the
    // vector enumeration gave it.
    const seen: number[] = [];
    const v3 = result.functions[1]!.msix!.vectors[3]!;
    s.rc.interrupts.setHandler(v3, (_i, requesterId) => seen.push(requesterId));
    const msg = s.built.device.function(1)!.raiseMsix(3)!;
    await s.settle(s.ep.dmaPort(1).write(msg.address, new Uint8Array([msg.data, 0, 0, 0])) as Promise<void>);
    await s.idle();
    expect(seen).toEqual([0x0101]);
    expect(s.rc.interrupts.firedCount(v3)).toBe(1);
    // ... and nothing landed in host RAM at that address.
    expect(s.rc.ram.contains(v3.address, 4)).toBe(false);
  });

  it('runs the whole pcitest matrix against the link tester, every row passing', async () => {
    const s = await simPair();
    const result = await enumerate(s);
    const report = await s.settle(runLinkTest(target(s, result), { throughputBytes: 1 << 20 }));
    const failed = report.rows.filter((r) => r.status === 'fail');
    expect(failed).toEqual([]);
    const names = report.rows.map((r) => r.test);
    expect(names).toContain('BAR5');
    expect(names).toContain('consecutive BARs');
    expect(names).toContain('INTx');
    expect(names).toContain('MSI vectors 1-32');
    expect(names).toContain('MSI-X vectors 1-32');
    for (const op of ['READ', 'WRITE', 'COPY']) {
      for (const size of ['1 B', '1024 B', '1025 B', '1024000 B', '1024001 B']) {
        expect(names).toContain(`${op} ${size}`);
        expect(names).toContain(`${op} ${size} DMA`);
      }
    }
    expect(report.throughput.map((t) => t.direction)).toEqual(['host→device', 'device→host']);
    expect(report.passed).toBe(true);
    // Every buffer the test borrowed from host RAM went back.
    expect(s.rc.ram.bytesAllocated).toBe(0);
  });

  it('a 64-bit-BAR function passes too, its upper halves reported as skipped', async () => {
    const s = await simPair({ functions: [{ kind: 'linktest', params: { bars: '64', msix: '2', msi: '0' } }] });
    const result = await enumerate(s);
    const report = await s.settle(runLinkTest(target(s, result), { sizes: [1, 1025], dmaModes: [true], throughputBytes: 0 }));
    expect(report.passed).toBe(true);
    expect(report.rows.filter((r) => r.status === 'skip').map((r) => r.test)).toEqual(['BAR1', 'BAR3', 'BAR5']);
    expect(report.rows.some((r) => r.test.startsWith('MSI vectors'))).toBe(false);
  });

  it('a function whose interrupts never arrive fails those rows and nothing else', async () => {
    const s = await simPair();
    const result = await enumerate(s);
    // Drop every MSI-X write on the floor at the root complex.
    for (const v of result.functions[0]!.msix!.vectors) s.rc.interrupts.release([v]);
    const report = await s.settle(runLinkTest(target(s, result), { sizes: [1024], dmaModes: [true], msi: false, throughputBytes: 0, irqTimeoutNs: 5_000_000, transferTimeoutNs: 5_000_000 }));
    expect(report.passed).toBe(false);
    const failed = report.rows.filter((r) => r.status === 'fail').map((r) => r.test);
    expect(failed).toEqual(['MSI-X vectors 1-32', 'READ 1024 B DMA', 'WRITE 1024 B DMA', 'COPY 1024 B DMA']);
    expect(s.rc.interrupts.counters.get('msi.spurious')).toBeGreaterThan(0);
  });
});
