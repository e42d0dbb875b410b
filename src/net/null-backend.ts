import { Counters } from '../core/index.js';
import type { NetBackend } from './backend.js';

/** A backend that takes every frame and drops it (counted); it never delivers any. */
export class NullBackend implements NetBackend {
  readonly name = 'null';
  readonly counters = new Counters();
  onFrame: (frame: Uint8Array) => void = () => {};

  send(frame: Uint8Array): void {
    this.counters.add('frames_dropped');
    this.counters.add('bytes_dropped', frame.length);
  }

  pause(): void {}

  resume(): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }
}
