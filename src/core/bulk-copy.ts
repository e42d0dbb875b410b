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

/** Int32s per tag in a scanCompletions table: armed, tc, destId, destOffset, next, remaining, 2 unused. */
export const SCAN_TABLE_STRIDE = 8;
/** Tags a scanCompletions table covers (10-bit tags): the table holds at least STRIDE × TAGS int32s. */
export const SCAN_TABLE_TAGS = 1024;

/**
 * The DMA read path's fast path for the CplDs of a received batch (native only; the JavaScript
 * receive path is the fallback and handles whatever this does not take). Walks the items
 * `[type u8][flags u8][len u16 BE][body]` of msg from `off` (before `end`), takes each that is a
 * plain completion of an outstanding read, and returns the offset of the first item it does NOT
 * take (`off` when none), which the caller then handles itself.
 *
 * table, at tag × SCAN_TABLE_STRIDE: [0] armed (1 = may be taken here), [1] tc, [2] destId (index
 * into dests), [3] destOffset, [4] next (low 32 bits of the address the next completion starts
 * at, as int32), [5] remaining (bytes still owed). An item is taken when all of these hold:
 * it is a whole TLP item (type 1) with a 12-byte header; Fmt/Type is CplD (0x4A; not CplDLk);
 * TD and EP are clear; len is 12 + 4 × Length; Completion Status is SC; the Requester ID is
 * requesterId; the tag's entry is armed and its tc is the TLP's TC; Byte Count equals remaining;
 * Lower Address equals next & 0x7F; the payload is at most mps bytes; it carries the rest
 * exactly (Length = ceil((next & 3 + remaining) / 4)) or ends on an rcb boundary; and the bytes
 * fit dests[destId] from destOffset. Taking copies the payload (from byte next & 3 of it) to the
 * destination, advances destOffset and next, lowers remaining, and disarms the entry when
 * remaining reaches 0.
 *
 * out[0] = k, the CplDs taken; out[1 + 2j], out[2 + 2j] = the j-th one's tag and byte count. The
 * scan stops when out has no room for another entry. Bad arguments (off/end outside msg, a short
 * table or empty out, rcb not 64/128, mps not 128..4096, requesterId not 0..65535, not typed
 * arrays) throw a RangeError or TypeError before anything is changed.
 *
 * Each destination is fetched from dests once per call, all before anything is taken; if that
 * ran JavaScript (a getter) that detached or resized msg, table or out, nothing is taken, and a
 * getter that throws just stops the scan at that destination's first CplD (nothing is thrown).
 * destIds from 256 up share 16 places a call: a CplD for a 17th such destination stops the scan.
 */
export type ScanCompletionsFn = (
  msg: Uint8Array,
  off: number,
  end: number,
  table: Int32Array,
  dests: readonly (Uint8Array | undefined)[],
  out: Int32Array,
  requesterId: number,
  mps: number,
  rcb: number,
) => number;

/**
 * The CplD items that answer `count` reads of a run, written at out[at…] as a batch holds them
 * (native only; Link.sendCompletionRun places them one by one in JavaScript without it): for
 * read r (tag tags[first + r]) and each of its nParts parts i, an item [1][0][length u16 BE]
 * whose body is a CplD with DW0 = dw0 | the tag's T9, T8 | the Length of its payload, DW1 = dw1 |
 * byteCount[i], DW2 = dw2 | the tag's bits 7:0 << 8 | lowerAddress[i], and the payload: lead[i]
 * zero bytes, bytes[i] bytes of src from srcOffset[i] + r × stride, zeros to the end of the DW.
 * dw0..dw2 hold what every completion of the run shares. Returns the bytes written; bad
 * arguments (a range outside out or src, a part out of range) throw having written nothing.
 */
export type CompletionRunFn = (
  out: Uint8Array,
  at: number,
  src: Uint8Array,
  byteCount: Int32Array,
  lowerAddress: Int32Array,
  srcOffset: Int32Array,
  lead: Int32Array,
  bytes: Int32Array,
  nParts: number,
  tags: Uint16Array,
  first: number,
  count: number,
  stride: number,
  dw0: number,
  dw1: number,
  dw2: number,
) => number;

export interface BulkCopy {
  gather: GatherFn;
  copyMany: CopyManyFn;
  /** The native CplD scan, when the addon is used and was built with it; never in JavaScript. */
  scanCompletions?: ScanCompletionsFn;
  /** The native placing of a run's completions, when the addon is used and was built with it. */
  completionRun?: CompletionRunFn;
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
    const mod = createRequire(import.meta.url)(path) as { gather?: unknown; copyMany?: unknown; scanCompletions?: unknown; completionRun?: unknown };
    if (typeof mod.gather !== 'function' || typeof mod.copyMany !== 'function') {
      return `${path} is not tlpwire's bulk-copy addon (or an older build of it: npm run build:native)`;
    }
    const copies = { gather: mod.gather as GatherFn, copyMany: mod.copyMany as CopyManyFn };
    // An older build without the scan or the completion runs still does the copies; the read
    // paths then use JavaScript.
    return {
      ...copies,
      ...(typeof mod.scanCompletions === 'function' ? { scanCompletions: mod.scanCompletions as ScanCompletionsFn } : {}),
      ...(typeof mod.completionRun === 'function' ? { completionRun: mod.completionRun as CompletionRunFn } : {}),
    };
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
