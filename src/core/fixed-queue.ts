/**
 * A FIFO on a growable power-of-two ring: push/shift are O(1) and allocate nothing until the
 * ring must grow. Used on hot paths instead of Array#shift. `maxLength` bounds it when given.
 */
export class FixedQueue<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private count = 0;
  private mask: number;

  constructor(initialCapacity = 16, readonly maxLength = Infinity) {
    let cap = 1;
    while (cap < initialCapacity) cap <<= 1;
    this.buf = new Array<T | undefined>(cap);
    this.mask = cap - 1;
  }

  get length(): number {
    return this.count;
  }

  isFull(): boolean {
    return this.count >= this.maxLength;
  }

  /** Appends; returns false (and drops nothing) when the queue is at maxLength. */
  push(item: T): boolean {
    if (this.count >= this.maxLength) return false;
    if (this.count === this.buf.length) this.grow();
    this.buf[(this.head + this.count) & this.mask] = item;
    this.count++;
    return true;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.count--;
    return item;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.buf[this.head];
  }

  /** The i-th element from the head (0 = head). */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.count) return undefined;
    return this.buf[(this.head + i) & this.mask];
  }

  /** Removes and returns the i-th element from the head, keeping the others in order. */
  removeAt(i: number): T | undefined {
    if (i < 0 || i >= this.count) return undefined;
    const item = this.buf[(this.head + i) & this.mask];
    for (let j = i; j < this.count - 1; j++) {
      this.buf[(this.head + j) & this.mask] = this.buf[(this.head + j + 1) & this.mask];
    }
    this.buf[(this.head + this.count - 1) & this.mask] = undefined;
    this.count--;
    return item;
  }

  clear(): void {
    this.buf.fill(undefined);
    this.head = 0;
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.count; i++) yield this.buf[(this.head + i) & this.mask] as T;
  }

  private grow(): void {
    const old = this.buf;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) & this.mask];
    this.buf = next;
    this.head = 0;
    this.mask = next.length - 1;
  }
}
