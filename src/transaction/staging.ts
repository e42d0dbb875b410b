/**
 * Staging memory for DMA writes that must wait for credits: their bytes are copied here (the
 * writer may reuse its buffer once memWrite returns) until the link takes them. Write jobs wait
 * in the posted queue, which is FIFO, so space is given back in the order it was taken, and one
 * ring buffer allocated once serves them all. Allocating a fresh buffer per waiting write instead
 * made V8 run full collections several times a second for the external memory alone.
 */
import { FixedQueue } from '../core/index.js';

export class StagingRing {
  private readonly bytes: Uint8Array;
  /** Next free byte, and the start of the oldest region still taken. */
  private head = 0;
  private tail = 0;
  /** End offsets of the regions taken, oldest first. */
  private readonly ends = new FixedQueue<number>(64);

  constructor(readonly capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }

  /** A region of `length` bytes, or undefined when the ring has no contiguous room for it. */
  take(length: number): Uint8Array | undefined {
    if (length <= 0 || length > this.capacity) return undefined;
    let start: number;
    if (this.ends.length === 0) {
      this.head = 0;
      this.tail = 0;
      start = 0;
    } else if (this.head > this.tail) {
      // Taken: [tail, head). Free: [head, capacity) and [0, tail).
      if (this.capacity - this.head >= length) start = this.head;
      else if (this.tail >= length) start = 0;
      else return undefined;
    } else if (this.head < this.tail) {
      // Wrapped: free is [head, tail) (a gap left at the end before wrapping stays unused).
      if (this.tail - this.head < length) return undefined;
      start = this.head;
    } else {
      return undefined; // head === tail with regions taken: full
    }
    const end = start + length;
    this.head = end;
    this.ends.push(end);
    return this.bytes.subarray(start, end);
  }

  /** Gives back the oldest region taken. */
  giveBack(): void {
    const end = this.ends.shift();
    if (end === undefined) return;
    this.tail = end;
    if (this.ends.length === 0) {
      this.head = 0;
      this.tail = 0;
    }
  }

  /** Gives everything back (the queue was cleared). */
  reset(): void {
    this.ends.clear();
    this.head = 0;
    this.tail = 0;
  }

  /** Regions taken and not given back. */
  get regions(): number {
    return this.ends.length;
  }
}
