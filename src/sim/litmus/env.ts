/**
 * One litmus run's world: a virtual clock, host RAM, the host CPU model, the device engine
 * model, the fabric between them, and a device register file the host reaches by MMIO. The
 * user-facing runner (runner.ts) and the memory-model tests build their programs on it.
 */
import { SeededRng } from '../../core/index.js';
import { DeviceEngine, HostCpu, HostRam, type MemoryPlatform } from '../../memory/index.js';
import { VirtualClock } from '../virtual-clock.js';
import { LitmusFabric, LitmusMmio, readLe32 } from './fabric.js';

/** Where a device's MSI-X message goes (the x86 interrupt window; outside RAM, never stored). */
export const LITMUS_MSIX_ADDRESS = 0xfee0_0000;
/** Host RAM of a litmus run: locations live below this. */
export const LITMUS_RAM_BYTES = 1 << 20;
/** Default crossing delay of the fabric: long enough for wide reordering windows. */
export const LITMUS_FABRIC_DELAY_NS = 600;

/** Device registers by BAR offset: what a host read returns and what a host write triggers. */
export class LitmusRegisterFile {
  private readonly values = new Map<number, number>();
  private readonly writeHooks = new Map<number, (value: number) => void>();

  /** The register's value; all ones where there is none (what an unclaimed read returns). */
  get(offset: number): number {
    return this.values.get(offset) ?? 0xffffffff;
  }

  /** The device sets a register (a later host read returns it). */
  set(offset: number, value: number): void {
    this.values.set(offset, value >>> 0);
  }

  /** Calls `fn` when a host write to `offset` reaches the device (replaces an earlier hook). */
  onWrite(offset: number, fn: ((value: number) => void) | undefined): void {
    if (fn === undefined) this.writeHooks.delete(offset);
    else this.writeHooks.set(offset, fn);
  }

  /** A host write reached the device: the value is stored, then the hook runs. */
  hostWrite(offset: number, value: number): void {
    this.set(offset, value);
    this.writeHooks.get(offset)?.(value >>> 0);
  }
}

export interface LitmusEnvOptions {
  hostPlatform: MemoryPlatform;
  devicePlatform: MemoryPlatform;
  seed: number;
  /** Fabric crossing delay bound (default LITMUS_FABRIC_DELAY_NS). */
  fabricDelayNs?: number;
}

export interface LitmusEnv {
  readonly clock: VirtualClock;
  readonly ram: HostRam;
  readonly cpu: HostCpu;
  readonly engine: DeviceEngine;
  readonly fabric: LitmusFabric;
  readonly mmio: LitmusMmio;
  readonly registers: LitmusRegisterFile;
  /** Randomness for the programs (start times, poll intervals), separate from the models' own. */
  readonly prog: SeededRng;
  /** Called when the device's MSI-X write reaches the host, with the message data. */
  onMsix: ((vector: number) => void) | undefined;
  /** Errors thrown by programs and handlers (a run with any is not a valid run). */
  readonly errors: unknown[];
  /**
   * Starts a program at virtual time `atNs` from now. Its synchronous part runs in that event;
   * what it throws, or the promise it returns rejects with, goes to `errors`.
   */
  spawn(atNs: number, fn: () => unknown): void;
  /** Runs `fn` now, catching what it throws or rejects with into `errors`. */
  guard(fn: () => unknown): void;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * Builds the world of one run. Everything random derives from `seed`, in a fixed order (CPU,
 * programs, fabric, engine), so the same seed gives the same run.
 */
export function createLitmusEnv(o: LitmusEnvOptions): LitmusEnv {
  const root = new SeededRng(o.seed);
  const clock = new VirtualClock();
  const ram = new HostRam({ size: LITMUS_RAM_BYTES, pageSize: 4096, reserveLow: 0x10000 });
  const cpu = new HostCpu({ platform: o.hostPlatform, ram, clock, rng: root.fork() });
  const prog = root.fork();
  const registers = new LitmusRegisterFile();
  const errors: unknown[] = [];

  const guard = (fn: () => unknown): void => {
    try {
      const r = fn();
      if (isThenable(r)) r.then(undefined, (e: unknown) => errors.push(e));
    } catch (e) {
      errors.push(e);
    }
  };

  // Filled in below: the fabric's MSI-X path calls env.onMsix, which programs set later.
  let env: LitmusEnv | undefined;
  const fabric = new LitmusFabric(
    clock,
    root.fork(),
    {
      read: (a, l) => ram.readBytes(a, l),
      write: (a, d) => {
        // An MSI-X write is an interrupt, not a store: it reaches the CPU, not RAM. It still
        // crossed the fabric as a posted write, behind the device's earlier ones.
        if (a === LITMUS_MSIX_ADDRESS) {
          const vector = d.length >= 4 ? readLe32(d) : 0;
          guard(() => env?.onMsix?.(vector));
          return;
        }
        ram.dmaWrite(a, d);
      },
    },
    o.fabricDelayNs ?? LITMUS_FABRIC_DELAY_NS,
  );
  const engine = new DeviceEngine({ platform: o.devicePlatform, port: fabric, clock, rng: root.fork() });
  const mmio = new LitmusMmio(clock, fabric, {
    onWrite: (address, value) => guard(() => registers.hostWrite(address, value)),
    onRead: (address) => registers.get(address),
  });
  cpu.attachMmio(mmio);

  env = {
    clock,
    ram,
    cpu,
    engine,
    fabric,
    mmio,
    registers,
    prog,
    onMsix: undefined,
    errors,
    spawn(atNs, fn) {
      clock.setTimer(atNs, () => guard(fn));
    },
    guard,
  };
  return env;
}
