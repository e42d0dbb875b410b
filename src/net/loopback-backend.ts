import { type Clock, Counters, FixedQueue } from '../core/index.js';
import type { NetBackend } from './backend.js';

export interface LoopbackBackendOptions {
  /** Frames held while the device has paused delivery; more are counted and dropped. Default 1024. */
  maxQueued?: number;
}

/**
 * The default backend: every frame the driver transmits comes back to it with the source and
 * destination MACs swapped, as if a peer answered. The frame is copied (the device may reuse
 * what it passed to `send`) and delivered later through `clock.defer`, never from inside `send`,
 * so the device's TX path does not recurse into its RX path.
 */
export class LoopbackBackend implements NetBackend {
  readonly name = 'loopback';
  readonly counters = new Counters();
  onFrame: (frame: Uint8Array) => void = () => {};
  private readonly queue: FixedQueue<Uint8Array>;
  private paused = false;
  private closed = false;
  private scheduled = false;

  constructor(
    private readonly clock: Clock,
    options: LoopbackBackendOptions = {},
  ) {
    const max = options.maxQueued ?? 1024;
    this.queue = new FixedQueue<Uint8Array>(Math.min(max, 256), max);
  }

  get queued(): number {
    return this.queue.length;
  }

  send(frame: Uint8Array): void {
    if (this.closed) {
      this.counters.add('dropped_closed');
      return;
    }
    const copy = frame.slice();
    if (copy.length >= 12) {
      // swap destination (0..5) and source (6..11)
      for (let i = 0; i < 6; i++) {
        const t = copy[i]!;
        copy[i] = copy[i + 6]!;
        copy[i + 6] = t;
      }
    }
    if (!this.queue.push(copy)) {
      this.counters.add('dropped_queue_full');
      return;
    }
    this.counters.add('frames_in');
    this.schedule();
  }

  pause(): void {
    if (!this.paused) this.counters.add('pauses');
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  close(): Promise<void> {
    this.closed = true;
    this.counters.add('dropped_closed', this.queue.length);
    this.queue.clear();
    return Promise.resolve();
  }

  private schedule(): void {
    if (this.scheduled || this.paused || this.closed || this.queue.length === 0) return;
    this.scheduled = true;
    this.clock.defer(this.deliver);
  }

  /** Delivers what is queued, one batch per deferred call, stopping as soon as the device pauses. */
  private readonly deliver = (): void => {
    this.scheduled = false;
    let n = this.queue.length;
    while (n-- > 0 && !this.paused && !this.closed) {
      const f = this.queue.shift()!;
      this.counters.add('frames_out');
      this.counters.add('bytes_out', f.length);
      this.onFrame(f);
    }
    this.schedule();
  };
}
