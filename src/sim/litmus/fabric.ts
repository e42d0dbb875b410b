/**
 * The small PCIe fabric that litmus runs (and the memory-model tests) put between the host CPU
 * model and the device engine model. It keeps exactly the ordering the models rely on
 * (docs/MEMORY-MODEL.md, "What the fabric must guarantee") and adds a random delay to
 * everything else, so that every reordering PCIe allows can happen:
 *
 * - upstream (device → host), a posted write never lands before an earlier one unless it has
 *   Relaxed Ordering; a read request, and a completion, never pass an earlier posted write;
 *   reads complete in any order relative to each other;
 * - downstream (host → device), MMIO requests stay in order among themselves.
 *
 * It is not the transaction layer: no TLPs, tags or credits, just the ordering, which keeps a
 * litmus run to a few dozen events.
 */
import { TlpwireError, type Rng } from '../../core/index.js';
import type { DmaPort, DmaWriteOptions, MmioPort, MmioSize } from '../../memory/index.js';
import type { VirtualClock } from '../virtual-clock.js';

/** What the fabric's requests land on: HostRam.dmaWrite / readBytes, or a DmaTarget. */
export interface LitmusMemory {
  read(address: number, length: number): Uint8Array;
  write(address: number, data: Uint8Array): void;
}

/** The device's DMA port onto host memory, with PCIe's upstream ordering. */
export class LitmusFabric implements DmaPort {
  /** Time the latest upstream posted write lands: later non-RO traffic may not arrive before it. */
  private lastPostedLand = 0;
  private lastDownstream = 0;
  /** Every write that landed, in landing order (for checks and traces). */
  readonly writes: { address: number; data: Uint8Array }[] = [];

  constructor(
    private readonly clock: VirtualClock,
    private readonly rng: Rng,
    private readonly memory: LitmusMemory,
    /** Each request takes 1..maxDelayNs to cross (before ordering holds it back further). */
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
    // Posted must not pass posted, unless the later one has RO (then it may land first).
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
        // Completions of different reads may pass each other: each takes its own delay back.
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

/** A device's register file as the host's MMIO reaches it. */
export interface LitmusMmioTarget {
  onWrite(address: number, value: number): void;
  onRead(address: number): number;
}

/** The host's MMIO into a device whose registers are callbacks. */
export class LitmusMmio implements MmioPort {
  /** Every access as the CPU issued it (for checks and traces). */
  readonly log: { kind: 'w' | 'r'; address: number; value: number; relaxed: boolean; atNs: number }[] = [];

  constructor(
    private readonly clock: VirtualClock,
    private readonly fabric: LitmusFabric,
    private readonly device: LitmusMmioTarget,
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

/**
 * Lets every pending promise continuation run. The device programs and the engine's completion
 * handling continue in microtasks; a macrotask turn is the one point where Node has run all of
 * them. It is not a source of time or randomness: nothing else is queued on the event loop
 * during a run, so the order of events stays a function of the seed.
 */
const settleMicrotasks = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** The default bound on events in one run: far above any litmus run, low enough to fail fast. */
export const DEFAULT_MAX_EVENTS = 1_000_000;

/**
 * Runs the virtual clock to the end, letting promise continuations (device programs awaiting
 * reads, the engine's completion handling) run between events, as the simulator does. Throws
 * ERR_USAGE when more than `maxEvents` events run (a program that never ends).
 */
export async function runToEnd(clock: VirtualClock, maxEvents = DEFAULT_MAX_EVENTS): Promise<void> {
  for (let n = 0; n < maxEvents; n++) {
    await settleMicrotasks();
    if (!clock.step()) {
      await settleMicrotasks();
      if (clock.pending === 0) return;
    }
  }
  throw new TlpwireError('ERR_USAGE', `the simulation did not settle within ${maxEvents} events (a program that never ends?)`);
}

/** Calls fn at virtual time `atNs` from now. */
export function at(clock: VirtualClock, atNs: number, fn: () => void): void {
  clock.setTimer(atNs, fn);
}

/** A little-endian u32 as 4 bytes (what a DMA write of a 32-bit value carries). */
export function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

/** The little-endian u32 at the start of `b`. */
export function readLe32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}
