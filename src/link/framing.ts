/**
 * The batch format (docs/PROTOCOL.md, "Batches and items"): one transport message is
 *
 *   +------+------+---------+-------+   then items, back to back, to the end of the message:
 *   | 0x54 | 0x57 | version | flags |   +------+-------+-------------+----------------+
 *   +------+------+---------+-------+   | type | flags | length u16  | body (length)  |
 *                                       +------+-------+-------------+----------------+
 *
 * BatchWriter builds batches in place in a slab: TLPs are encoded straight into it (no per-TLP
 * buffer), and each finished batch is a view that is not written again while the transport may
 * hold it, because sockets keep a reference to what they were given until the kernel takes it.
 * A new slab is started when the current one cannot hold a maximal batch. A slab whose batches
 * the transport has all given back (`release`, from Transport.send's `done`) is reused; one whose
 * batches are not all given back is left to the GC. Reuse matters: allocating a megabyte every 16
 * batches makes V8 collect garbage for the external memory alone, several times a second.
 */
import { TlpwireError } from '../core/index.js';
import { BATCH_HEADER_BYTES, BATCH_MAGIC_0, BATCH_MAGIC_1, ITEM_HEADER_BYTES, ITEM_MAX_BODY_BYTES, MAX_MESSAGE_BYTES } from './constants.js';

export const DEFAULT_SLAB_BYTES = 1024 * 1024;

/** A slab and its batches the transport may still hold. */
export interface Slab {
  readonly bytes: Uint8Array;
  /** Finished batches not released yet. */
  pending: number;
  /** No more batches will be carved from it (it waits for `pending` to reach 0, then is free). */
  retired: boolean;
}

/** Free slabs kept for reuse; more than this go to the GC. */
const FREE_SLABS = 4;

export class BatchWriter {
  private current: Slab;
  private slab: Uint8Array;
  private readonly free: Slab[] = [];
  private start = 0;
  private pos = 0;
  private open = false;
  private items = 0;

  constructor(
    private readonly version: number,
    private readonly slabBytes = DEFAULT_SLAB_BYTES,
  ) {
    if (slabBytes < MAX_MESSAGE_BYTES) throw new TlpwireError('ERR_INTERNAL', `slab of ${slabBytes} bytes cannot hold a maximal batch`);
    this.current = { bytes: newSlab(slabBytes), pending: 0, retired: false };
    this.slab = this.current.bytes;
  }

  /** The slab of the batch `finish` returned last: pass it to `release` when the transport is done with that batch. */
  get lastSlab(): Slab {
    return this.current;
  }

  /** The transport no longer holds a batch of `slab`. */
  release(slab: Slab): void {
    slab.pending--;
    if (slab.pending === 0 && slab.retired && this.free.length < FREE_SLABS) this.free.push(slab);
  }

  /** Bytes of the batch being built (header included), 0 when none is open. */
  get length(): number {
    return this.open ? this.pos - this.start : 0;
  }

  get itemCount(): number {
    return this.items;
  }

  /**
   * Makes room for an item with a body of `bodyBytes` and returns the offset in `buffer` where
   * the body goes (read `buffer` after this call: it may be a new slab). Nothing is committed
   * until `commitItem`; a caller that fails in between leaves the batch as it was.
   */
  reserveItem(bodyBytes: number): number {
    if (bodyBytes > ITEM_MAX_BODY_BYTES) throw new TlpwireError('ERR_INTERNAL', `item body of ${bodyBytes} bytes does not fit a u16 length`);
    if (!this.open) this.begin();
    if (this.pos - this.start + ITEM_HEADER_BYTES + bodyBytes > MAX_MESSAGE_BYTES) {
      throw new TlpwireError('ERR_INTERNAL', `batch would exceed ${MAX_MESSAGE_BYTES} bytes; flush first`);
    }
    return this.pos + ITEM_HEADER_BYTES;
  }

  /** The slab the batch is being built in (valid until the next reserveItem). */
  get buffer(): Uint8Array {
    return this.slab;
  }

  /** Writes the header of the item whose body was placed at the reserved offset. */
  commitItem(type: number, bodyBytes: number): void {
    const s = this.slab;
    const p = this.pos;
    s[p] = type;
    s[p + 1] = 0;
    s[p + 2] = bodyBytes >>> 8;
    s[p + 3] = bodyBytes & 0xff;
    this.pos = p + ITEM_HEADER_BYTES + bodyBytes;
    this.items++;
  }

  /**
   * reserveItem for `count` items with bodies of `bodyBytes` each, one after another: returns the
   * offset of the first body (the i-th is ITEM_HEADER_BYTES + bodyBytes further on per item).
   * Nothing is committed until commitItems.
   */
  reserveItems(count: number, bodyBytes: number): number {
    if (bodyBytes > ITEM_MAX_BODY_BYTES) throw new TlpwireError('ERR_INTERNAL', `item body of ${bodyBytes} bytes does not fit a u16 length`);
    if (!this.open) this.begin();
    if (this.pos - this.start + count * (ITEM_HEADER_BYTES + bodyBytes) > MAX_MESSAGE_BYTES) {
      throw new TlpwireError('ERR_INTERNAL', `batch would exceed ${MAX_MESSAGE_BYTES} bytes; flush first`);
    }
    return this.pos + ITEM_HEADER_BYTES;
  }

  /** Writes the headers of the `count` items reserveItems placed (each body filled in). */
  commitItems(count: number, type: number, bodyBytes: number): void {
    const s = this.slab;
    let p = this.pos;
    const hi = bodyBytes >>> 8;
    const lo = bodyBytes & 0xff;
    for (let i = 0; i < count; i++) {
      s[p] = type;
      s[p + 1] = 0;
      s[p + 2] = hi;
      s[p + 3] = lo;
      p += ITEM_HEADER_BYTES + bodyBytes;
    }
    this.pos = p;
    this.items += count;
  }

  /**
   * Makes room for `bytes` of whole items (headers and bodies) that the caller writes itself at
   * the returned offset of `buffer` (read `buffer` after this call); nothing is committed until
   * commitRaw.
   */
  reserveRaw(bytes: number): number {
    if (!this.open) this.begin();
    if (this.pos - this.start + bytes > MAX_MESSAGE_BYTES) {
      throw new TlpwireError('ERR_INTERNAL', `batch would exceed ${MAX_MESSAGE_BYTES} bytes; flush first`);
    }
    return this.pos;
  }

  /** Commits the `count` items, `bytes` in all, written at the offset reserveRaw returned. */
  commitRaw(bytes: number, count: number): void {
    this.pos += bytes;
    this.items += count;
  }

  /** Appends an item whose body already exists (control items). */
  appendItem(type: number, body: Uint8Array): void {
    const offset = this.reserveItem(body.length);
    this.slab.set(body, offset);
    this.commitItem(type, body.length);
  }

  /** Closes the batch and returns it (a view into the slab), or undefined when it has no items. */
  finish(): Uint8Array | undefined {
    if (!this.open || this.items === 0) return undefined;
    const out = this.slab.subarray(this.start, this.pos);
    this.start = this.pos;
    this.open = false;
    this.items = 0;
    this.current.pending++;
    return out;
  }

  /** Drops the batch being built. */
  discard(): void {
    this.pos = this.start;
    this.open = false;
    this.items = 0;
  }

  private begin(): void {
    if (this.slab.length - this.pos < MAX_MESSAGE_BYTES) {
      const old = this.current;
      old.retired = true;
      if (old.pending === 0 && this.free.length < FREE_SLABS) this.free.push(old);
      const next = this.free.pop();
      if (next !== undefined) {
        next.retired = false;
        this.current = next;
      } else {
        this.current = { bytes: newSlab(this.slabBytes), pending: 0, retired: false };
      }
      this.slab = this.current.bytes;
      this.pos = 0;
    }
    this.start = this.pos;
    const s = this.slab;
    s[this.pos] = BATCH_MAGIC_0;
    s[this.pos + 1] = BATCH_MAGIC_1;
    s[this.pos + 2] = this.version;
    s[this.pos + 3] = 0;
    this.pos += BATCH_HEADER_BYTES;
    this.open = true;
  }
}

/**
 * Uninitialised memory: zero-filling a megabyte every few batches is measurable, and only bytes we
 * wrote are ever sent (finish() returns exactly the written range).
 */
function newSlab(bytes: number): Uint8Array {
  return Buffer.allocUnsafeSlow(bytes);
}

/** True when `msg` starts with the batch magic. */
export function hasBatchMagic(msg: Uint8Array): boolean {
  return msg.length >= BATCH_HEADER_BYTES && msg[0] === BATCH_MAGIC_0 && msg[1] === BATCH_MAGIC_1;
}

/** Up to the first `n` bytes as hex, for logs about bytes that are not ours. */
export function hexPrefix(bytes: Uint8Array, n = 16): string {
  let s = '';
  for (let i = 0; i < Math.min(n, bytes.length); i++) s += (i ? ' ' : '') + (bytes[i] as number).toString(16).padStart(2, '0');
  return bytes.length > n ? `${s} …` : s;
}

/** The pieces of a message joined into one new buffer (the receiver's own, whatever the pieces were). */
export function joinBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
