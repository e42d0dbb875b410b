import { SeededRng } from '../../src/core/index.js';
import { DeviceEngine, HostCpu, HostRam, type MemoryPlatform } from '../../src/memory/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { TestFabric, TestMmio, runToEnd } from './fabric.js';

export const DATA = 0x1000;
export const FLAG = 0x2000;
export const MSIX_ADDR = 0xf000;
export const STATUS_REG = 0x10;
export const DOORBELL_REG = 0x20;

export interface DeviceRegs {
  status: number;
  onDoorbell?: () => void;
}

/** One run of a two-sided program: host CPU model ↔ test fabric ↔ device engine model. */
export interface LitmusEnv {
  clock: VirtualClock;
  ram: HostRam;
  cpu: HostCpu;
  engine: DeviceEngine;
  fabric: TestFabric;
  mmio: TestMmio;
  regs: DeviceRegs;
  /** Randomness for program start times (separate from the models' own). */
  prog: SeededRng;
  /** Set when an MSI-X write lands: the host's interrupt handler. */
  onMsix: (() => void) | undefined;
  /** Errors thrown by async device programs (must stay empty). */
  errors: unknown[];
  /** Starts an async program at a virtual time. */
  spawn(atNs: number, fn: () => Promise<void>): void;
}

export interface EnvOptions {
  host: MemoryPlatform;
  device: MemoryPlatform;
  seed: number;
  fabricDelayNs?: number;
}

export function makeEnv(o: EnvOptions): LitmusEnv {
  const root = new SeededRng(o.seed);
  const clock = new VirtualClock();
  const ram = new HostRam({ size: 1 << 20, pageSize: 4096, reserveLow: 0x10000 });
  const cpu = new HostCpu({ platform: o.host, ram, clock, rng: root.fork() });
  const regs: DeviceRegs = { status: 0 };
  const errors: unknown[] = [];
  const env: LitmusEnv = {
    clock,
    ram,
    cpu,
    engine: undefined as unknown as DeviceEngine,
    fabric: undefined as unknown as TestFabric,
    mmio: undefined as unknown as TestMmio,
    regs,
    prog: root.fork(),
    onMsix: undefined,
    errors,
    spawn(atNs, fn) {
      clock.setTimer(atNs, () => {
        fn().catch((e: unknown) => errors.push(e));
      });
    },
  };
  const fabric = new TestFabric(
    clock,
    root.fork(),
    { read: (a, l) => ram.readBytes(a, l), write: (a, d) => ram.dmaWrite(a, d) },
    o.fabricDelayNs ?? 600,
    (address) => {
      if (address === MSIX_ADDR) env.onMsix?.();
    },
  );
  env.fabric = fabric;
  env.engine = new DeviceEngine({ platform: o.device, port: fabric, clock, rng: root.fork() });
  env.mmio = new TestMmio(clock, fabric, {
    onWrite: (address) => {
      if (address === DOORBELL_REG) regs.onDoorbell?.();
    },
    onRead: (address) => (address === STATUS_REG ? regs.status : 0xffffffff),
  });
  cpu.attachMmio(env.mmio);
  return env;
}

/**
 * Runs `iterations` independent runs of a test; `setup` starts the programs and returns the
 * function that reads the final state (a histogram key) and whether it is the "bad" outcome.
 */
export async function runLitmus(
  o: Omit<EnvOptions, 'seed'> & { seed: number; iterations: number },
  setup: (env: LitmusEnv) => () => { state: string; bad: boolean },
): Promise<{ bad: number; good: number; histogram: Map<string, number>; errors: unknown[] }> {
  const histogram = new Map<string, number>();
  const errors: unknown[] = [];
  let bad = 0;
  for (let i = 0; i < o.iterations; i++) {
    const env = makeEnv({ ...o, seed: o.seed * 100_003 + i });
    const final = setup(env);
    await runToEnd(env.clock);
    errors.push(...env.errors);
    const r = final();
    histogram.set(r.state, (histogram.get(r.state) ?? 0) + 1);
    if (r.bad) bad++;
  }
  return { bad, good: o.iterations - bad, histogram, errors };
}
