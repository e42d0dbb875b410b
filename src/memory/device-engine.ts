import { type Clock, type Counters, type Logger, type Rng, type TimerHandle, TlpwireError, errorMessage, silentLogger } from '../core/index.js';
import { IOMMU_PAGE_SIZE } from '../spec/index.js';
import { DEVICE_BARRIER_KINDS, type DeviceBarrierKind, type DmaPort, type DmaReadCallback, type DmaWriteOptions, type MemoryPlatform } from './types.js';

export interface DeviceEngineOptions {
  platform: MemoryPlatform;
  port: DmaPort;
  clock: Clock;
  rng: Rng;
  logger?: Logger;
  counters?: Counters;
  /**
   * Longest a write waits in the engine before it is emitted (default 5 µs), unless it waits
   * for an earlier read. 0: every write is emitted as soon as ordering allows (no write buffer),
   * the cheap setting for the real runtime.
   */
  maxWriteResidenceNs?: number;
  /**
   * Each write gets a random time to leave: usually uniform in [0, this] (default 1 µs), and with
   * probability `slowWriteProbability` uniform up to maxWriteResidenceNs (default 0.25 on weak;
   * 0.02 on tso, where a slow write only holds back the ones behind it).
   */
  writeDelayNs?: number;
  slowWriteProbability?: number;
  /** weak: a read is issued after a delay uniform in [0, this] (default 1 µs), so later reads overtake earlier ones. */
  readIssueDelayMaxNs?: number;
  /** Writes the engine holds; past this the oldest is emitted as soon as it may be (default 64). */
  writeBufferSize?: number;
  /**
   * weak: bytes a speculative read-ahead fetches after a read, within the same 4 KiB page
   * (default 64; 0 turns speculation off). The read-ahead is its own MRd, racing the demand read.
   */
  readAheadBytes?: number;
  /** weak: chance that a read starts a read-ahead, and that a read may be served from one (default 0.5). */
  speculationProbability?: number;
  /** weak: speculative data older than this is not used (default 20 µs). */
  maxSpeculationNs?: number;
}

/**
 * Settings for the real runtime: writes and reads leave as soon as ordering allows, without
 * Clock timers, and nothing is speculated (no extra MRds on a real link).
 */
export const IMMEDIATE_DEVICE_ENGINE_OPTIONS = {
  maxWriteResidenceNs: 0,
  readIssueDelayMaxNs: 0,
  readAheadBytes: 0,
} as const satisfies Partial<DeviceEngineOptions>;

export interface DeviceEngineStats {
  reads: number;
  readErrors: number;
  writes: number;
  writesEmitted: number;
  /** Writes emitted before an earlier write of the same engine (weak only). */
  writesReordered: number;
  writeErrors: number;
  /** Read-ahead MRds issued (weak). */
  speculativeReads: number;
  /** Reads answered from read-ahead data instead of the fabric (weak). */
  speculativeHits: number;
  barriers: Record<DeviceBarrierKind, number>;
}

class PendingWrite {
  constructor(
    readonly address: number,
    readonly data: Uint8Array,
    readonly relaxed: boolean,
    /** Program order among this engine's reads and writes. */
    readonly seq: number,
    readonly epoch: number,
    /** When it may leave (if ordering lets it). */
    readonly deadline: number,
    /** Every read with a smaller id must have completed before this write leaves. */
    readonly readGate: number,
  ) {}
  // weak: overlap bookkeeping, so that deciding whether a write may leave is O(1)
  /** Earlier pending writes to overlapping bytes (it must wait for them). */
  blockers = 0;
  /** Later pending writes to overlapping bytes. */
  dependents = 0;
  /** Earlier reads of overlapping bytes still outstanding (a read must not see a later write). */
  readBlockers = 0;
}

const WAITING = 0;
const SCHEDULED = 1;
const ISSUED = 2;
const DONE = 3;

class ReadOp {
  state = WAITING;
  /** Earlier writes to these bytes not yet emitted when the read left: their data is forwarded. */
  forwards: PendingWrite[] | undefined = undefined;
  resolve: ((data: Uint8Array) => void) | undefined = undefined;
  reject: ((err: unknown) => void) | undefined = undefined;
  /** The callback form (readCb): called after the engine's own bookkeeping, never re-entrantly. */
  done: DmaReadCallback | undefined = undefined;
  /** weak: later pending writes to overlapping bytes that wait for this read. */
  blocks = 0;
  constructor(
    readonly id: number,
    readonly seq: number,
    readonly address: number,
    readonly length: number,
    /** Reads with a smaller id must complete before this one is issued. */
    readonly fenceId: number,
    /** Writes with a smaller seq must have been emitted before this one is issued. */
    readonly writeFenceSeq: number,
  ) {}
}

/**
 * Data a read-ahead fetched: later reads it covers may be answered from it, as if they had been
 * performed when it was — legal until a read barrier, a newer read of those bytes, or the
 * engine's own write to them.
 */
class SpecLine {
  data: Uint8Array | undefined = undefined;
  /** A newer read of these bytes completed (or the engine wrote them) while it was in flight. */
  stale = false;
  constructor(
    readonly address: number,
    readonly length: number,
    /** The demand read it accompanied: it counts as part of that read in program order. */
    readonly sourceId: number,
    readonly issuedNs: number,
  ) {}
}

interface Waiter {
  readId: number;
  writeSeq: number;
  resolve: () => void;
}

/** Read-ahead lines kept at once. */
const MAX_SPEC_LINES = 16;
const RELAXED: DmaWriteOptions = { relaxedOrdering: true };
const RESOLVED: Promise<void> = Promise.resolve();
const KIND_INDEX = new Map<string, number>(DEVICE_BARRIER_KINDS.map((k, i) => [k, i]));

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}

/**
 * The device's DMA engine in front of a DmaPort (the transaction layer's requester).
 *
 * - Writes (MWr, MSI-X included) wait in the engine and leave after a random delay. `tso`: in
 *   program order, and never before an earlier read completed (TSO keeps loads before later
 *   stores). `weak`: writes between two write barriers (`wmb`, `mb`) leave in any order, except
 *   that writes to overlapping bytes keep their order and a write never passes an earlier read
 *   of the same bytes.
 * - Reads: `tso`: one at a time, so they complete in order. `weak`: each is issued after a
 *   random delay and the fabric may complete them in any order; `rmb` makes later reads wait
 *   for every earlier one. Reads see the engine's own earlier writes (forwarding), but may
 *   leave before them (a store buffer on both platforms): only `mb` orders writes before reads.
 * - `mb` (and `virt_mb` on tso): earlier writes are emitted before later reads are issued, and
 *   later writes wait for earlier reads. The fabric then keeps a read behind the writes emitted
 *   before it (PCIe: non-posted does not pass posted).
 * - Speculation (`weak`): a read may start a read-ahead MRd of the bytes after it (same 4 KiB
 *   page) that leaves at once, before the demand read; a later read those bytes cover may be
 *   answered from it — older data, as if that read had been performed early. Legal until a
 *   read barrier, a newer read of those bytes, or the engine's own write to them. This is what
 *   makes a device's missing rmb visible even when the device awaits each read before the next.
 */
export class DeviceEngine {
  readonly platform: MemoryPlatform;
  private readonly port: DmaPort;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly logger: Logger;
  private readonly counters: Counters | undefined;
  private readonly immediate: boolean;
  private readonly maxResidenceNs: number;
  private readonly writeDelayNs: number;
  private readonly slowWriteP: number;
  private readonly readIssueDelayMaxNs: number;
  private readonly writeBufferSize: number;
  private readonly readAheadBytes: number;
  private readonly specP: number;
  private readonly maxSpeculationNs: number;

  private opSeq = 0;
  private nextReadId = 0;
  private epoch = 0;
  /** Reads issued from now on wait for reads with a smaller id (set by rmb/mb). */
  private readFence = 0;
  /** Reads issued from now on wait for writes with a smaller seq to be emitted (set by mb). */
  private writeFence = 0;
  /** Writes from now on wait for reads with a smaller id (set by mb). */
  private writeReadGate = 0;
  /** Writes with a smaller seq leave as soon as they may (mb, drainWrites, a full buffer). */
  private forceSeq = 0;

  private readonly pending: PendingWrite[] = [];
  private readonly outstanding: ReadOp[] = [];
  private readonly waiters: Waiter[] = [];
  /** weak: read-ahead data, in flight or arrived (few: bounded by MAX_SPEC_LINES). */
  private spec: SpecLine[] = [];
  private readonly eligibleScratch: number[] = [];
  private timer: TimerHandle | undefined = undefined;
  private timerAt = Infinity;
  private readonly onTimer = (): void => this.timerFired();
  private readonly onWriteError = (err: unknown): void => this.writeFailed(err);

  private nReads = 0;
  private nReadErrors = 0;
  private nWrites = 0;
  private nEmitted = 0;
  private nReordered = 0;
  private nWriteErrors = 0;
  private nSpecReads = 0;
  private nSpecHits = 0;
  private readonly barrierCounts: number[] = DEVICE_BARRIER_KINDS.map(() => 0);

  constructor(options: DeviceEngineOptions) {
    this.platform = options.platform;
    if (this.platform !== 'tso' && this.platform !== 'weak') {
      throw new TlpwireError('ERR_USAGE', `unknown memory platform ${String(options.platform)} (tso or weak)`);
    }
    this.port = options.port;
    this.clock = options.clock;
    this.rng = options.rng;
    this.logger = options.logger ?? silentLogger;
    this.counters = options.counters;
    this.maxResidenceNs = Math.max(0, Math.floor(options.maxWriteResidenceNs ?? 5_000));
    this.immediate = this.maxResidenceNs === 0;
    this.writeDelayNs = Math.min(Math.max(0, Math.floor(options.writeDelayNs ?? 1_000)), this.maxResidenceNs);
    this.slowWriteP = options.slowWriteProbability ?? (this.platform === 'weak' ? 0.25 : 0.02);
    this.readIssueDelayMaxNs = Math.max(0, Math.floor(options.readIssueDelayMaxNs ?? 1_000));
    this.writeBufferSize = Math.max(1, options.writeBufferSize ?? 64);
    this.readAheadBytes = this.platform === 'weak' ? Math.max(0, Math.floor(options.readAheadBytes ?? 64)) : 0;
    this.specP = options.speculationProbability ?? 0.5;
    this.maxSpeculationNs = Math.max(0, options.maxSpeculationNs ?? 20_000);
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** A DMA write (MWr; an MSI-X message is one too). The data is copied now. */
  write(address: number, data: Uint8Array, opts?: DmaWriteOptions): void {
    this.nWrites++;
    const w = new PendingWrite(
      address,
      data.slice(),
      opts?.relaxedOrdering === true,
      this.opSeq++,
      this.epoch,
      this.clock.nowNs() + (this.rng.chance(this.slowWriteP) ? this.rng.int(this.maxResidenceNs + 1) : this.rng.int(this.writeDelayNs + 1)),
      this.platform === 'tso' ? this.nextReadId : this.writeReadGate,
    );
    if (this.platform === 'weak') {
      const len = w.data.length;
      const p = this.pending;
      for (let j = 0; j < p.length; j++) {
        const q = p[j]!;
        if (overlaps(q.address, q.data.length, address, len)) {
          q.dependents++;
          w.blockers++;
        }
      }
      const o = this.outstanding;
      for (let j = 0; j < o.length; j++) {
        const r = o[j]!;
        if (overlaps(r.address, r.length, address, len)) {
          r.blocks++;
          w.readBlockers++;
        }
      }
    }
    this.pending.push(w);
    // A later read must see this write: read-ahead data of these bytes is now too old.
    if (this.spec.length > 0) this.invalidateSpec(address, w.data.length);
    if (this.immediate) this.forceSeq = this.opSeq;
    else if (this.pending.length > this.writeBufferSize) this.forceSeq = Math.max(this.forceSeq, this.pending[0]!.seq + 1);
    if (this.forceSeq > this.pending[0]!.seq) this.pump();
    else if (w.deadline < this.timerAt) this.arm();
  }

  /** Writes waiting in the engine. */
  get pendingWrites(): number {
    return this.pending.length;
  }

  /** Reads not yet completed. */
  get outstandingReads(): number {
    return this.outstanding.length;
  }

  /**
   * Emits every buffered write now, as far as ordering allows (a write waiting for an earlier
   * read leaves when that read completes). A device calls this before it answers a register
   * read whose value promises that its earlier DMA writes have landed.
   */
  drainWrites(): void {
    this.forceSeq = this.opSeq;
    this.pump();
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** A DMA read; rejects with the port's error (UR/CA, completion timeout). */
  read(address: number, length: number): Promise<Uint8Array> {
    const r = this.newRead(address, length);
    const p = new Promise<Uint8Array>((resolve, reject) => {
      r.resolve = resolve;
      r.reject = reject;
    });
    this.outstanding.push(r);
    this.tryIssue(r);
    return p;
  }

  /**
   * The same read with a callback (the simulator's fast path): `done(data)` or
   * `done(undefined, err)`, called from the event that completed the read (or a deferred one),
   * never from inside this call. With a port that has `readCb`, no promise is involved at all.
   */
  readCb(address: number, length: number, done: DmaReadCallback): void {
    const r = this.newRead(address, length);
    r.done = done;
    this.outstanding.push(r);
    this.tryIssue(r);
  }

  private newRead(address: number, length: number): ReadOp {
    this.nReads++;
    const id = this.nextReadId++;
    return new ReadOp(id, this.opSeq++, address, length, this.platform === 'tso' ? id : this.readFence, this.writeFence);
  }

  // ---- barriers -------------------------------------------------------------------------------

  /** Writes after it leave after every write before it (weak); tso writes are in order already. */
  wmb(): void {
    this.count('wmb');
    if (this.platform === 'weak') this.epoch++;
  }

  /** Reads after it are issued only when every read before it has completed. */
  rmb(): Promise<void> {
    this.readBarrier();
    return this.waitFor(this.nextReadId, 0);
  }

  private readBarrier(): void {
    this.count('rmb');
    this.readFence = this.nextReadId;
    this.spec = [];
  }

  /** Both, plus writes before reads: earlier writes are emitted before later reads are issued. */
  mb(): Promise<void> {
    this.count('mb');
    return this.fullBarrier();
  }

  /** Emits every buffered write and waits for every read in flight (a full barrier). */
  flush(): Promise<void> {
    return this.fullBarrier();
  }

  /**
   * `virt_*` are a CPU-built device's SMP barriers: on tso, virt_mb drains its store buffer
   * (x86's locked op) and the others are free; on weak they order nothing for DMA.
   */
  barrier(kind: DeviceBarrierKind): void | Promise<void> {
    switch (kind) {
      case 'wmb':
        return this.wmb();
      case 'rmb':
        return this.rmb();
      case 'mb':
        return this.mb();
      case 'virt_wmb':
      case 'virt_rmb':
        this.count(kind);
        return;
      case 'virt_mb':
        this.count(kind);
        return this.platform === 'tso' ? this.fullBarrier() : undefined;
      default:
        throw new TlpwireError('ERR_USAGE', `unknown device barrier ${String(kind)}`);
    }
  }

  /**
   * `barrier` with a callback: true when it is complete at once; otherwise `done` is called
   * later from the clock's event loop (never from inside this call).
   */
  barrierCb(kind: DeviceBarrierKind, done: () => void): boolean {
    switch (kind) {
      case 'wmb':
        this.wmb();
        return true;
      case 'rmb':
        this.readBarrier();
        return this.waitForCb(this.nextReadId, 0, done);
      case 'mb':
        this.count('mb');
        this.fence();
        return this.waitForCb(this.nextReadId, this.opSeq, done);
      case 'virt_wmb':
      case 'virt_rmb':
        this.count(kind);
        return true;
      case 'virt_mb':
        this.count(kind);
        if (this.platform !== 'tso') return true;
        this.fence();
        return this.waitForCb(this.nextReadId, this.opSeq, done);
      default:
        throw new TlpwireError('ERR_USAGE', `unknown device barrier ${String(kind)}`);
    }
  }

  stats(): DeviceEngineStats {
    const barriers = {} as Record<DeviceBarrierKind, number>;
    DEVICE_BARRIER_KINDS.forEach((k, i) => {
      barriers[k] = this.barrierCounts[i]!;
    });
    return {
      reads: this.nReads,
      readErrors: this.nReadErrors,
      writes: this.nWrites,
      writesEmitted: this.nEmitted,
      writesReordered: this.nReordered,
      writeErrors: this.nWriteErrors,
      speculativeReads: this.nSpecReads,
      speculativeHits: this.nSpecHits,
      barriers,
    };
  }

  // ---- internals ------------------------------------------------------------------------------

  private count(kind: DeviceBarrierKind): void {
    this.barrierCounts[KIND_INDEX.get(kind)!]!++;
  }

  private fullBarrier(): Promise<void> {
    this.fence();
    return this.waitFor(this.nextReadId, this.opSeq);
  }

  /** The ordering state a full barrier sets up (its wait is the caller's). */
  private fence(): void {
    if (this.platform === 'weak') this.epoch++;
    this.readFence = this.nextReadId;
    this.spec = [];
    this.writeFence = this.opSeq;
    this.writeReadGate = this.nextReadId;
    this.forceSeq = this.opSeq;
    this.pump();
  }

  private lowestIncompleteRead(): number {
    return this.outstanding.length > 0 ? this.outstanding[0]!.id : this.nextReadId;
  }

  private writesEmittedBefore(seq: number): boolean {
    return this.pending.length === 0 || this.pending[0]!.seq >= seq;
  }

  private waitFor(readId: number, writeSeq: number): Promise<void> {
    if (this.lowestIncompleteRead() >= readId && this.writesEmittedBefore(writeSeq)) return RESOLVED;
    return new Promise<void>((resolve) => this.waiters.push({ readId, writeSeq, resolve }));
  }

  private waitForCb(readId: number, writeSeq: number, done: () => void): boolean {
    if (this.lowestIncompleteRead() >= readId && this.writesEmittedBefore(writeSeq)) return true;
    // resolved from inside pump(): deferred, so the continuation never re-enters the engine
    this.waiters.push({ readId, writeSeq, resolve: () => this.clock.defer(done) });
    return false;
  }

  private checkWaiters(): void {
    const w = this.waiters;
    if (w.length === 0) return;
    const low = this.lowestIncompleteRead();
    for (let i = 0; i < w.length; ) {
      const x = w[i]!;
      if (low >= x.readId && this.writesEmittedBefore(x.writeSeq)) {
        w.splice(i, 1);
        x.resolve();
      } else {
        i++;
      }
    }
  }

  /** May pending[i] be emitted now? */
  private eligible(i: number): boolean {
    const p = this.pending;
    const w = p[i]!;
    if (this.lowestIncompleteRead() < w.readGate) return false;
    if (this.platform === 'tso') return i === 0;
    // not behind an earlier write to the same bytes, and a read must not see a write that
    // follows it in program order (counts kept by write(), emit() and readFinished())
    return w.epoch === p[0]!.epoch && w.blockers === 0 && w.readBlockers === 0;
  }

  /** Indices of emittable writes among those with seq < maxSeq, into eligibleScratch; returns the count. */
  private collectEligible(maxSeq: number): number {
    const p = this.pending;
    const out = this.eligibleScratch;
    let n = 0;
    const limit = this.platform === 'tso' ? Math.min(1, p.length) : p.length;
    const e0 = p.length > 0 ? p[0]!.epoch : 0;
    for (let i = 0; i < limit; i++) {
      const w = p[i]!;
      if (w.seq >= maxSeq || w.epoch !== e0) break;
      if (this.eligible(i)) out[n++] = i;
    }
    return n;
  }

  /** Emits forced writes while any may leave, then lets reads and waiters move. */
  private pump(): void {
    for (;;) {
      const n = this.collectEligible(this.forceSeq);
      if (n === 0) break;
      this.emit(this.eligibleScratch[n === 1 ? 0 : this.rng.int(n)]!);
    }
    this.tryIssueAll();
    this.checkWaiters();
    this.arm();
  }

  private emit(i: number): void {
    const p = this.pending;
    const w = p[i]!;
    if (i === 0) p.shift();
    else {
      this.nReordered++;
      for (let j = i; j < p.length - 1; j++) p[j] = p[j + 1]!;
      p.length--;
    }
    this.nEmitted++;
    if (w.dependents > 0) {
      // it had no earlier overlapping write (it was eligible): every overlapping one is later
      for (let j = 0; j < p.length; j++) if (overlaps(p[j]!.address, p[j]!.data.length, w.address, w.data.length)) p[j]!.blockers--;
    }
    if (this.spec.length > 0) this.invalidateSpec(w.address, w.data.length);
    try {
      const r = this.port.write(w.address, w.data, w.relaxed ? RELAXED : undefined);
      if (r !== undefined) r.then(undefined, this.onWriteError);
    } catch (err) {
      this.writeFailed(err);
    }
  }

  private writeFailed(err: unknown): void {
    this.nWriteErrors++;
    this.counters?.add('memory.device.write_errors');
    this.logger.warn({ err: errorMessage(err) }, 'DMA write failed');
  }

  /** Sets the timer for the earliest deadline among writes that may leave now. */
  private arm(): void {
    let next = Infinity;
    const n = this.collectEligible(Infinity);
    for (let k = 0; k < n; k++) next = Math.min(next, this.pending[this.eligibleScratch[k]!]!.deadline);
    // Nothing may leave until a read completes: that completion re-arms, so no idle spinning.
    if (next === this.timerAt) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = next;
    if (next !== Infinity) this.timer = this.clock.setTimer(Math.max(0, next - this.clock.nowNs()), this.onTimer);
  }

  private timerFired(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock.nowNs();
    // Every write whose time has come and that ordering lets go, earliest deadline first. A
    // deadline is at most maxResidence after the write; only a wait for an earlier read (which
    // re-arms on completion) can hold a write longer.
    for (;;) {
      const n = this.collectEligible(Infinity);
      let best = -1;
      for (let k = 0; k < n; k++) {
        const i = this.eligibleScratch[k]!;
        if (this.pending[i]!.deadline <= now && (best < 0 || this.pending[i]!.deadline < this.pending[best]!.deadline)) best = i;
      }
      if (best < 0) break;
      this.emit(best);
    }
    this.pump();
  }

  private tryIssueAll(): void {
    const o = this.outstanding;
    for (let i = 0; i < o.length; i++) if (o[i]!.state === WAITING) this.tryIssue(o[i]!);
  }

  private tryIssue(r: ReadOp): void {
    if (r.state !== WAITING) return;
    // Outstanding reads are in id order: the first one tells whether all before the fence are done.
    if (this.outstanding[0]!.id < r.fenceId || !this.writesEmittedBefore(r.writeFenceSeq)) return;
    // Two reads of the same bytes complete in program order (coherence), so polling a location
    // never sees it go back in time.
    const o = this.outstanding;
    for (let i = 0; i < o.length && o[i]!.id < r.id; i++) {
      if (overlaps(o[i]!.address, o[i]!.length, r.address, r.length)) return;
    }
    // A read-ahead leaves at once, while the demand read may wait: the prefetched bytes can be
    // older than what the demand read returns (speculation ahead of the program).
    if (this.readAheadBytes > 0 && this.rng.chance(this.specP)) this.readAhead(r);
    if (this.platform === 'weak' && this.readIssueDelayMaxNs > 0) {
      r.state = SCHEDULED;
      this.clock.setTimer(this.rng.int(this.readIssueDelayMaxNs + 1), () => this.issue(r));
    } else {
      this.issue(r);
    }
  }

  private issue(r: ReadOp): void {
    r.state = ISSUED;
    const p = this.pending;
    for (let i = 0; i < p.length; i++) {
      const w = p[i]!;
      if (w.seq > r.seq) break;
      if (overlaps(w.address, w.data.length, r.address, r.length)) (r.forwards ??= []).push(w);
    }
    if (this.spec.length > 0) {
      const line = this.specFor(r);
      if (line !== undefined && this.rng.chance(this.specP)) {
        this.nSpecHits++;
        const off = r.address - line.address;
        const data = line.data!.slice(off, off + r.length);
        // Answered later, from the event loop, so completion handling never re-enters read().
        this.clock.defer(() => this.readFinished(r, data, undefined, false));
        return;
      }
    }
    const port = this.port;
    try {
      if (port.readCb !== undefined) {
        port.readCb(r.address, r.length, (data, err) => this.readFinished(r, data, err, true));
        return;
      }
      port.read(r.address, r.length).then(
        (data) => this.readFinished(r, data, undefined, true),
        (err: unknown) => this.readFinished(r, undefined, err, true),
      );
    } catch (err) {
      // A callback reader is answered later, so its completion never re-enters the caller
      // (we may be inside read() or pump()); a promise defers by itself.
      if (r.done === undefined) this.readFinished(r, undefined, err, true);
      else this.clock.defer(() => this.readFinished(r, undefined, err, true));
    }
  }

  private readFinished(r: ReadOp, data: Uint8Array | undefined, err: unknown, fromFabric: boolean): void {
    r.state = DONE;
    // Coherence: read-ahead data of these bytes may be older than what this read returns.
    if (fromFabric && data !== undefined && this.spec.length > 0) this.invalidateSpec(r.address, r.length);
    const o = this.outstanding;
    const i = o.indexOf(r);
    if (i >= 0) {
      for (let j = i; j < o.length - 1; j++) o[j] = o[j + 1]!;
      o.length--;
    }
    if (r.blocks > 0) {
      r.blocks = 0;
      const p = this.pending;
      for (let j = 0; j < p.length; j++) {
        const w = p[j]!;
        if (w.seq > r.seq && overlaps(w.address, w.data.length, r.address, r.length)) w.readBlockers--;
      }
    }
    if (data !== undefined) {
      const f = r.forwards;
      if (f !== undefined) {
        for (const w of f) {
          const from = Math.max(r.address, w.address);
          const to = Math.min(r.address + Math.min(r.length, data.length), w.address + w.data.length);
          if (to > from) data.set(w.data.subarray(from - w.address, to - w.address), from - r.address);
        }
        r.forwards = undefined;
      }
      if (r.done === undefined) r.resolve?.(data);
    } else {
      this.nReadErrors++;
      r.reject?.(err);
    }
    // A completed read may release later reads, gated writes and barriers.
    this.pump();
    // The callback form continues the reader now, from this event, after the engine is consistent.
    if (r.done !== undefined) {
      const done = r.done;
      r.done = undefined;
      if (data !== undefined) done(data, undefined);
      else done(undefined, err);
    }
  }

  /** weak: a read-ahead MRd for the bytes after `r` in its 4 KiB page, racing `r` in the fabric. */
  private readAhead(r: ReadOp): void {
    const start = r.address + r.length;
    const pageEnd = (Math.floor((r.address + Math.max(r.length, 1) - 1) / IOMMU_PAGE_SIZE) + 1) * IOMMU_PAGE_SIZE;
    const length = Math.min(this.readAheadBytes, pageEnd - start);
    if (length <= 0) return;
    const line = new SpecLine(start, length, r.id, this.clock.nowNs());
    if (this.spec.length >= MAX_SPEC_LINES) this.spec.shift();
    this.spec.push(line);
    this.nSpecReads++;
    const landed = (data: Uint8Array | undefined): void => {
      // A speculative read that fails is simply forgotten (the demand read reports its own error).
      if (data === undefined || line.stale || data.length < length) this.dropSpec(line);
      else line.data = data;
    };
    try {
      if (this.port.readCb !== undefined) this.port.readCb(start, length, landed);
      else this.port.read(start, length).then(landed, () => landed(undefined));
    } catch {
      this.dropSpec(line);
    }
  }

  /** Arrived read-ahead data that may answer `r`, if any. */
  private specFor(r: ReadOp): SpecLine | undefined {
    const oldest = this.clock.nowNs() - this.maxSpeculationNs;
    for (let i = this.spec.length - 1; i >= 0; i--) {
      const l = this.spec[i]!;
      if (l.data === undefined || l.stale || l.issuedNs < oldest || l.sourceId < r.fenceId) continue;
      if (r.address >= l.address && r.address + r.length <= l.address + l.length) return l;
    }
    return undefined;
  }

  private invalidateSpec(address: number, length: number): void {
    const s = this.spec;
    for (let i = 0; i < s.length; ) {
      const l = s[i]!;
      if (!overlaps(l.address, l.length, address, length)) {
        i++;
      } else if (l.data === undefined) {
        l.stale = true;
        i++;
      } else {
        s.splice(i, 1);
      }
    }
  }

  private dropSpec(line: SpecLine): void {
    const i = this.spec.indexOf(line);
    if (i >= 0) this.spec.splice(i, 1);
  }
}
