import { type Clock, type Rng, TlpwireError } from '../core/index.js';
import { ETH_HLEN } from './net-header.js';

/**
 * Test traffic: Ethernet frames with ethertype 0x88B5 (IEEE 802 "local experimental") carrying a
 * small header, for `npm start`, the stress tests and the integration tests.
 *
 *   0  destination MAC (6)   6 source MAC (6)   12 ethertype 0x88B5
 *   14 magic "TLPW" (be32)   18 stream id (be16)   20 version (u8) = 1   21 reserved (u8)
 *   22 sequence number (be32)   26 payload length (be16)   28 reserved (be16)
 *   30 send time, ns (be32 high, be32 low)   38 CRC-32 (be32)   42 payload …
 *
 * The CRC-32 (IEEE, as zlib) covers bytes 14..37 and the payload: everything the test put in the
 * frame except the MACs (a loopback swaps them) and itself, so a corrupted sequence number or
 * timestamp is caught like corrupted payload. The payload is a pattern derived from the stream
 * and sequence number. A frame may be longer than 42 + payload length only by Ethernet padding
 * up to 60 bytes.
 */
export const TEST_ETHERTYPE = 0x88b5;
export const TEST_FRAME_MAGIC = 0x544c5057; // "TLPW"
export const TEST_FRAME_VERSION = 1;
export const TEST_HEADER_SIZE = 28;
/** The smallest test frame: Ethernet header + test header, no payload. */
export const TEST_FRAME_MIN = ETH_HLEN + TEST_HEADER_SIZE;
const ETH_MIN_FRAME = 60;

const OFF = {
  MAGIC: 14,
  STREAM: 18,
  VERSION: 20,
  SEQ: 22,
  LEN: 26,
  TIME_HI: 30,
  TIME_LO: 34,
  CRC: 38,
  PAYLOAD: 42,
} as const;

// ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32) ---------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues a CRC-32 over data[start, end); start from 0 and the result is zlib's crc32. */
export function crc32(data: Uint8Array, start = 0, end = data.length, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function frameCrc(frame: Uint8Array, payloadLen: number): number {
  return crc32(frame, OFF.PAYLOAD, OFF.PAYLOAD + payloadLen, crc32(frame, OFF.MAGIC, OFF.CRC));
}

// ---- generator --------------------------------------------------------------------------------------

export interface FrameGeneratorOptions {
  /** Destination and source MACs (6 bytes each). */
  dst: Uint8Array;
  src: Uint8Array;
  stream?: number;
  /** Frame size in bytes (Ethernet header included, no FCS): fixed, or uniform in [min, max] from `rng`. */
  size: number | { min: number; max: number };
  rng?: Rng;
  /** Stamps the send time; without it the time is 0. */
  clock?: Clock;
  firstSeq?: number;
}

export class FrameGenerator {
  /** The sequence number the next frame will carry. */
  nextSeq: number;
  readonly stream: number;
  private readonly opts: FrameGeneratorOptions;

  constructor(opts: FrameGeneratorOptions) {
    if (opts.dst.length !== 6 || opts.src.length !== 6) throw new TlpwireError('ERR_NET', 'MAC addresses have 6 bytes');
    const { min, max } = typeof opts.size === 'number' ? { min: opts.size, max: opts.size } : opts.size;
    if (!(Number.isInteger(min) && Number.isInteger(max) && min >= TEST_FRAME_MIN && max >= min && max - OFF.PAYLOAD <= 0xffff)) {
      throw new TlpwireError('ERR_NET', `test frame sizes must be integers in ${TEST_FRAME_MIN}..${OFF.PAYLOAD + 0xffff}, min ≤ max`);
    }
    if (min !== max && opts.rng === undefined) throw new TlpwireError('ERR_NET', 'random frame sizes need an rng');
    this.opts = opts;
    this.stream = (opts.stream ?? 0) & 0xffff;
    this.nextSeq = (opts.firstSeq ?? 0) >>> 0;
  }

  /** Builds the next frame (a new array: the caller may hand it off). */
  next(size?: number): Uint8Array {
    const s = size ?? this.pickSize();
    if (!Number.isInteger(s) || s < TEST_FRAME_MIN || s - OFF.PAYLOAD > 0xffff) {
      throw new TlpwireError('ERR_NET', `a test frame of ${s} bytes is outside ${TEST_FRAME_MIN}..${OFF.PAYLOAD + 0xffff}`);
    }
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) >>> 0;
    return buildTestFrame(this.opts.dst, this.opts.src, this.stream, seq, s, this.opts.clock?.nowNs() ?? 0);
  }

  private pickSize(): number {
    const sz = this.opts.size;
    if (typeof sz === 'number') return sz;
    return sz.min + this.opts.rng!.int(sz.max - sz.min + 1);
  }
}

/** One test frame of `size` bytes. */
export function buildTestFrame(dst: Uint8Array, src: Uint8Array, stream: number, seq: number, size: number, timeNs: number): Uint8Array {
  const f = new Uint8Array(size);
  const dv = new DataView(f.buffer);
  f.set(dst, 0);
  f.set(src, 6);
  dv.setUint16(12, TEST_ETHERTYPE);
  dv.setUint32(OFF.MAGIC, TEST_FRAME_MAGIC);
  dv.setUint16(OFF.STREAM, stream);
  f[OFF.VERSION] = TEST_FRAME_VERSION;
  dv.setUint32(OFF.SEQ, seq >>> 0);
  const payloadLen = size - OFF.PAYLOAD;
  dv.setUint16(OFF.LEN, payloadLen);
  dv.setUint32(OFF.TIME_HI, Math.floor(timeNs / 0x1_0000_0000));
  dv.setUint32(OFF.TIME_LO, timeNs >>> 0);
  fillPayload(f, OFF.PAYLOAD, size, stream, seq);
  dv.setUint32(OFF.CRC, frameCrc(f, payloadLen));
  return f;
}

/** A cheap pattern (xorshift32) that differs per stream and sequence number. */
function fillPayload(f: Uint8Array, from: number, to: number, stream: number, seq: number): void {
  let x = (Math.imul(seq, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b) ^ 0x2545f491) >>> 0 || 1;
  let i = from;
  for (; i + 4 <= to; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    f[i] = x & 0xff;
    f[i + 1] = (x >>> 8) & 0xff;
    f[i + 2] = (x >>> 16) & 0xff;
    f[i + 3] = x >>> 24;
  }
  for (; i < to; i++) f[i] = (x >>> ((i & 3) * 8)) & 0xff;
}

// ---- checker ------------------------------------------------------------------------------------------

export type TestFrameVerdict = 'ok' | 'corrupted' | 'duplicate' | 'out-of-order' | 'foreign';

export interface TestFrameInfo {
  stream: number;
  seq: number;
  timeNs: number;
  payloadLength: number;
}

/** Parses and verifies one frame: its fields, or a reason it is not an intact test frame. */
export function parseTestFrame(frame: Uint8Array): TestFrameInfo | { error: 'foreign' | 'corrupted'; why: string } {
  if (frame.length < ETH_HLEN || ((frame[12]! << 8) | frame[13]!) !== TEST_ETHERTYPE) return { error: 'foreign', why: 'not ethertype 0x88B5' };
  if (frame.length < TEST_FRAME_MIN) return { error: 'corrupted', why: `${frame.length} bytes, shorter than a test header` };
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (dv.getUint32(OFF.MAGIC) !== TEST_FRAME_MAGIC) return { error: 'corrupted', why: 'bad magic' };
  const payloadLength = dv.getUint16(OFF.LEN);
  const expected = OFF.PAYLOAD + payloadLength;
  // shorter than announced, or longer by more than Ethernet's minimum-size padding
  if (frame.length < expected || (frame.length > expected && frame.length > ETH_MIN_FRAME)) {
    return { error: 'corrupted', why: `length ${frame.length}, header says ${expected}` };
  }
  if (dv.getUint32(OFF.CRC) !== frameCrc(frame, payloadLength)) return { error: 'corrupted', why: 'CRC mismatch' };
  return {
    stream: dv.getUint16(OFF.STREAM),
    seq: dv.getUint32(OFF.SEQ),
    timeNs: dv.getUint32(OFF.TIME_HI) * 0x1_0000_0000 + dv.getUint32(OFF.TIME_LO),
    payloadLength,
  };
}

export interface FrameCheckerOptions {
  /** The stream to check; frames of other streams count as foreign. Default 0. */
  stream?: number;
  /** For round-trip latency (now − the send time carried in the frame). */
  clock?: Clock;
  /**
   * How far behind the highest sequence number a missing frame may still arrive (as
   * out-of-order) before it is counted lost. Default 65536.
   */
  reorderWindow?: number;
  firstSeq?: number;
}

export interface FrameCheckSummary {
  received: number;
  bytes: number;
  ok: number;
  corrupted: number;
  duplicate: number;
  outOfOrder: number;
  lost: number;
  foreign: number;
  /** corrupted + duplicate + out-of-order + lost. */
  errors: number;
  latencyNs: { count: number; min: number; p50: number; p99: number; max: number; mean: number };
}

/**
 * Classifies received test frames. Sequence numbers start at `firstSeq`; a frame above the next
 * expected one opens a gap whose numbers are "missing": one that arrives later is out-of-order,
 * one that never does (or falls out of the reorder window) is lost; a number seen before is a
 * duplicate. Sequence numbers are taken as plain increasing integers (no 2^32 wrap).
 */
export class FrameChecker {
  private readonly stream: number;
  private readonly clock: Clock | undefined;
  private readonly window: number;
  private expected: number;
  private readonly missing = new Set<number>();
  private lostFinal = 0;
  private latencies = new Float64Array(1024);
  private nLat = 0;
  private sorted: Float64Array | undefined;
  readonly counts = { received: 0, bytes: 0, ok: 0, corrupted: 0, duplicate: 0, outOfOrder: 0, foreign: 0 };
  /** The last corruption's reason (for a report line). */
  lastCorruption: string | undefined;

  constructor(opts: FrameCheckerOptions = {}) {
    this.stream = (opts.stream ?? 0) & 0xffff;
    this.clock = opts.clock;
    this.window = opts.reorderWindow ?? 65536;
    this.expected = (opts.firstSeq ?? 0) >>> 0;
  }

  /** The sequence number expected next (one past the highest seen). */
  get nextExpected(): number {
    return this.expected;
  }

  /** Sequence numbers still missing (they may yet arrive out of order). */
  get missingCount(): number {
    return this.missing.size;
  }

  check(frame: Uint8Array): TestFrameVerdict {
    this.counts.received++;
    this.counts.bytes += frame.length;
    const info = parseTestFrame(frame);
    if ('error' in info) {
      if (info.error === 'foreign') this.counts.foreign++;
      else {
        this.counts.corrupted++;
        this.lastCorruption = info.why;
      }
      return info.error;
    }
    if (info.stream !== this.stream) {
      this.counts.foreign++;
      return 'foreign';
    }
    const s = info.seq;
    let verdict: TestFrameVerdict;
    if (s === this.expected) {
      this.expected = s + 1;
      verdict = 'ok';
    } else if (s > this.expected) {
      // a gap wider than the window: its older part can no longer arrive in time
      const from = Math.max(this.expected, s - this.window);
      this.lostFinal += from - this.expected;
      for (let m = from; m < s; m++) this.missing.add(m);
      this.expected = s + 1;
      this.expire();
      verdict = 'ok';
    } else if (this.missing.delete(s)) {
      verdict = 'out-of-order';
    } else {
      this.counts.duplicate++;
      return 'duplicate';
    }
    if (verdict === 'ok') this.counts.ok++;
    else this.counts.outOfOrder++;
    if (this.clock !== undefined) this.recordLatency(this.clock.nowNs() - info.timeNs);
    return verdict;
  }

  /** Lost so far: missing numbers older than the window, plus (after finish) all missing ones. */
  get lost(): number {
    return this.lostFinal;
  }

  /**
   * Ends the run: frames still missing are lost; `expectedTotal` (frames sent) also counts the
   * tail that never arrived after the highest sequence number seen.
   */
  finish(expectedTotal?: number): FrameCheckSummary {
    this.lostFinal += this.missing.size;
    this.missing.clear();
    if (expectedTotal !== undefined) {
      const end = expectedTotal;
      if (end > this.expected) {
        this.lostFinal += end - this.expected;
        this.expected = end;
      }
    }
    return this.summary();
  }

  summary(): FrameCheckSummary {
    const c = this.counts;
    return {
      ...c,
      lost: this.lostFinal,
      errors: c.corrupted + c.duplicate + c.outOfOrder + this.lostFinal,
      latencyNs: this.latencySummary(),
    };
  }

  /** The p-th percentile (0..100) of round-trip latency in ns, nearest rank; NaN without samples. */
  latencyPercentile(p: number): number {
    if (this.nLat === 0) return NaN;
    if (this.sorted === undefined) this.sorted = this.latencies.slice(0, this.nLat).sort();
    const rank = Math.min(this.nLat - 1, Math.max(0, Math.ceil((p / 100) * this.nLat) - 1));
    return this.sorted[rank]!;
  }

  private latencySummary(): FrameCheckSummary['latencyNs'] {
    if (this.nLat === 0) return { count: 0, min: NaN, p50: NaN, p99: NaN, max: NaN, mean: NaN };
    let sum = 0;
    for (let i = 0; i < this.nLat; i++) sum += this.latencies[i]!;
    return {
      count: this.nLat,
      min: this.latencyPercentile(0),
      p50: this.latencyPercentile(50),
      p99: this.latencyPercentile(99),
      max: this.latencyPercentile(100),
      mean: sum / this.nLat,
    };
  }

  private recordLatency(ns: number): void {
    if (this.nLat === this.latencies.length) {
      const next = new Float64Array(this.latencies.length * 2);
      next.set(this.latencies);
      this.latencies = next;
    }
    this.latencies[this.nLat++] = ns;
    this.sorted = undefined;
  }

  /** Missing numbers that fell out of the reorder window are lost for good. */
  private expire(): void {
    if (this.missing.size === 0) return;
    // `expected − 1` is the highest number seen
    const floor = this.expected - 1 - this.window;
    if (floor <= 0) return;
    for (const m of this.missing) {
      if (m < floor) {
        this.missing.delete(m);
        this.lostFinal++;
      }
    }
  }
}
