import { performance } from 'node:perf_hooks';
import type { Clock, TimerHandle } from '../core/index.js';
import { SeededRng } from '../core/index.js';

/** The OS-bound Clock of the real runtime: the only place that reads the real clock. */
export class RealClock implements Clock {
  nowNs(): number {
    // performance.now() is monotonic with sub-microsecond resolution and costs about half of
    // process.hrtime.bigint(), which allocates a BigInt: the requester reads the clock per request.
    return Math.round(performance.now() * 1e6);
  }

  setTimer(delayNs: number, fn: () => void): TimerHandle {
    // Node's timers have millisecond granularity: a sub-millisecond delay (the memory models'
    // store-buffer and write-buffer residence) runs on the next turn of the event loop instead.
    if (delayNs < 1_000_000) {
      const im = setImmediate(fn);
      return { cancel: () => clearImmediate(im) };
    }
    const t = setTimeout(fn, delayNs / 1e6);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  }

  defer(fn: () => void): void {
    setImmediate(fn);
  }
}

/** A random source for the real runtime, seeded from the OS once. */
export function realRng(): SeededRng {
  // eslint-disable-next-line no-restricted-properties -- the one OS-bound seed
  return new SeededRng((Math.random() * 0x1_0000_0000) >>> 0);
}

