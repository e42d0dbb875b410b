/**
 * Bulk copies for the DMA paths: a run of TLP payloads copied in one call. JavaScript copies each
 * 256-byte payload with set(subarray(…)), about 90 ns, most of it making the view (which is then
 * garbage); the native addon (native/tap/bulkcopy.c, built with the TAP addon by
 * scripts/build-native.mjs) does a run in one call at about 12 ns a payload. Without the addon
 * (not built, another platform, another Node ABI) the JavaScript copies are used: same result.
 *
 * TLPWIRE_BULK_COPY=js uses the JavaScript copies even when the addon is there (the benchmark's
 * comparison, and the tests of both). This is OS-bound code, like the TAP addon's loader: it
 * decides only how bytes are copied, never what is copied, so the simulator stays reproducible.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Piece i is src[srcOffsets[i], srcOffsets[i] + lengths[i]); the `count` pieces land back to back
 * in dst from dstOffset. Callers check the ranges (the native copy checks them again and throws a
 * RangeError, having copied nothing, when one is wrong).
 */
export type GatherFn = (dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffsets: Int32Array, lengths: Int32Array, count: number) => void;

/**
 * Piece i goes from srcs[srcIndex[i]] at srcOffsets[i] to dsts[dstIndex[i]] at dstOffsets[i]:
 * copies between many buffers (RAM pages into completions, completions into callers' buffers).
 */
export type CopyManyFn = (
  dsts: readonly Uint8Array[],
  dstIndex: Int32Array,
  dstOffsets: Int32Array,
  srcs: readonly Uint8Array[],
  srcIndex: Int32Array,
  srcOffsets: Int32Array,
  lengths: Int32Array,
  count: number,
) => void;

export interface BulkCopy {
  gather: GatherFn;
  copyMany: CopyManyFn;
  /** Where the copies come from: the addon's path, or why JavaScript is used. */
  native: boolean;
  detail: string;
}

export const gatherJs: GatherFn = (dst, dstOffset, src, srcOffsets, lengths, count) => {
  let at = dstOffset;
  for (let i = 0; i < count; i++) {
    const o = srcOffsets[i]!;
    const n = lengths[i]!;
    dst.set(src.subarray(o, o + n), at);
    at += n;
  }
};

export const copyManyJs: CopyManyFn = (dsts, dstIndex, dstOffsets, srcs, srcIndex, srcOffsets, lengths, count) => {
  for (let i = 0; i < count; i++) {
    const o = srcOffsets[i]!;
    dsts[dstIndex[i]!]!.set(srcs[srcIndex[i]!]!.subarray(o, o + lengths[i]!), dstOffsets[i]!);
  }
};

export const DEFAULT_BULK_COPY_ADDON_PATH = fileURLToPath(new URL('../../native/tap/build/Release/bulkcopy.node', import.meta.url));

/** The native copies from the addon at `path`, or why they cannot be used. Never throws. */
export function loadNativeBulkCopy(path: string = DEFAULT_BULK_COPY_ADDON_PATH): Omit<BulkCopy, 'native' | 'detail'> | string {
  if (!existsSync(path)) return 'the native addon is not built (npm run build:native)';
  try {
    const mod = createRequire(import.meta.url)(path) as { gather?: unknown; copyMany?: unknown };
    if (typeof mod.gather !== 'function' || typeof mod.copyMany !== 'function') {
      return `${path} is not tlpwire's bulk-copy addon (or an older build of it: npm run build:native)`;
    }
    return { gather: mod.gather as GatherFn, copyMany: mod.copyMany as CopyManyFn };
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
    return `the native addon does not load (${first})`;
  }
}

let chosen: BulkCopy | undefined;

/** The copies the DMA paths use: native when the addon loads (and TLPWIRE_BULK_COPY is not js), else JavaScript. */
export function bulkCopy(): BulkCopy {
  if (chosen !== undefined) return chosen;
  if (process.env['TLPWIRE_BULK_COPY'] === 'js') {
    chosen = { gather: gatherJs, copyMany: copyManyJs, native: false, detail: 'JavaScript (TLPWIRE_BULK_COPY=js)' };
  } else {
    const n = loadNativeBulkCopy();
    chosen =
      typeof n === 'string'
        ? { gather: gatherJs, copyMany: copyManyJs, native: false, detail: `JavaScript: ${n}` }
        : { ...n, native: true, detail: `native (${DEFAULT_BULK_COPY_ADDON_PATH})` };
  }
  return chosen;
}

export function defaultGather(): GatherFn {
  return bulkCopy().gather;
}

/**
 * Copies collected to be done together (one copyMany call) a little later: the link defers the
 * payload copies of the completions it sends while it works through a received batch, and does
 * them before anything could change their sources (see Link) or send their destinations.
 */
export class DeferredCopies {
  private readonly dsts: Uint8Array[] = [];
  private readonly srcs: Uint8Array[] = [];
  private readonly dstIndex: Int32Array;
  private readonly dstOffsets: Int32Array;
  private readonly srcIndex: Int32Array;
  private readonly srcOffsets: Int32Array;
  private readonly lengths: Int32Array;
  private count = 0;
  /** Copies that could not be done in a run() that add() made (when full), not yet reported. */
  private failedEarlier = 0;
  /** add()'s one-entry caches of where the last buffers are in dsts and srcs. */
  private lastDst: Uint8Array | undefined;
  private lastDstIndex = 0;
  private lastSrc: Uint8Array | undefined;
  private lastSrcIndex = 0;

  constructor(
    private readonly copyMany: CopyManyFn,
    readonly capacity = 1024,
  ) {
    this.dstIndex = new Int32Array(capacity);
    this.dstOffsets = new Int32Array(capacity);
    this.srcIndex = new Int32Array(capacity);
    this.srcOffsets = new Int32Array(capacity);
    this.lengths = new Int32Array(capacity);
  }

  get pending(): number {
    return this.count;
  }

  /** Copies src[srcOffset, srcOffset + length) to dst[dstOffset…] at the next run() (or now, when full). */
  add(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void {
    // (What a run made here could not do is reported by the next run() the owner calls.)
    if (this.count === this.capacity) this.failedEarlier += this.run();
    const i = this.count++;
    // The last buffer of each side first: a batch or a read's buffer is usually the one before.
    if (dst !== this.lastDst) {
      this.lastDstIndex = indexOf(this.dsts, dst);
      this.lastDst = dst;
    }
    if (src !== this.lastSrc) {
      this.lastSrcIndex = indexOf(this.srcs, src);
      this.lastSrc = src;
    }
    this.dstIndex[i] = this.lastDstIndex;
    this.dstOffsets[i] = dstOffset;
    this.srcIndex[i] = this.lastSrcIndex;
    this.srcOffsets[i] = srcOffset;
    this.lengths[i] = length;
  }

  /**
   * Does the collected copies, in the order they were added; returns how many could not be done
   * (a range outside its buffer, e.g. a read's buffer transferred away meanwhile), those of runs
   * that add() made when full included. One bad copy costs only itself: the others are then done
   * one by one.
   */
  run(): number {
    const n = this.count;
    let failed = this.failedEarlier;
    this.failedEarlier = 0;
    if (n === 0) return failed;
    this.count = 0;
    try {
      this.copyMany(this.dsts, this.dstIndex, this.dstOffsets, this.srcs, this.srcIndex, this.srcOffsets, this.lengths, n);
      return failed;
    } catch {
      for (let i = 0; i < n; i++) {
        const dst = this.dsts[this.dstIndex[i]!]!;
        const src = this.srcs[this.srcIndex[i]!]!;
        const o = this.srcOffsets[i]!;
        const len = this.lengths[i]!;
        const d = this.dstOffsets[i]!;
        if (o >= 0 && len >= 0 && o + len <= src.length && d >= 0 && d + len <= dst.length) dst.set(src.subarray(o, o + len), d);
        else failed++;
      }
      return failed;
    } finally {
      // Let go of the buffers (RAM pages, batches) whatever happened.
      this.dsts.length = 0;
      this.srcs.length = 0;
      this.lastDst = undefined;
      this.lastSrc = undefined;
    }
  }
}

/**
 * Where `b` is in `list`, adding it if it is not among the last few entries. The native copy
 * resolves each entry once per call (about as costly as a small copy), and the buffers of a run
 * take turns (8 reads in flight read 8 RAM pages into 8 buffers), so they are looked for.
 */
function indexOf(list: Uint8Array[], b: Uint8Array): number {
  const n = list.length;
  for (let k = n - 1; k >= 0 && k >= n - 16; k--) if (list[k] === b) return k;
  list.push(b);
  return n;
}
