import { type Rng, TlpwireError, errorMessage } from '../../core/index.js';
import type { DmaPort, DmaReadCallback, DmaWriteOptions, HostRam } from '../../memory/index.js';
import type { VirtualClock } from '../virtual-clock.js';
import { type EventTrace, TRACE, fingerprint } from './trace.js';

export interface StressFabricOptions {
  clock: VirtualClock;
  rng: Rng;
  ram: HostRam;
  trace: EventTrace;
  /** Each request and posted write crosses the fabric in 1..maxDelayNs (default 1000). */
  maxDelayNs?: number;
  /**
   * A completion crosses back in 0..this ns (default maxDelayNs). 0 delivers the data within
   * the event that served the read (one event per read instead of two), unless a doorbell sent
   * earlier is still on its way: completions never pass it.
   */
  completionDelayNs?: number;
  /** Writes into [base, base + size) are MSI-X messages, not memory. */
  msi: { base: number; size: number; onMessage(address: number, data: Uint8Array): void };
  /** A DMA the host refused (outside RAM): the device used a garbage address. */
  onRefused?: (why: string) => void;
}

/**
 * The PCIe fabric of a stress run, in memory and without TLP encoding: the device's DMA reaches
 * host RAM (and MSI-X messages reach the CPU) directly, with random delays, keeping exactly the
 * ordering the PCIe table requires of one requester's traffic in one traffic class:
 *
 * - upstream posted writes (MWr, MSI-X) land in the order they were issued, unless a write has
 *   Relaxed Ordering (our device sets it on nothing);
 * - a read request is served only after every posted write issued before it has landed
 *   (non-posted must not pass posted);
 * - completions may arrive in any order relative to each other (different requests), each
 *   read's data in one completion;
 * - downstream (host → device) posted writes (doorbells) stay in order, and a completion never
 *   passes a downstream posted write issued before it.
 *
 * Everything else is allowed to happen and does, by the random delays. This is what
 * src/link + src/transaction do with real TLPs (see the ordering queues); the stress fabric
 * trades the TLP encoding for speed, so a stress run exercises the virtio, net and memory
 * layers and the PCIe ordering rules, not the TLP codec or the data link.
 */
export class StressFabric implements DmaPort {
  private readonly clock: VirtualClock;
  private readonly rng: Rng;
  private readonly ram: HostRam;
  private readonly trace: EventTrace;
  private readonly maxDelay: number;
  private readonly cplDelay: number;
  private readonly msiBase: number;
  private readonly msiEnd: number;
  private readonly onMsi: (address: number, data: Uint8Array) => void;
  private readonly onRefused: ((why: string) => void) | undefined;
  /** When the latest upstream posted write lands: later non-RO upstream traffic may not arrive before it. */
  private lastPostedLand = 0;
  /** When the latest downstream posted write arrives at the device. */
  private lastDownstream = 0;
  reads = 0;
  writes = 0;
  /** DMA the host refused (outside RAM): a device that got here read a garbage address. */
  errors = 0;
  lastError: string | undefined = undefined;

  constructor(o: StressFabricOptions) {
    this.clock = o.clock;
    this.rng = o.rng;
    this.ram = o.ram;
    this.trace = o.trace;
    this.maxDelay = Math.max(1, Math.floor(o.maxDelayNs ?? 1000));
    this.cplDelay = Math.max(0, Math.floor(o.completionDelayNs ?? this.maxDelay));
    this.msiBase = o.msi.base;
    this.msiEnd = o.msi.base + o.msi.size;
    this.onMsi = o.msi.onMessage;
    this.onRefused = o.onRefused;
  }

  private delay(): number {
    return 1 + this.rng.int(this.maxDelay);
  }

  write(address: number, data: Uint8Array, opts?: DmaWriteOptions): void {
    const now = this.clock.nowNs();
    this.writes++;
    this.trace.record(TRACE.DMA_WRITE, now, address, data.length, fingerprint(data));
    const t = now + this.delay();
    const land = opts?.relaxedOrdering === true ? t : Math.max(t, this.lastPostedLand);
    if (land > this.lastPostedLand) this.lastPostedLand = land;
    this.clock.setTimer(land - now, () => this.land(address, data));
  }

  private land(address: number, data: Uint8Array): void {
    const now = this.clock.nowNs();
    if (address >= this.msiBase && address < this.msiEnd) {
      this.trace.record(TRACE.MSI, now, (address - this.msiBase) >> 2, data.length, fingerprint(data));
      this.onMsi(address, data);
      return;
    }
    this.trace.record(TRACE.DMA_LAND, now, address, data.length, fingerprint(data));
    try {
      this.ram.dmaWrite(address, data);
    } catch (e) {
      // a posted write has no completion: the host drops it and logs the error
      this.refused(address, data.length, e);
    }
  }

  read(address: number, length: number): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => this.readCb(address, length, (d, e) => (d === undefined ? reject(e) : resolve(d))));
  }

  readCb(address: number, length: number, done: DmaReadCallback): void {
    const now = this.clock.nowNs();
    this.reads++;
    this.trace.record(TRACE.DMA_READ, now, address, length, 0);
    // non-posted must not pass posted: served after every earlier write landed
    const serve = Math.max(now + this.delay(), this.lastPostedLand);
    this.clock.setTimer(serve - now, () => this.serve(address, length, done));
  }

  private serve(address: number, length: number, done: DmaReadCallback): void {
    const now = this.clock.nowNs();
    this.trace.record(TRACE.DMA_SERVE, now, address, length, 0);
    let data: Uint8Array | undefined;
    let err: unknown = undefined;
    try {
      data = this.ram.readBytes(address, length);
    } catch (e) {
      this.refused(address, length, e);
      err = new TlpwireError('ERR_CPL_UR', `DMA read of ${length} bytes at 0x${address.toString(16)}: ${errorMessage(e)}`);
    }
    // the completion goes downstream: never before a doorbell issued earlier
    const arrive = Math.max(now + (this.cplDelay === 0 ? 0 : 1 + this.rng.int(this.cplDelay)), this.lastDownstream);
    if (arrive === now) this.complete(address, length, data, err, done);
    else this.clock.setTimer(arrive - now, () => this.complete(address, length, data, err, done));
  }

  private complete(address: number, length: number, data: Uint8Array | undefined, err: unknown, done: DmaReadCallback): void {
    this.trace.record(TRACE.DMA_CPL, this.clock.nowNs(), address, length, data === undefined ? 0 : fingerprint(data));
    done(data, err);
  }

  /** A downstream posted write (a doorbell): `deliver` runs when it reaches the device, in order. */
  downstreamWrite(deliver: () => void): void {
    const now = this.clock.nowNs();
    const at = Math.max(now + this.delay(), this.lastDownstream);
    this.lastDownstream = at;
    this.clock.setTimer(at - now, deliver);
  }

  private refused(address: number, length: number, e: unknown): void {
    this.errors++;
    this.lastError = `DMA of ${length} bytes at 0x${address.toString(16)} refused: ${errorMessage(e)}`;
    this.trace.record(TRACE.DMA_ERROR, this.clock.nowNs(), address, length, 0);
    this.onRefused?.(this.lastError);
  }
}
