/**
 * An in-memory transport pair for the simulator: every message is delivered through the Clock
 * (after `latencyNs`, or at the end of the current instant with latency 0), so a run under the
 * VirtualClock is deterministic. Messages arrive in the order they were sent.
 */
import type { Clock } from '../core/index.js';
import { DEFAULT_HIGH_WATER_BYTES } from './constants.js';
import { joinBytes } from './framing.js';
import type { Transport } from './transport.js';

export interface MemoryTransportOptions {
  /** One-way delay of every message. Default 0 (delivered via clock.defer). */
  latencyNs?: number;
  /** `send` returns false while more than this many bytes are in flight. Default 1 MiB. */
  highWaterBytes?: number;
  /** Names for logs. Default ["mem:a", "mem:b"]. */
  names?: readonly [string, string];
}

class MemoryEnd implements Transport {
  onMessage: (data: Uint8Array) => void = () => {};
  onDrain: () => void = () => {};
  onClose: (error?: Error) => void = () => {};

  peer!: MemoryEnd;
  /** Bytes sent by this end and not yet delivered. */
  inFlight = 0;
  /** Largest `inFlight` seen, for tests that bound queues. */
  maxInFlight = 0;
  private congested = false;
  /** No more sending (close() called or the peer's close arrived). */
  private closing = false;
  private closed = false;

  constructor(
    readonly remote: string,
    private readonly clock: Clock,
    private readonly latencyNs: number,
    private readonly highWater: number,
  ) {}

  send(chunks: readonly Uint8Array[], done?: () => void): boolean {
    if (this.closing) {
      done?.();
      return true;
    }
    // Copy now: the sender may reuse its buffers, and a receiver must own what it gets.
    const copy = joinBytes(chunks);
    const total = copy.length;
    done?.(); // copied: the chunks are free again
    this.inFlight += total;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    this.schedule(() => this.deliver(copy));
    if (this.inFlight > this.highWater) this.congested = true;
    return !this.congested;
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    // The close travels behind the messages already sent, like a FIN.
    this.schedule(() => this.peer.peerClosed());
    this.clock.defer(() => this.finish());
  }

  /** Pretends the connection broke: both ends close at once, whatever was in flight is lost. */
  breakConnection(error?: Error): void {
    this.closing = true;
    this.peer.closing = true;
    this.clock.defer(() => {
      this.finish(error);
      this.peer.finish(error);
    });
  }

  private schedule(fn: () => void): void {
    if (this.latencyNs > 0) this.clock.setTimer(this.latencyNs, fn);
    else this.clock.defer(fn);
  }

  private deliver(bytes: Uint8Array): void {
    this.inFlight -= bytes.length;
    if (this.congested && this.inFlight <= this.highWater / 2) {
      this.congested = false;
      if (!this.closed) this.onDrain();
    }
    if (!this.peer.closed && !this.peer.closing) this.peer.onMessage(bytes);
  }

  private peerClosed(): void {
    this.closing = true;
    this.finish();
  }

  private finish(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(error);
  }
}

export type MemoryTransport = Transport & {
  readonly inFlight: number;
  readonly maxInFlight: number;
  breakConnection(error?: Error): void;
};

/** Two connected transports: what one sends, the other receives. */
export function createMemoryTransportPair(clock: Clock, opts: MemoryTransportOptions = {}): [MemoryTransport, MemoryTransport] {
  const latency = opts.latencyNs ?? 0;
  const hw = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
  const [na, nb] = opts.names ?? ['mem:a', 'mem:b'];
  const a = new MemoryEnd(nb, clock, latency, hw);
  const b = new MemoryEnd(na, clock, latency, hw);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
