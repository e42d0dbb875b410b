/**
 * Two transaction layers joined by the fake link, on a virtual clock: "rc" (ID 00:00.0) and
 * "ep" (ID 01:00.0). The ep exposes RAM at EP_BASE; the rc exposes RAM at RC_BASE. And
 * (linkedPair) the same two over real Links and a memory transport, for the fast paths.
 */
import { Counters, SeededRng } from '../../src/core/index.js';
import { Link, createMemoryTransportPair, type CreditScales, type CreditValues } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import {
  TransactionLayer,
  forEachEnabledRun,
  type CompleterTarget,
  type OrderingConfig,
  type TransactionConfig,
} from '../../src/transaction/index.js';
import { createFakeLinkPair, type FakeLinkOptions, type FakeLinkPort } from './fake-link.js';

export const RC_ID = 0x0000;
export const EP_ID = 0x0100;
export const EP_BASE = 0x1000_0000;
export const RC_BASE = 0x0;

/** A byte array mapped at `base`. */
export class RamTarget implements CompleterTarget {
  reads = 0;
  writes = 0;
  constructor(
    readonly base: number,
    readonly bytes: Uint8Array,
  ) {}

  claims(address: number, length: number): boolean {
    return address >= this.base && address + length <= this.base + this.bytes.length;
  }

  read(address: number, length: number): Uint8Array {
    this.reads++;
    return this.bytes.slice(address - this.base, address - this.base + length);
  }

  write(address: number, data: Uint8Array, firstBe: number, lastBe: number): void {
    this.writes++;
    forEachEnabledRun(address, data, firstBe, lastBe, (a, b) => this.bytes.set(b, a - this.base));
  }
}

/** A target that accepts everything and discards it (for throughput/backpressure tests). */
export class SinkTarget implements CompleterTarget {
  bytesWritten = 0;
  claims(): boolean {
    return true;
  }
  read(_address: number, length: number): Uint8Array {
    return new Uint8Array(length);
  }
  write(_address: number, data: Uint8Array): void {
    this.bytesWritten += data.length;
  }
}

export function patterned(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export const BASE_CONFIG: TransactionConfig = {
  requesterId: 0,
  maxPayloadSize: 256,
  maxReadRequestSize: 512,
  rcb: 64,
  // 0b0010: 1..10 ms; the minimum, 1 ms, is the timeout.
  cplTimeout: { range: 0b0010 },
  tag10Bit: false,
};

export interface PairOptions {
  seed?: number;
  link?: FakeLinkOptions;
  rcConfig?: Partial<TransactionConfig>;
  epConfig?: Partial<TransactionConfig>;
  ordering?: OrderingConfig;
  epRamBytes?: number;
  rcRamBytes?: number;
}

export interface Pair {
  clock: VirtualClock;
  rc: TransactionLayer;
  ep: TransactionLayer;
  rcLink: FakeLinkPort;
  epLink: FakeLinkPort;
  epRam: RamTarget;
  rcRam: RamTarget;
  /** Runs the clock until `p` settles (see runUntilSettled). */
  settle<T>(p: Promise<T>): Promise<T>;
}

export function makePair(options: PairOptions = {}): Pair {
  const clock = new VirtualClock();
  const rng = new SeededRng(options.seed ?? 1);
  const [rcLink, epLink] = createFakeLinkPair(clock, options.link);
  const ordering = options.ordering ?? { mode: 'in-order' };
  const rc = new TransactionLayer(rcLink, {
    clock,
    rng: rng.fork(),
    config: { ...BASE_CONFIG, requesterId: RC_ID, ...options.rcConfig },
    ordering,
  });
  const ep = new TransactionLayer(epLink, {
    clock,
    rng: rng.fork(),
    config: { ...BASE_CONFIG, requesterId: EP_ID, ...options.epConfig },
    ordering,
  });
  const epRam = new RamTarget(EP_BASE, patterned(options.epRamBytes ?? 64 * 1024, 7));
  const rcRam = new RamTarget(RC_BASE, patterned(options.rcRamBytes ?? 64 * 1024, 9));
  ep.completer.addMemoryTarget(epRam);
  rc.completer.addMemoryTarget(rcRam);
  const settle = <T>(p: Promise<T>): Promise<T> => runUntilSettled(clock, p);
  return { clock, rc, ep, rcLink, epLink, epRam, rcRam, settle };
}

/**
 * Runs the virtual clock until `p` settles; returns its value or throws its error. Between clock
 * events the microtask queue gets a few turns, so promise continuations (an `await` loop of
 * writes, say) run at the virtual instant that resolved them. Throws if the simulation goes
 * idle with `p` still pending (a hang).
 */
export async function runUntilSettled<T>(clock: VirtualClock, p: Promise<T>): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  watched.catch(() => {});
  for (;;) {
    for (let hop = 0; hop < 8 && !done; hop++) await Promise.resolve();
    if (done) break;
    if (!clock.step()) {
      await new Promise((r) => setImmediate(r));
      if (done) break;
      if (clock.pending === 0) throw new Error(`simulation idle at ${clock.nowNs()} ns with the promise still pending`);
    }
  }
  return watched;
}

/** Calls `each` with the bytes of every TLP item of every batch sent on `t` (a tap on a link's wire). */
export function tapTlps(t: { send: (chunks: readonly Uint8Array[], done?: () => void) => boolean }, each: (tlp: Uint8Array) => void): void {
  const send = t.send.bind(t);
  t.send = (chunks, done) => {
    for (const c of chunks) {
      for (let off = 4; off < c.length; ) {
        const len = (c[off + 2]! << 8) | c[off + 3]!;
        // A copy of its own, as a plain Uint8Array (a Buffer's slice would be a view).
        if (c[off] === 0x01) each(new Uint8Array(c.subarray(off + 4, off + 4 + len)));
        off += 4 + len;
      }
    }
    return send(chunks, done);
  };
}

type MemoryTransport = ReturnType<typeof createMemoryTransportPair>[0];

export interface LinkedPairOptions {
  rcCredits?: Partial<CreditValues>;
  rcScales?: Partial<CreditScales>;
  epCredits?: Partial<CreditValues>;
  highWaterBytes?: number;
  /** The memory transport's one-way latency. Default 2 µs. */
  latencyNs?: number;
  /** Over BASE_CONFIG with requester 01:00.0 and 10-bit tags. */
  epConfig?: Partial<TransactionConfig>;
  /** The root complex's memory targets, in the order its completer asks them. */
  rcTargets?: readonly CompleterTarget[];
  /** Sets taps on the wire (tapTlps) before the links exist: the root complex's transport, the endpoint's. */
  tap?: (rcSide: MemoryTransport, epSide: MemoryTransport) => void;
}

export interface LinkedPair {
  clock: VirtualClock;
  rc: TransactionLayer;
  ep: TransactionLayer;
  rcLink: Link;
  epLink: Link;
  /** Runs the clock until `p` settles (see runUntilSettled). */
  settle<T>(p: Promise<T>): Promise<T>;
}

/** A root complex (requester 00:00.0) and an endpoint over real Links and a memory transport, both up. */
export function linkedPair(o: LinkedPairOptions = {}): LinkedPair {
  const clock = new VirtualClock();
  const [tr, te] = createMemoryTransportPair(clock, {
    ...(o.highWaterBytes === undefined ? {} : { highWaterBytes: o.highWaterBytes }),
    latencyNs: o.latencyNs ?? 2_000,
    names: ['rc', 'ep'],
  });
  o.tap?.(tr, te);
  const rcLink = new Link(tr, {
    clock,
    role: 'rc',
    counters: new Counters(),
    ...(o.rcCredits === undefined ? {} : { credits: o.rcCredits }),
    ...(o.rcScales === undefined ? {} : { scales: o.rcScales }),
  });
  const epLink = new Link(te, { clock, role: 'ep', counters: new Counters(), ...(o.epCredits === undefined ? {} : { credits: o.epCredits }) });
  const rc = new TransactionLayer(rcLink, { clock, config: { ...BASE_CONFIG, requesterId: RC_ID } });
  const ep = new TransactionLayer(epLink, { clock, config: { ...BASE_CONFIG, requesterId: EP_ID, tag10Bit: true, ...o.epConfig } });
  for (const t of o.rcTargets ?? []) rc.completer.addMemoryTarget(t);
  rcLink.start();
  epLink.start();
  clock.runUntil(() => rcLink.state === 'up' && epLink.state === 'up', 10_000);
  return { clock, rc, ep, rcLink, epLink, settle: (p) => runUntilSettled(clock, p) };
}
