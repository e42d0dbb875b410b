/**
 * The litmus patterns of docs/MEMORY-MODEL.md, run against the host CPU model and the device
 * engine model over a small PCIe-ordered fabric. Each test states the expected observation of
 * the "bad" outcome (Never / Sometimes) from the table in the doc and checks it: Sometimes must
 * be seen at least once (and the good outcome too), Never must not be seen at all.
 *
 * The expectation functions below restate the doc's table; keep the two in step.
 */
import { describe, expect, it } from 'vitest';
import { type CpuBarrierKind, type DeviceBarrierKind, type MemoryPlatform } from '../../src/memory/index.js';
import { le32, readLe32 } from '../../src/sim/index.js';
import { DATA, DOORBELL_REG, FLAG, MSIX_ADDR, STATUS_REG, runLitmus } from './litmus-env.js';

type Observation = 'Never' | 'Sometimes';
type HostBarrier = CpuBarrierKind | 'none';

const PLATFORMS: [MemoryPlatform, MemoryPlatform][] = [
  ['tso', 'tso'],
  ['tso', 'weak'],
  ['weak', 'tso'],
  ['weak', 'weak'],
];

// Overridable for exploration runs (LITMUS_VERBOSE=1 prints every count):
//   LITMUS_ITERATIONS=5000 LITMUS_SEED=7 npx vitest run test/memory/litmus.test.ts
const ITERATIONS = Number(process.env.LITMUS_ITERATIONS ?? 400);
const SEED = Number(process.env.LITMUS_SEED ?? 0);

// ---- the expectation table (docs/MEMORY-MODEL.md, "Litmus table") --------------------------

/** Host stores data then flag with `b` between; the device reads flag then data. */
export function expectMpHostToDevice(host: MemoryPlatform, device: MemoryPlatform, b: HostBarrier, deviceRmb: boolean): Observation {
  const hostOrders = host === 'tso' || b === 'dma_wmb' || b === 'wmb' || b === 'mb';
  const deviceOrders = device === 'tso' || deviceRmb;
  return hostOrders && deviceOrders ? 'Never' : 'Sometimes';
}

/** The device writes data then flag (wmb between or not); the host loads flag, `b`, data. */
export function expectMpDeviceToHost(host: MemoryPlatform, device: MemoryPlatform, deviceWmb: boolean, b: HostBarrier): Observation {
  const deviceOrders = device === 'tso' || deviceWmb;
  const hostOrders = host === 'tso' || b === 'dma_rmb' || b === 'rmb' || b === 'mb';
  return deviceOrders && hostOrders ? 'Never' : 'Sometimes';
}

/** Store buffering: host stores idx, `hb`, loads event; device writes event, `db`, reads idx. */
export function expectStoreBuffering(host: MemoryPlatform, device: MemoryPlatform, hb: HostBarrier, db: DeviceBarrierKind | 'none'): Observation {
  const hostOrders = hb === 'mb' || (host === 'tso' && (hb === 'smp_mb' || hb === 'virt_mb'));
  const deviceOrders = db === 'mb' || (device === 'tso' && db === 'virt_mb');
  return hostOrders && deviceOrders ? 'Never' : 'Sometimes';
}

function check(name: string, expected: Observation, r: { bad: number; good: number; errors: unknown[] }): void {
  if (process.env.LITMUS_VERBOSE) console.log(`LIT ${expected} ${r.bad}/${r.bad + r.good} ${name}`);
  expect(r.errors, name).toEqual([]);
  if (expected === 'Never') {
    expect(r.bad, `${name}: bad outcome must never appear`).toBe(0);
  } else {
    expect(r.bad, `${name}: bad outcome must appear`).toBeGreaterThan(0);
    expect(r.good, `${name}: good outcome must appear too`).toBeGreaterThan(0);
  }
}

// ---- message passing, host → device -----------------------------------------------------------

describe('MP host → device: host writes data, barrier, flag; device reads flag, [rmb], data', () => {
  const barriers: HostBarrier[] = ['none', 'smp_wmb', 'virt_wmb', 'smp_mb', 'virt_mb', 'dma_wmb', 'wmb', 'mb'];
  for (const [host, device] of PLATFORMS) {
    for (const b of barriers) {
      for (const rmb of [false, true]) {
        const expected = expectMpHostToDevice(host, device, b, rmb);
        it(`host ${host} ${b} / device ${device} ${rmb ? 'rmb' : 'no rmb'}: ${expected}`, async () => {
          const r = await runLitmus({ host, device, seed: SEED + 11, iterations: ITERATIONS }, (env) => {
            let flag = -1;
            let data = -1;
            env.clock.setTimer(env.prog.int(2_000), () => {
              env.cpu.write32(DATA, 1);
              if (b !== 'none') env.cpu.barrier(b);
              env.cpu.write32(FLAG, 1);
            });
            env.spawn(env.prog.int(1_000), async () => {
              // Both reads leave without waiting for the flag: the engine speculates.
              const f = env.engine.read(FLAG, 4);
              if (rmb) void env.engine.rmb();
              const d = env.engine.read(DATA, 4);
              flag = readLe32(await f);
              data = readLe32(await d);
            });
            return () => ({ state: `flag=${flag} data=${data}`, bad: flag === 1 && data === 0 });
          });
          check(`MP h→d ${host}/${device} ${b} ${rmb}`, expected, r);
        });
      }
    }
  }
});

describe('MP host → device with a dependent device read (the device awaits the flag before reading data)', () => {
  // The virtio device's shape: read avail.idx, await it, then read the ring. On a weak device
  // a read-ahead that raced the flag read can still answer the data read with older bytes.
  for (const [host, device] of PLATFORMS) {
    for (const rmb of [false, true]) {
      const expected: Observation = device === 'weak' && !rmb ? 'Sometimes' : 'Never';
      it(`host ${host} dma_wmb / device ${device} ${rmb ? 'rmb' : 'no rmb'}: ${expected}`, async () => {
        const r = await runLitmus({ host, device, seed: SEED + 12, iterations: ITERATIONS }, (env) => {
          let flag = -1;
          let data = -1;
          // Flag and data share a 4 KiB page, data right after the flag: a read-ahead covers it.
          const flagAt = 0x3000;
          const dataAt = 0x3004;
          env.clock.setTimer(env.prog.int(2_000), () => {
            env.cpu.write32(dataAt, 1);
            env.cpu.dma_wmb();
            env.cpu.write32(flagAt, 1);
          });
          env.spawn(env.prog.int(1_000), async () => {
            flag = readLe32(await env.engine.read(flagAt, 4));
            if (rmb) await env.engine.rmb();
            data = readLe32(await env.engine.read(dataAt, 4));
          });
          return () => ({ state: `flag=${flag} data=${data}`, bad: flag === 1 && data === 0 });
        });
        check(`MP h→d dependent ${host}/${device} ${rmb}`, expected, r);
      });
    }
  }
});

// ---- message passing, device → host -----------------------------------------------------------

describe('MP device → host: device writes data, [wmb], flag; host reads flag, barrier, data', () => {
  const barriers: HostBarrier[] = ['none', 'smp_rmb', 'virt_rmb', 'smp_mb', 'virt_mb', 'dma_rmb', 'rmb', 'mb'];
  for (const [host, device] of PLATFORMS) {
    for (const wmb of [false, true]) {
      for (const b of barriers) {
        const expected = expectMpDeviceToHost(host, device, wmb, b);
        it(`device ${device} ${wmb ? 'wmb' : 'no wmb'} / host ${host} ${b}: ${expected}`, async () => {
          const r = await runLitmus({ host, device, seed: SEED + 21, iterations: ITERATIONS }, (env) => {
            let flag = -1;
            let data = -1;
            env.spawn(env.prog.int(500), async () => {
              env.engine.write(DATA, le32(1));
              if (wmb) env.engine.wmb();
              env.engine.write(FLAG, le32(1));
            });
            // The host polls a few times; the last poll decides (a poll loop, as a driver does).
            const poll = (left: number): void => {
              flag = env.cpu.read32(FLAG);
              if (b !== 'none') env.cpu.barrier(b);
              data = env.cpu.read32(DATA);
              if (flag !== 1 && left > 0) env.clock.setTimer(env.prog.int(400), () => poll(left - 1));
            };
            env.clock.setTimer(500 + env.prog.int(2_000), () => poll(8));
            return () => ({ state: `flag=${flag} data=${data}`, bad: flag === 1 && data === 0 });
          });
          check(`MP d→h ${host}/${device} ${wmb} ${b}`, expected, r);
        });
      }
    }
  }
});

describe('MP device → host with Relaxed Ordering on the flag write', () => {
  // The fabric may let an RO write pass the data write: no barrier on either side helps.
  for (const [host, device] of PLATFORMS) {
    for (const ro of [false, true]) {
      const expected: Observation = ro ? 'Sometimes' : 'Never';
      it(`${host}/${device} flag ${ro ? 'RO' : 'not RO'}, device wmb, host dma_rmb: ${expected}`, async () => {
        const r = await runLitmus({ host, device, seed: SEED + 31, iterations: ITERATIONS }, (env) => {
          let flag = -1;
          let data = -1;
          env.spawn(env.prog.int(500), async () => {
            env.engine.write(DATA, le32(1));
            env.engine.wmb();
            env.engine.write(FLAG, le32(1), { relaxedOrdering: ro });
          });
          const poll = (left: number): void => {
            flag = env.cpu.read32(FLAG);
            env.cpu.dma_rmb();
            data = env.cpu.read32(DATA);
            if (flag !== 1 && left > 0) env.clock.setTimer(env.prog.int(300), () => poll(left - 1));
          };
          env.clock.setTimer(300 + env.prog.int(1_500), () => poll(10));
          return () => ({ state: `flag=${flag} data=${data}`, bad: flag === 1 && data === 0 });
        });
        check(`RO ${host}/${device} ${ro}`, expected, r);
      });
    }
  }
});

describe('MP device → host through an MSI-X: device writes data, [wmb], the MSI-X; the handler reads data', () => {
  const barriers: HostBarrier[] = ['none', 'smp_rmb', 'dma_rmb'];
  for (const [host, device] of PLATFORMS) {
    for (const wmb of [false, true]) {
      for (const b of barriers) {
        // The interrupt orders the handler's loads after the MSI-X; only the device's order matters.
        const expected: Observation = device === 'tso' || wmb ? 'Never' : 'Sometimes';
        it(`device ${device} ${wmb ? 'wmb' : 'no wmb'} / host ${host} ${b}: ${expected}`, async () => {
          const r = await runLitmus({ host, device, seed: SEED + 41, iterations: ITERATIONS }, (env) => {
            let data = -1;
            env.onMsix = () => {
              env.cpu.interrupt();
              if (b !== 'none') env.cpu.barrier(b);
              data = env.cpu.read32(DATA);
            };
            env.spawn(env.prog.int(500), async () => {
              env.engine.write(DATA, le32(1));
              if (wmb) env.engine.wmb();
              env.engine.write(MSIX_ADDR, le32(0x41));
            });
            return () => ({ state: `data=${data}`, bad: data === 0 });
          });
          check(`MSI-X ${host}/${device} ${wmb} ${b}`, expected, r);
        });
      }
    }
  }
});

// ---- store buffering (notification suppression) ------------------------------------------------

describe('SB: host stores avail.idx, barrier, loads avail_event; device writes avail_event, barrier, reads avail.idx', () => {
  const hostBarriers: HostBarrier[] = ['none', 'smp_mb', 'virt_mb', 'dma_wmb', 'mb'];
  const deviceBarriers: (DeviceBarrierKind | 'none')[] = ['none', 'wmb', 'virt_mb', 'mb'];
  const IDX = DATA;
  const EVT = FLAG;
  for (const [host, device] of PLATFORMS) {
    for (const hb of hostBarriers) {
      for (const db of deviceBarriers) {
        const expected = expectStoreBuffering(host, device, hb, db);
        it(`host ${host} ${hb} / device ${device} ${db}: ${expected}`, async () => {
          const r = await runLitmus({ host, device, seed: SEED + 51, iterations: ITERATIONS }, (env) => {
            let r0 = -1;
            let r1 = -1;
            env.clock.setTimer(env.prog.int(1_500), () => {
              env.cpu.write32(IDX, 1);
              if (hb !== 'none') env.cpu.barrier(hb);
              r0 = env.cpu.read32(EVT);
            });
            env.spawn(env.prog.int(1_500), async () => {
              env.engine.write(EVT, le32(1));
              if (db !== 'none') await env.engine.barrier(db);
              r1 = readLe32(await env.engine.read(IDX, 4));
            });
            return () => ({ state: `host.event=${r0} device.idx=${r1}`, bad: r0 === 0 && r1 === 0 });
          });
          check(`SB ${host}/${device} ${hb} ${db}`, expected, r);
        });
      }
    }
  }
});

// ---- MMIO ----------------------------------------------------------------------------------------

describe('MMIO read flushes posted writes: device writes data, sets STATUS; host reads STATUS, then data', () => {
  for (const [host, device] of PLATFORMS) {
    for (const drain of [false, true]) {
      for (const relaxed of [false, true]) {
        // The completion cannot pass the device's posted writes once they are on the link; a
        // write still buffered in the engine is not on the link. readl_relaxed has no read
        // barrier after it, so a weak host may still use an older value of data.
        const expected: Observation = drain && (host === 'tso' || !relaxed) ? 'Never' : 'Sometimes';
        it(`device ${device} ${drain ? 'drains writes' : 'does not drain'} / host ${host} ${relaxed ? 'readl_relaxed' : 'readl'}: ${expected}`, async () => {
          const r = await runLitmus({ host, device, seed: SEED + 61, iterations: ITERATIONS }, (env) => {
            let status = -1;
            let data = -1;
            env.spawn(env.prog.int(800), async () => {
              env.engine.write(DATA, le32(1));
              if (drain) env.engine.drainWrites();
              env.regs.status = 1;
            });
            env.spawn(env.prog.int(1_500), async () => {
              status = await (relaxed ? env.cpu.readl_relaxed(STATUS_REG) : env.cpu.readl(STATUS_REG));
              data = env.cpu.read32(DATA);
            });
            return () => ({ state: `status=${status} data=${data}`, bad: status === 1 && data === 0 });
          });
          check(`MMIO read ${host}/${device} ${drain} ${relaxed}`, expected, r);
        });
      }
    }
  }
});

describe('MMIO doorbell: host stores data, writel/writel_relaxed doorbell; device reads data on the doorbell', () => {
  for (const [host, device] of PLATFORMS) {
    for (const relaxed of [false, true]) {
      const expected: Observation = host === 'weak' && relaxed ? 'Sometimes' : 'Never';
      it(`host ${host} ${relaxed ? 'writel_relaxed' : 'writel'} / device ${device}: ${expected}`, async () => {
        const r = await runLitmus({ host, device, seed: SEED + 71, iterations: ITERATIONS }, (env) => {
          let data = -1;
          env.regs.onDoorbell = () => {
            void env.engine.read(DATA, 4).then((b) => {
              data = readLe32(b);
            });
          };
          env.clock.setTimer(env.prog.int(500), () => {
            env.cpu.write32(DATA, 1);
            if (relaxed) env.cpu.writel_relaxed(DOORBELL_REG, 0);
            else env.cpu.writel(DOORBELL_REG, 0);
          });
          return () => ({ state: `data=${data}`, bad: data === 0 });
        });
        check(`doorbell ${host}/${device} ${relaxed}`, expected, r);
      });
    }
  }
});
