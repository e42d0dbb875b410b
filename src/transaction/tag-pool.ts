/**
 * Tags for outstanding non-posted requests (§2.2.6.2). 8-bit tags are 0..255; once both link
 * partners support 10-bit tags the pool hands out 256..1023 (Tag[9:8] ≠ 00b), 768 of them.
 *
 * Free tags leave in FIFO order, so a freed tag is reused as late as possible: a completion
 * that arrives after its request timed out is then most likely to find its tag unused (and be
 * reported as unexpected) rather than matched against a new request.
 */
import { FixedQueue, TlpwireError } from '../core/index.js';
import { TAGS } from '../spec/index.js';

export class TagPool {
  private readonly free8 = new FixedQueue<number>(TAGS.COUNT_8BIT);
  private readonly free10 = new FixedQueue<number>(TAGS.LAST_10BIT + 1 - TAGS.FIRST_10BIT);
  private readonly used = new Uint8Array(TAGS.LAST_10BIT + 1);
  private use10 = false;
  private count = 0;
  private readonly limit: number;
  /** capacity, kept (tryAlloc asks it per request). */
  private cap: number;

  /** `maxOutstanding` caps tags in use below what the tag width allows. */
  constructor(options: { maxOutstanding?: number } = {}) {
    this.limit = options.maxOutstanding ?? Infinity;
    if (!(this.limit >= 1)) {
      throw new TlpwireError('ERR_USAGE', `maxOutstanding must be ≥ 1, got ${options.maxOutstanding}`);
    }
    for (let t = 0; t < TAGS.COUNT_8BIT; t++) this.free8.push(t);
    for (let t = TAGS.FIRST_10BIT; t <= TAGS.LAST_10BIT; t++) this.free10.push(t);
    this.cap = Math.min(this.limit, TAGS.COUNT_8BIT);
  }

  /** Hand out 10-bit tags from now on (both sides support them), or 8-bit ones. */
  set10Bit(enabled: boolean): void {
    this.use10 = enabled;
    this.cap = Math.min(this.limit, enabled ? TAGS.LAST_10BIT + 1 - TAGS.FIRST_10BIT : TAGS.COUNT_8BIT);
  }

  get tenBit(): boolean {
    return this.use10;
  }

  /** How many tags may be outstanding at once with the current width. */
  get capacity(): number {
    return this.cap;
  }

  get inUse(): number {
    return this.count;
  }

  isInUse(tag: number): boolean {
    return this.used[tag] === 1;
  }

  /** A free tag, or -1 when all are in use (the caller waits for free()). */
  tryAlloc(): number {
    if (this.count >= this.cap) return -1;
    const tag = (this.use10 ? this.free10 : this.free8).shift();
    if (tag === undefined) return -1;
    this.used[tag] = 1;
    this.count++;
    return tag;
  }

  /** Returns a tag; false if it was not in use. */
  free(tag: number): boolean {
    if (this.used[tag] !== 1) return false;
    this.used[tag] = 0;
    this.count--;
    (tag >= TAGS.FIRST_10BIT ? this.free10 : this.free8).push(tag);
    return true;
  }
}
