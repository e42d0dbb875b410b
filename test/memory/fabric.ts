import type { Rng } from '../../src/core/index.js';
import type { DmaPort, DmaWriteOptions, MmioPort, MmioSize } from '../../src/memory/index.js';
import type { VirtualClock } from '../../src/sim/index.js';

/** What the fabric's requests land on: HostRam.dmaWrite / readBytes, or a DmaTarget. */
export interface TestMemory {
  read(address: number, length: number): Uint8Array;
  write(address: number, data: Uint8Array): void;
}

/**
 * A stand-in for link + transaction layer, just enough PCIe ordering for the memory-model
 * tests: every request takes a random delay, but upstream (device → host) a posted write never
 * lands before an earlier one unless it has Relaxed Ordering, and a read request or a
 * completion never passes an earlier posted write. Reads complete in any order.
 */
export class TestFabric implements DmaPort {
  /** Time the latest upstream posted write lands: later non-RO traffic may not arrive before it. */
  private lastPostedLand = 0;
  private lastDownstream = 0;
  readonly writes: { address: number; data: Uint8Array }[] = [];

  constructor(
    private readonly clock: VirtualClock,
    private readonly rng: Rng,
    private readonly memory: TestMemory,
    private readonly maxDelayNs = 2_000,
    /** Called when a write lands (after memory was written): MSI-X detection. */
    private readonly onWriteLanded?: (address: number, data: Uint8Array) => void,
  ) {}

  private delay(): number {
    return 1 + this.rng.int(this.maxDelayNs);
  }

  write(address: number, data: Uint8Array, opts?: DmaWriteOptions): void {
    const now = this.clock.nowNs();
    const t = now + this.delay();
    const land = opts?.relaxedOrdering === true ? t : Math.max(t, this.lastPostedLand);
    this.lastPostedLand = Math.max(this.lastPostedLand, land);
    this.clock.setTimer(land - now, () => {
      this.memory.write(address, data);
      this.writes.push({ address, data });
      this.onWriteLanded?.(address, data);
    });
  }

  read(address: number, length: number): Promise<Uint8Array> {
    const now = this.clock.nowNs();
    // Non-posted must not pass posted: the request reaches memory after earlier writes landed.
    const serve = Math.max(now + this.delay(), this.lastPostedLand);
    return new Promise<Uint8Array>((resolve, reject) => {
      this.clock.setTimer(serve - now, () => {
        let data: Uint8Array;
        try {
          data = this.memory.read(address, length);
        } catch (err) {
          reject(err);
          return;
        }
        this.clock.setTimer(this.delay(), () => resolve(data));
      });
    });
  }

  /** Delay before an upstream completion may arrive: never before earlier posted writes. */
  upstreamCompletionDelay(): number {
    const now = this.clock.nowNs();
    return Math.max(now + this.delay(), this.lastPostedLand) - now;
  }

  /** Downstream (host → device) requests stay in order among themselves. */
  downstreamDelay(): number {
    const now = this.clock.nowNs();
    const at = Math.max(now + this.delay(), this.lastDownstream);
    this.lastDownstream = at;
    return at - now;
  }
}

/** The host's MMIO into a device whose registers are callbacks. */
export class TestMmio implements MmioPort {
  readonly log: { kind: 'w' | 'r'; address: number; value: number; relaxed: boolean; atNs: number }[] = [];

  constructor(
    private readonly clock: VirtualClock,
    private readonly fabric: TestFabric,
    private readonly device: {
      onWrite(address: number, value: number): void;
      onRead(address: number): number;
    },
  ) {}

  write32(address: number, value: number, relaxed: boolean): void {
    this.log.push({ kind: 'w', address, value, relaxed, atNs: this.clock.nowNs() });
    this.clock.setTimer(this.fabric.downstreamDelay(), () => this.device.onWrite(address, value));
  }

  read32(address: number): Promise<number> {
    this.log.push({ kind: 'r', address, value: 0, relaxed: false, atNs: this.clock.nowNs() });
    return new Promise<number>((resolve) => {
      this.clock.setTimer(this.fabric.downstreamDelay(), () => {
        const v = this.device.onRead(address);
        // The completion travels upstream behind the device's earlier posted writes.
        this.clock.setTimer(this.fabric.upstreamCompletionDelay(), () => resolve(v));
      });
    });
  }

  write(address: number, _size: MmioSize, value: number, relaxed: boolean): void {
    this.write32(address, value, relaxed);
  }

  read(address: number, _size: MmioSize): Promise<number> {
    return this.read32(address);
  }
}

const macrotask = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs the virtual clock to the end, letting promise continuations (device programs awaiting
 * reads, the engine's completion handling) run between events, as the simulator does.
 */
export async function runToEnd(clock: VirtualClock, maxEvents = 1_000_000): Promise<void> {
  for (let n = 0; n < maxEvents; n++) {
    await macrotask();
    if (!clock.step()) {
      await macrotask();
      if (clock.pending === 0) return;
    }
  }
  throw new Error(`simulation did not settle within ${maxEvents} events`);
}

/** Calls fn at virtual time `atNs` from now. */
export function at(clock: VirtualClock, atNs: number, fn: () => void): void {
  clock.setTimer(atNs, fn);
}

export function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

export function readLe32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}
