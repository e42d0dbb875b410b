import { createHash, type Hash } from 'node:crypto';

/**
 * The event trace of a stress run: ring operations, DMA operations (the TLPs a real link
 * would carry), doorbells, interrupts and test frames, each with its virtual time. The last
 * `depth` events are kept in a ring buffer (printed when a run fails); with hashing on, every
 * event also goes into a SHA-256, so two runs can be compared event for event by one line.
 *
 * Events are five numbers (kind, time, a, b, c) kept in typed arrays: recording allocates
 * nothing, and the hash is fed 64 KiB at a time.
 */

/** Event kinds. Ring operations first (they are what a stress run counts). */
export const TRACE = {
  DRV_ADD_RX: 0,
  DRV_ADD_TX: 1,
  DRV_GET_RX: 2,
  DRV_GET_TX: 3,
  DEV_POP_RX: 4,
  DEV_POP_TX: 5,
  DEV_PUSH_RX: 6,
  DEV_PUSH_TX: 7,
  /** The device's engine puts a read request on the link (MRd). a: address, b: length. */
  DMA_READ: 8,
  /** The read request reaches host memory and is served. */
  DMA_SERVE: 9,
  /** The completion (CplD) reaches the device. c: fingerprint of the data. */
  DMA_CPL: 10,
  /** The engine puts a write on the link (MWr). c: fingerprint of the data. */
  DMA_WRITE: 11,
  /** The write lands in host memory. */
  DMA_LAND: 12,
  /** An MSI-X write lands: the CPU takes the interrupt. a: queue. */
  MSI: 13,
  /** A doorbell (MMIO write) reaches the device. a: queue. */
  DOORBELL: 14,
  /** A test frame is sent. a: sequence number, b: length. */
  FRAME_TX: 15,
  /** A test frame comes back to the driver. a: sequence number (or -1), b: length, c: verdict (0 ok). */
  FRAME_RX: 16,
  /** A read or write the fabric refused (outside host memory). */
  DMA_ERROR: 17,
} as const;

export type TraceKind = (typeof TRACE)[keyof typeof TRACE];

const KIND_NAMES: readonly string[] = [
  'driver add    rx',
  'driver add    tx',
  'driver get    rx',
  'driver get    tx',
  'device pop    rx',
  'device pop    tx',
  'device push   rx',
  'device push   tx',
  'MRd   (issue)',
  'MRd   (served)',
  'CplD  (arrive)',
  'MWr   (issue)',
  'MWr   (land)',
  'MSI-X (taken)',
  'doorbell',
  'frame tx',
  'frame rx',
  'DMA error',
];

export const FRAME_VERDICTS = ['ok', 'corrupted', 'duplicate', 'out-of-order', 'foreign', 'lost-before'] as const;

export interface TraceEvent {
  kind: number;
  timeNs: number;
  a: number;
  b: number;
  c: number;
}

/** Events per hash update: 4096 × 5 numbers = 160 KiB of Float64. */
const HASH_CHUNK_EVENTS = 4096;

export class EventTrace {
  readonly depth: number;
  private readonly kinds: Uint8Array;
  private readonly times: Float64Array;
  private readonly as: Float64Array;
  private readonly bs: Float64Array;
  private readonly cs: Float64Array;
  private next = 0;
  /** Events recorded in all. */
  total = 0;
  private readonly hash: Hash | undefined;
  private readonly chunk: Float64Array | undefined;
  private chunkLen = 0;

  constructor(depth: number, hashing: boolean) {
    this.depth = Math.max(1, Math.floor(depth));
    this.kinds = new Uint8Array(this.depth);
    this.times = new Float64Array(this.depth);
    this.as = new Float64Array(this.depth);
    this.bs = new Float64Array(this.depth);
    this.cs = new Float64Array(this.depth);
    if (hashing) {
      this.hash = createHash('sha256');
      this.chunk = new Float64Array(HASH_CHUNK_EVENTS * 5);
    }
  }

  get hashing(): boolean {
    return this.hash !== undefined;
  }

  record(kind: number, timeNs: number, a: number, b: number, c: number): void {
    const i = this.next;
    this.kinds[i] = kind;
    this.times[i] = timeNs;
    this.as[i] = a;
    this.bs[i] = b;
    this.cs[i] = c;
    this.next = i + 1 === this.depth ? 0 : i + 1;
    this.total++;
    const ch = this.chunk;
    if (ch !== undefined) {
      let o = this.chunkLen;
      ch[o++] = kind;
      ch[o++] = timeNs;
      ch[o++] = a;
      ch[o++] = b;
      ch[o++] = c;
      this.chunkLen = o;
      if (o === ch.length) this.flushHash();
    }
  }

  /** The SHA-256 of every event so far (hex); undefined when hashing is off. */
  digest(): string | undefined {
    if (this.hash === undefined) return undefined;
    this.flushHash();
    return this.hash.copy().digest('hex');
  }

  /** The last `n` events (at most `depth`), oldest first. */
  last(n = this.depth): TraceEvent[] {
    const k = Math.min(n, this.depth, this.total);
    const out: TraceEvent[] = [];
    for (let j = k; j > 0; j--) {
      const i = (this.next - j + this.depth) % this.depth;
      out.push({ kind: this.kinds[i]!, timeNs: this.times[i]!, a: this.as[i]!, b: this.bs[i]!, c: this.cs[i]! });
    }
    return out;
  }

  private flushHash(): void {
    if (this.hash === undefined || this.chunk === undefined || this.chunkLen === 0) return;
    // Float64 in the platform's byte order: runs are compared on one machine (or little-endian ones)
    this.hash.update(new Uint8Array(this.chunk.buffer, 0, this.chunkLen * 8));
    this.chunkLen = 0;
  }
}

export function traceKindName(kind: number): string {
  return KIND_NAMES[kind] ?? `kind ${kind}`;
}

/** Whether a kind is one of the eight ring operations. */
export function isRingOp(kind: number): boolean {
  return kind <= TRACE.DEV_PUSH_TX;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Lines for a failure report: consecutive ring operations of one kind at one instant (a device
 * pushing a batch) share a line, so that the report shows more than one batch.
 */
export function formatTraceEvents(events: readonly TraceEvent[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < events.length; ) {
    const e = events[i]!;
    let j = i + 1;
    if (isRingOp(e.kind)) while (j < events.length && events[j]!.kind === e.kind && events[j]!.timeNs === e.timeNs) j++;
    if (j - i === 1) out.push(formatTraceEvent(e));
    else {
      const heads = events.slice(i, j).map((x) => `${x.a}${x.b === 0 ? '' : `:${x.b}`}`);
      const t = `${e.timeNs.toLocaleString('en-US').padStart(15)} ns`;
      out.push(`${t}  ${traceKindName(e.kind).padEnd(16)} ×${j - i} head:bytes ${heads.join(' ')}`);
    }
    i = j;
  }
  return out;
}

/** One line per event, for failure reports. */
export function formatTraceEvent(e: TraceEvent): string {
  const t = `${e.timeNs.toLocaleString('en-US').padStart(15)} ns`;
  const name = traceKindName(e.kind).padEnd(16);
  let what: string;
  if (isRingOp(e.kind)) what = `head ${e.a}, ${e.b} bytes`;
  else if (e.kind === TRACE.DMA_READ || e.kind === TRACE.DMA_SERVE) what = `${hex(e.a)} +${e.b}`;
  else if (e.kind === TRACE.DMA_CPL || e.kind === TRACE.DMA_WRITE || e.kind === TRACE.DMA_LAND) {
    what = `${hex(e.a)} +${e.b}  data#${(e.c >>> 0).toString(16).padStart(8, '0')}`;
  } else if (e.kind === TRACE.MSI || e.kind === TRACE.DOORBELL) what = `queue ${e.a}`;
  else if (e.kind === TRACE.FRAME_TX) what = `seq ${e.a}, ${e.b} bytes`;
  else if (e.kind === TRACE.FRAME_RX) what = `seq ${e.a < 0 ? '?' : e.a}, ${e.b} bytes, ${FRAME_VERDICTS[e.c] ?? e.c}`;
  else what = `${hex(e.a)} +${e.b}`;
  return `${t}  ${name} ${what}`;
}

/**
 * A cheap fingerprint of DMA data for traces: FNV-1a over the first 64 bytes (a frame's test
 * header, sequence number included, lies within them) and the length.
 */
export function fingerprint(d: Uint8Array): number {
  const n = d.length < 64 ? d.length : 64;
  let h = 0x811c9dc5 ^ d.length;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ d[i]!, 0x01000193);
  return h >>> 0;
}
