/**
 * The memory-model litmus tests' harness, over the world src/sim/litmus builds for
 * `tlpwire litmus` (createLitmusEnv): this file only keeps the shape those tests were written
 * against (a device with a STATUS and a DOORBELL register, a bad/good verdict per run).
 */
import type { MemoryPlatform } from '../../src/memory/index.js';
import { LITMUS_MSIX_ADDRESS, createLitmusEnv, runToEnd, type LitmusEnv as SimLitmusEnv } from '../../src/sim/index.js';

export const DATA = 0x1000;
export const FLAG = 0x2000;
export const MSIX_ADDR = LITMUS_MSIX_ADDRESS;
export const STATUS_REG = 0x10;
export const DOORBELL_REG = 0x20;

export interface DeviceRegs {
  status: number;
  onDoorbell?: () => void;
}

export type LitmusEnv = SimLitmusEnv & { regs: DeviceRegs };

export interface EnvOptions {
  host: MemoryPlatform;
  device: MemoryPlatform;
  seed: number;
  fabricDelayNs?: number;
}

export function makeEnv(o: EnvOptions): LitmusEnv {
  const env = createLitmusEnv({
    hostPlatform: o.host,
    devicePlatform: o.device,
    seed: o.seed,
    ...(o.fabricDelayNs === undefined ? {} : { fabricDelayNs: o.fabricDelayNs }),
  });
  const registers = env.registers;
  registers.set(STATUS_REG, 0);
  const regs: DeviceRegs = {
    get status() {
      return registers.get(STATUS_REG);
    },
    set status(v: number) {
      registers.set(STATUS_REG, v);
    },
  };
  registers.onWrite(DOORBELL_REG, () => regs.onDoorbell?.());
  return Object.assign(env, { regs });
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
