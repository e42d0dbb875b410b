import type { Clock, Rng } from '../core/index.js';
import { FrameChecker, FrameGenerator, type FrameCheckSummary, type NetDevice } from '../net/index.js';

export interface TrafficOptions {
  frames: number;
  /** Frames in flight at most (sent, not yet back). */
  window?: number;
  sizes?: { min: number; max: number } | number;
  clock: Clock;
  rng: Rng;
  /** Called every `progressEvery` frames received. */
  onProgress?: (received: number, total: number) => void;
  progressEvery?: number;
}

export interface TrafficResult extends FrameCheckSummary {
  sent: number;
  elapsedNs: number;
}

/**
 * Sequence-numbered, checksummed test frames through a NetDevice whose far side echoes them
 * (the card's loopback backend), keeping a window in flight; the checker classifies every frame
 * that comes back.
 */
export class TrafficRun {
  sent = 0;
  received = 0;
  readonly checker: FrameChecker;
  private readonly gen: FrameGenerator;
  private readonly window: number;
  private readonly start: number;
  private doneResolve: (() => void) | undefined;
  readonly finished: Promise<void>;

  constructor(
    private readonly net: NetDevice,
    private readonly o: TrafficOptions,
  ) {
    this.window = Math.max(1, o.window ?? 64);
    this.gen = new FrameGenerator({ dst: net.mac, src: net.mac, size: o.sizes ?? { min: 60, max: 1514 }, rng: o.rng, clock: o.clock });
    this.checker = new FrameChecker({ clock: o.clock });
    this.start = o.clock.nowNs();
    this.finished = new Promise((r) => (this.doneResolve = r));
    const every = Math.max(1, o.progressEvery ?? Math.ceil(o.frames / 20));
    net.onFrame = (f) => {
      this.received++;
      this.checker.check(f);
      if (this.received % every === 0) o.onProgress?.(this.received, o.frames);
      if (this.done) this.doneResolve?.();
      else this.pump();
    };
    net.onWritable = () => this.pump();
    this.pump();
  }

  get done(): boolean {
    return this.received >= this.o.frames;
  }

  pump(): void {
    while (this.sent < this.o.frames && this.sent - this.received < this.window) {
      if (!this.net.send(this.gen.next())) return;
      this.sent++;
    }
  }

  result(): TrafficResult {
    return { ...this.checker.summary(), sent: this.sent, elapsedNs: this.o.clock.nowNs() - this.start };
  }
}
