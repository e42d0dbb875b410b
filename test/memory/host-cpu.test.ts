import { describe, expect, it } from 'vitest';
import { SeededRng, isTlpwireError } from '../../src/core/index.js';
import { CPU_BARRIER_KINDS, type CpuBarrierKind, HostCpu, IMMEDIATE_HOST_CPU_OPTIONS, type HostCpuOptions, HostRam, type MemoryPlatform, type MmioPort } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import type { DriverMemory } from '../../src/virtio/index.js';

function setup(platform: MemoryPlatform, extra: Partial<HostCpuOptions> = {}, seed = 1) {
  const clock = new VirtualClock();
  const ram = new HostRam({ size: 1 << 20, pageSize: 4096 });
  const cpu = new HostCpu({ platform, ram, clock, rng: new SeededRng(seed), ...extra });
  return { clock, ram, cpu };
}

function recordingMmio(ram: HostRam, log: string[], readValue = 0): MmioPort {
  return {
    write32: (a, v, relaxed) => log.push(`w32 ${a} ${v} ${relaxed ? 'relaxed' : 'ordered'} ram=${ram.read32(0x100)}`),
    read32: async (a) => {
      log.push(`r32 ${a} ram=${ram.read32(0x100)}`);
      return readValue;
    },
  };
}

describe('HostCpu store buffer', () => {
  it('implements the virtio driver memory interface', () => {
    const { cpu } = setup('weak');
    const m: DriverMemory = cpu;
    m.write16(0x10, 0xbeef);
    expect(m.read16(0x10)).toBe(0xbeef);
  });

  for (const platform of ['tso', 'weak'] as const) {
    it(`${platform}: a store is invisible to the device until it drains, but the CPU sees it at once`, () => {
      const { clock, ram, cpu } = setup(platform);
      cpu.write32(0x100, 0x12345678);
      expect(ram.read32(0x100)).toBe(0);
      expect(cpu.read32(0x100)).toBe(0x12345678);
      expect(cpu.pendingStores).toBe(1);
      clock.run();
      expect(ram.read32(0x100)).toBe(0x12345678);
      expect(cpu.pendingStores).toBe(0);
      expect(cpu.stats()).toMatchObject({ stores: 1, storesVisible: 1, forwardedLoads: 1 });
    });

    it(`${platform}: forwards partial overlaps byte by byte, newest store winning`, () => {
      const { ram, cpu } = setup(platform);
      ram.write32(0x200, 0xaabbccdd);
      cpu.write8(0x201, 0x11);
      cpu.write16(0x202, 0x2233);
      cpu.write8(0x203, 0x44);
      expect(cpu.read32(0x200)).toBe(0x443311dd);
      cpu.write64(0x208, 2 ** 40 + 0x0102);
      expect(cpu.read64(0x208)).toBe(2 ** 40 + 0x0102);
      expect(cpu.read16(0x20c)).toBe(0x0100);
      cpu.writeBytes(0x20a, Uint8Array.of(9, 8, 7));
      expect([...cpu.readBytes(0x208, 6)]).toEqual([2, 1, 9, 8, 7, 1]);
      const into = new Uint8Array(4);
      cpu.readInto(0x201, into);
      expect([...into]).toEqual([0x11, 0x33, 0x44, 0]);
      cpu.drain();
      expect([...ram.readBytes(0x200, 14)]).toEqual([0xdd, 0x11, 0x33, 0x44, 0, 0, 0, 0, 2, 1, 9, 8, 7, 1]);
    });

    it(`${platform}: never keeps a store invisible longer than the residence bound`, () => {
      const { clock, ram, cpu } = setup(platform, { maxStoreResidenceNs: 3_000 });
      for (let i = 0; i < 40; i++) {
        clock.setTimer(i * 100, () => {
          cpu.write32(0x1000 + 4 * i, i + 1);
          clock.setTimer(3_001, () => expect(ram.read32(0x1000 + 4 * i)).toBe(i + 1));
        });
      }
      clock.run();
      expect(cpu.pendingStores).toBe(0);
    });
  }

  it('write-through when the residence bound is 0 (the real-runtime setting)', () => {
    const { clock, ram, cpu } = setup('weak', IMMEDIATE_HOST_CPU_OPTIONS);
    cpu.write32(0x100, 7);
    expect(ram.read32(0x100)).toBe(7);
    expect(cpu.pendingStores).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('a full store buffer pushes its oldest store out', () => {
    const { ram, cpu } = setup('weak', { storeBufferSize: 4 });
    for (let i = 0; i < 6; i++) cpu.write32(0x100 + 4 * i, i + 1);
    expect(cpu.pendingStores).toBe(4);
    expect(ram.read32(0x100)).toBe(1);
    expect(ram.read32(0x104)).toBe(2);
    expect(ram.read32(0x108)).toBe(0);
  });

  it('tso: stores become visible in program order', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, ram, cpu } = setup('tso', {}, seed);
      for (let i = 0; i < 8; i++) cpu.write32(0x100 + 4 * i, 1);
      let ok = true;
      const check = (): void => {
        let seenZero = false;
        for (let i = 0; i < 8; i++) {
          const v = ram.read32(0x100 + 4 * i);
          if (v === 0) seenZero = true;
          else if (seenZero) ok = false;
        }
        if (clock.pending > 0) clock.setTimer(10, check);
      };
      check();
      clock.run();
      expect(ok).toBe(true);
    }
  });

  it('weak: stores without an I/O barrier between them become visible out of order (for some seeds)', () => {
    let reordered = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, ram, cpu } = setup('weak', {}, seed);
      cpu.write32(0x100, 1);
      cpu.smp_wmb(); // orders nothing for the device
      cpu.write32(0x200, 1);
      let flagBeforeData = false;
      const check = (): void => {
        if (ram.read32(0x200) === 1 && ram.read32(0x100) === 0) flagBeforeData = true;
        if (cpu.pendingStores > 0) clock.setTimer(10, check);
      };
      check();
      clock.run();
      if (flagBeforeData) reordered++;
    }
    expect(reordered).toBeGreaterThan(0);
    expect(reordered).toBeLessThan(30);
  });

  it('weak: stores to one location stay in program order', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, ram, cpu } = setup('weak', {}, seed);
      for (let v = 1; v <= 6; v++) cpu.write32(0x100, v);
      cpu.write16(0x102, 0xffff);
      let last = 0;
      let ok = true;
      const check = (): void => {
        const v = ram.read32(0x100) & 0xffff;
        if (v < last) ok = false;
        last = v;
        if (cpu.pendingStores > 0) clock.setTimer(5, check);
      };
      check();
      clock.run();
      expect(ok).toBe(true);
      expect(ram.read32(0x100)).toBe(0xffff0006);
    }
  });

  it('drainSome makes at least one allowed store visible', () => {
    const { ram, cpu } = setup('weak');
    cpu.write32(0x100, 1);
    cpu.dma_wmb();
    cpu.write32(0x200, 1);
    const n = cpu.drainSome(new SeededRng(5));
    expect(n).toBeGreaterThanOrEqual(1);
    expect(ram.read32(0x100)).toBe(1); // the barrier keeps the flag behind the data
    cpu.drain();
    expect(ram.read32(0x200)).toBe(1);
    expect(cpu.drainSome()).toBe(0);
  });
});

describe('HostCpu barriers', () => {
  const drains: Record<MemoryPlatform, CpuBarrierKind[]> = {
    tso: ['smp_mb', 'virt_mb', 'mb'],
    weak: ['mb'],
  };
  for (const platform of ['tso', 'weak'] as const) {
    for (const kind of CPU_BARRIER_KINDS) {
      const expected = drains[platform].includes(kind);
      it(`${platform} ${kind} ${expected ? 'drains' : 'does not drain'} the store buffer, and is counted`, () => {
        const { cpu } = setup(platform);
        cpu.write32(0x100, 1);
        cpu.write32(0x104, 1);
        cpu.barrier(kind);
        expect(cpu.pendingStores === 0).toBe(expected);
        expect(cpu.barrierCount(kind)).toBe(1);
        expect(cpu.stats().barriers[kind]).toBe(1);
      });
    }
  }

  it('named methods are the same barriers', () => {
    const { cpu } = setup('weak');
    cpu.smp_wmb();
    cpu.smp_rmb();
    cpu.smp_mb();
    cpu.virt_wmb();
    cpu.virt_rmb();
    cpu.virt_mb();
    cpu.dma_wmb();
    cpu.dma_rmb();
    cpu.wmb();
    cpu.rmb();
    cpu.mb();
    for (const k of CPU_BARRIER_KINDS) expect(cpu.barrierCount(k)).toBe(1);
  });

  it('rejects an unknown barrier name', () => {
    const { cpu } = setup('weak');
    try {
      cpu.barrier('smp_fence' as CpuBarrierKind);
      expect.unreachable();
    } catch (e) {
      expect(isTlpwireError(e, 'ERR_USAGE')).toBe(true);
    }
  });
});

describe('HostCpu loads of device-written memory', () => {
  function staleRun(platform: MemoryPlatform, seed: number, barrier: CpuBarrierKind | undefined): { first: number; second: number } {
    const { clock, ram, cpu } = setup(platform, {}, seed);
    ram.write32(0x100, 1);
    clock.setTimer(100, () => ram.dmaWrite(0x100, Uint8Array.of(2, 0, 0, 0)));
    clock.setTimer(200, () => ram.dmaWrite(0x100, Uint8Array.of(3, 0, 0, 0)));
    clock.run({ untilNs: 300 });
    if (barrier !== undefined) cpu.barrier(barrier);
    const first = cpu.read32(0x100);
    const second = cpu.read32(0x100);
    return { first, second };
  }

  it('weak: a load may return an older value, but never older than an earlier load (coherence)', () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const { first, second } = staleRun('weak', seed, undefined);
      seen.add(first);
      expect(second).toBeGreaterThanOrEqual(first);
    }
    expect([...seen].sort()).toEqual([1, 2, 3]);
  });

  for (const b of ['dma_rmb', 'rmb', 'mb'] as const) {
    it(`weak: after ${b}, loads see every device write that landed before it`, () => {
      for (let seed = 1; seed <= 40; seed++) expect(staleRun('weak', seed, b).first).toBe(3);
    });
  }

  for (const b of ['smp_rmb', 'virt_rmb', 'smp_mb', 'virt_mb', 'dma_wmb'] as const) {
    it(`weak: ${b} does not order loads against device writes`, () => {
      const firsts = new Set<number>();
      for (let seed = 1; seed <= 40; seed++) firsts.add(staleRun('weak', seed, b).first);
      expect(firsts.size).toBeGreaterThan(1);
    });
  }

  it('tso: loads return the current value', () => {
    for (let seed = 1; seed <= 40; seed++) expect(staleRun('tso', seed, undefined).first).toBe(3);
  });

  it('weak: stale values are bounded in time and by the history size', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { clock, ram, cpu } = setup('weak', { maxStalenessNs: 1_000 }, seed);
      clock.setTimer(10, () => ram.dmaWrite(0x100, Uint8Array.of(9)));
      clock.run();
      clock.run({ untilNs: 2_000 });
      expect(cpu.read8(0x100)).toBe(9);
    }
    for (let seed = 1; seed <= 30; seed++) {
      const { ram, cpu } = setup('weak', { historySize: 4 }, seed);
      ram.dmaWrite(0x100, Uint8Array.of(1));
      for (let i = 0; i < 4; i++) ram.dmaWrite(0x200 + i, Uint8Array.of(1));
      expect(cpu.read8(0x100)).toBe(1);
    }
  });

  it('weak: a load never "restores" bytes older than the CPU\'s own visible store', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const { ram, cpu } = setup('weak', {}, seed);
      ram.dmaWrite(0x100, Uint8Array.of(1, 1, 1, 1));
      cpu.write16(0x100, 0x0505);
      cpu.drain();
      expect(cpu.read32(0x100) & 0xffff).toBe(0x0505);
      expect(cpu.read8(0x100)).toBe(5);
    }
  });

  it('weak: taking an interrupt makes earlier device writes visible', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const { ram, cpu } = setup('weak', {}, seed);
      ram.dmaWrite(0x100, Uint8Array.of(7));
      cpu.interrupt();
      expect(cpu.read8(0x100)).toBe(7);
      expect(cpu.stats().interrupts).toBe(1);
    }
  });
});

describe('HostCpu MMIO', () => {
  it('writel makes earlier stores visible first; writel_relaxed does not on weak', () => {
    const { ram, cpu } = setup('weak');
    const log: string[] = [];
    cpu.attachMmio(recordingMmio(ram, log));
    cpu.write32(0x100, 5);
    cpu.writel_relaxed(0x20, 1);
    cpu.writel(0x24, 2);
    expect(log).toEqual(['w32 32 1 relaxed ram=0', 'w32 36 2 ordered ram=5']);
    expect(cpu.stats().mmioWrites).toBe(2);
  });

  it('writel_relaxed on tso still leaves after earlier stores', () => {
    const { ram, cpu } = setup('tso');
    const log: string[] = [];
    cpu.attachMmio(recordingMmio(ram, log));
    cpu.write32(0x100, 5);
    cpu.writel_relaxed(0x20, 1);
    expect(log).toEqual(['w32 32 1 relaxed ram=5']);
  });

  it('readl does not wait for earlier stores on weak (it does on tso)', async () => {
    for (const [platform, expected] of [
      ['weak', 'r32 16 ram=0'],
      ['tso', 'r32 16 ram=5'],
    ] as const) {
      const { ram, cpu } = setup(platform);
      const log: string[] = [];
      cpu.attachMmio(recordingMmio(ram, log, 0xabc));
      cpu.write32(0x100, 5);
      expect(await cpu.readl(0x10)).toBe(0xabc);
      expect(log).toEqual([expected]);
    }
  });

  it('readl moves the read horizon when its completion arrives; readl_relaxed does not', async () => {
    let relaxedStale = 0;
    for (let seed = 1; seed <= 40; seed++) {
      for (const relaxed of [false, true]) {
        const { ram, cpu } = setup('weak', {}, seed);
        const port: MmioPort = {
          write32: () => {},
          // The device's earlier posted write lands before the completion arrives.
          read32: async () => {
            ram.dmaWrite(0x100, Uint8Array.of(1));
            return 1;
          },
        };
        cpu.attachMmio(port);
        await (relaxed ? cpu.readl_relaxed(0x10) : cpu.readl(0x10));
        const v = cpu.read8(0x100);
        if (!relaxed) expect(v).toBe(1);
        else if (v === 0) relaxedStale++;
      }
    }
    expect(relaxedStale).toBeGreaterThan(0);
  });

  it('sized MMIO needs a port that supports it, and any MMIO needs a port', async () => {
    const { ram, cpu } = setup('weak');
    const code = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (e) {
        return isTlpwireError(e) ? e.code : 'other';
      }
      return undefined;
    };
    expect(code(() => cpu.writel(0, 0))).toBe('ERR_USAGE');
    cpu.attachMmio(recordingMmio(ram, []));
    expect(code(() => cpu.writeb(0, 0))).toBe('ERR_USAGE');
    await expect(cpu.readw(0)).rejects.toMatchObject({ code: 'ERR_USAGE' });
    const sized: string[] = [];
    cpu.attachMmio({
      ...recordingMmio(ram, []),
      write: (a, size, v) => sized.push(`w${size * 8} ${a} ${v}`),
      read: async (a, size) => {
        sized.push(`r${size * 8} ${a}`);
        return 3;
      },
    });
    cpu.writeb(0x14, 4);
    cpu.writew(0x16, 5);
    expect(await cpu.readb(0x14)).toBe(3);
    expect(await cpu.readw(0x16)).toBe(3);
    expect(sized).toEqual(['w8 20 4', 'w16 22 5', 'r8 20', 'r16 22']);
  });
});

describe('HostCpu construction and disposal', () => {
  it('rejects an unknown platform', () => {
    const ram = new HostRam({ size: 1 << 16 });
    expect(() => new HostCpu({ platform: 'arm' as MemoryPlatform, ram, clock: new VirtualClock(), rng: new SeededRng(1) })).toThrow(
      /unknown memory platform/,
    );
  });

  it('dispose drains and stops observing RAM', () => {
    const { ram, cpu } = setup('weak');
    cpu.write32(0x100, 1);
    expect(ram.hasObservers).toBe(true);
    cpu.dispose();
    expect(ram.read32(0x100)).toBe(1);
    expect(ram.hasObservers).toBe(false);
  });
});
