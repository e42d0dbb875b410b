/**
 * The data link over any Transport: training handshake, batching of TLPs into transport messages,
 * PCIe credit-based flow control, and link errors. docs/PROTOCOL.md is the wire reference.
 *
 * Time comes only from the Clock, so the same Link runs over real sockets and in the simulator.
 */
import {
  Counter,
  Counters,
  DeferredCopies,
  bulkCopy,
  TlpwireError,
  type BulkCopy,
  type CompletionRunFn,
  errorMessage,
  silentLogger,
  type Clock,
  type ErrorCode,
  type Logger,
  type TimerHandle,
} from '../core/index.js';
import { CPL_FIELDS, CREDIT_TYPES, DW0, MPS_BYTES, TLP_SIZE } from '../spec/index.js';
import {
  CompletionView,
  MemReadView,
  MemWriteRun,
  MemReadRun,
  MemWriteView,
  TLP_KINDS,
  decodeTlp,
  encodeCompletionHeaderInto,
  encodeMemReadInto,
  encodeMemWriteHeaderInto,
  encodeMemWriteHeadersInto,
  BYTE0_CPLD,
  encodeTlpInto,
  encodeValidatedTlpInto,
  encodedLength,
  parseCompletionData,
  parseMemRead,
  parseMemWrite,
  type CompletionFields,
  type CompletionParts,
  type MemReadFields,
  type MemWriteFields,
  type Tlp,
  type TlpClass,
  type TlpKind,
} from '../tlp/index.js';
import {
  BATCH_HEADER_BYTES,
  DEFAULT_BATCH_BYTES,
  DEFAULT_FC_UPDATE_FRACTION,
  DEFAULT_HANDSHAKE_TIMEOUT_NS,
  FEATURE_SCALED_FC,
  ITEM,
  ITEM_HEADER_BYTES,
  MAX_CONTROL_BODY_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_TLP_BYTES,
  PROTOCOL_NAME,
  PROTOCOL_VERSION,
} from './constants.js';
import { helloIdentity, packControl, parseBye, parseError, parseHello, parseUpdateFc, unpackControl, type HelloBody } from './control.js';
import {
  RxCredits,
  TxCredits,
  checkAdvertisement,
  effectiveAdvertisement,
  normalizeAdvertisement,
  CLASSES,
  rawTlpClassIndex,
  rawTlpDataBytes,
  type CreditAdvertisement,
  type CreditScales,
  type CreditType,
  type CreditValues,
  dataCreditsFor,
} from './credits.js';
import { BatchWriter, hasBatchMagic, hexPrefix } from './framing.js';
import type { LinkCapabilities, LinkPort, LinkState } from './port.js';
import type { Transport } from './transport.js';

/**
 * Receive-buffer credits we advertise by default. Posted: 32752 data credits × 16 B ≈ 512 KiB and
 * 2032 headers (the maxima at scale 16), enough to keep a ~100 µs-RTT socket busy with 256-byte
 * writes (bench/link-throughput.ts). Non-posted: 1024 requests (10-bit tags), 256 data credits for
 * CfgWr/IOWr/AtomicOp operands. Completions: infinite, as root complexes and endpoints advertise
 * (§3.4.2) — a requester only asks for what it has room for.
 */
export const DEFAULT_CREDITS: Readonly<CreditValues> = { PH: 2032, PD: 32752, NPH: 1024, NPD: 256, CplH: 0, CplD: 0 };
export const DEFAULT_SCALES: Readonly<CreditScales> = { PH: 16, PD: 16, NPH: 16, NPD: 4, CplH: 1, CplD: 1 };

export interface LinkOptions {
  clock: Clock;
  logger?: Logger;
  /** Where counters go; a fresh Counters by default. */
  counters?: Counters;
  /** "rc" or "ep" (free text, for the partner's logs). */
  role: string;
  name?: string;
  /** Largest payload we accept (power of two, 128..4096); larger received TLPs are Malformed. Default 4096. */
  maxPayloadSize?: number;
  /** Default true. */
  tag10Bit?: boolean;
  /** Extra feature flags to announce ("scaled-fc" is added from `scaledFlowControl`). */
  features?: readonly string[];
  /** Offer PCIe Scaled Flow Control. Default true. */
  scaledFlowControl?: boolean;
  /** Our receive credits (0 = infinite), merged over DEFAULT_CREDITS. Rounded to the scale. */
  credits?: Partial<CreditValues>;
  scales?: Partial<CreditScales>;
  /** Default 5 s. */
  handshakeTimeoutNs?: number;
  /** Flush a batch before it would grow past this many bytes. Default 64 KiB. */
  batchBytes?: number;
  /** Log one malformed-TLP warning per this many (the first is always logged). Default 100. */
  malformedLogEvery?: number;
  /** Send UpdateFC at the end of the message being received once this fraction of a window was freed. Default DEFAULT_FC_UPDATE_FRACTION (0.125). */
  fcUpdateFraction?: number;
  /** Otherwise send freed credits at the latest after this long. Default 100 µs. */
  fcUpdateDelayNs?: number;
  /** Protocol version to announce; only tests change it (to act as another version). */
  protocolVersion?: number;
  /**
   * The copies the link's DMA paths use: bulkCopy() by default (the native addon when it loads).
   * Tests pass one without a native function to run the JavaScript way beside the native one.
   */
  bulkCopy?: BulkCopy;
}

interface Waiter {
  resolve: () => void;
  reject: (e: TlpwireError) => void;
}

const FOUR_GIB = 0x1_0000_0000;
const NO_PARTS: readonly Uint8Array[] = [];

/**
 * Reads a message given as consecutive pieces: `take(n)` leaves the next n bytes at buf[off..],
 * in place when one piece holds them, else copied into a new buffer (the only copying done).
 */
class PartsCursor {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  remaining = 0;
  private parts: readonly Uint8Array[] = NO_PARTS;
  private index = 0;
  private at = 0;

  reset(parts: readonly Uint8Array[]): void {
    // Plain Uint8Array views: payload views of them are cheaper than views of Buffers.
    this.parts = parts.map((p) => (p.constructor === Uint8Array ? p : new Uint8Array(p.buffer, p.byteOffset, p.byteLength)));
    this.index = 0;
    this.at = 0;
    this.remaining = 0;
    for (const p of parts) this.remaining += p.length;
    this.skipEmpty();
  }

  /** The piece the cursor is in, and where in it (valid while remaining > 0). */
  get piece(): Uint8Array {
    return this.parts[this.index]!;
  }

  get pieceOffset(): number {
    return this.at;
  }

  /** Moves on `n` bytes that lie within the current piece. */
  advance(n: number): void {
    this.at += n;
    this.remaining -= n;
    this.skipEmpty();
  }

  take(n: number): void {
    const p = this.parts[this.index]!;
    if (p !== undefined && p.length - this.at >= n) {
      this.buf = p;
      this.off = this.at;
      this.at += n;
      this.remaining -= n;
      this.skipEmpty();
      return;
    }
    this.buf = this.peek(n);
    this.off = 0;
    // Advance over the copied bytes.
    let left = n;
    while (left > 0) {
      const q = this.parts[this.index]!;
      const k = Math.min(left, q.length - this.at);
      this.at += k;
      left -= k;
      this.skipEmpty();
    }
    this.remaining -= n;
  }

  /** The next n (≤ remaining) bytes as one new buffer, without advancing. */
  peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let o = 0;
    let i = this.index;
    let at = this.at;
    while (o < n) {
      const q = this.parts[i]!;
      const k = Math.min(n - o, q.length - at);
      out.set(q.subarray(at, at + k), o);
      o += k;
      i++;
      at = 0;
    }
    return out;
  }

  private skipEmpty(): void {
    while (this.index < this.parts.length && this.at >= this.parts[this.index]!.length) {
      this.index++;
      this.at = 0;
    }
  }
}
/** Credit class indexes (credits.ts CLASSES): posted, non-posted, completion. */
const CLASS_P = 0;
const CLASS_NP = 1;
const CLASS_CPL = 2;

/** The counters `${prefix}${kind}` of every TLP kind, held so that per-TLP paths skip the look-up. */
function countersByKind(counters: Counters, prefix: string): Record<TlpKind, Counter> {
  return Object.fromEntries(TLP_KINDS.map((k) => [k, counters.counter(`${prefix}${k}`)])) as Record<TlpKind, Counter>;
}

export class Link implements LinkPort {
  readonly counters: Counters;
  private readonly sent: Record<TlpKind, Counter>;
  private readonly received: Record<TlpKind, Counter>;
  readonly remote: string;

  onTlp: (tlp: Tlp) => void = () => {};
  onCreditsAvailable: () => void = () => {};
  onStateChange: (state: LinkState, reason?: string) => void = () => {};
  /** A received TLP failed to decode (or broke a link-level rule); it was dropped. `bytes` is a view. */
  onMalformedTlp: (error: TlpwireError, bytes: Uint8Array) => void = () => {};
  /**
   * Fast receive paths (LinkPort): MWr/MWr64 and CplD/CplDLk that src/tlp's fast parsers accept
   * go here, as a view valid during the call, instead of being decoded for onTlp; false declines.
   */
  onMemWrite: ((bytes: Uint8Array, v: MemWriteView) => boolean) | undefined = undefined;
  onCompletionData: ((bytes: Uint8Array, v: CompletionView) => boolean) | undefined = undefined;
  /**
   * The bulk receive path for posted writes (LinkPort): consecutive MWr of one batch that write
   * one contiguous range with the same header (src/tlp MemWriteRun) come here together, before
   * any later item of the batch is looked at. True means the writes were done: the link counts
   * them and frees their credits. False declines: each goes on to onMemWrite or onTlp as usual.
   */
  onMemWriteRun: ((run: MemWriteRun) => boolean) | undefined = undefined;
  /** Fast receive path for MRd/MRd64 (LinkPort), as onMemWrite is for writes. */
  onMemRead: ((bytes: Uint8Array, v: MemReadView) => boolean) | undefined = undefined;
  /**
   * The bulk receive path for reads (LinkPort): consecutive MRd of one batch that read one
   * contiguous range in equal pieces with the same header but the tag (src/tlp MemReadRun) come
   * here together, before any later item of the batch is looked at. Returns how many of them,
   * from the first, it took (answered, or queued to be; their credits are its to release as
   * onMemRead's are); the rest go on to onMemRead or onTlp one by one, as usual.
   */
  onMemReadRun: ((run: MemReadRun) => number) | undefined = undefined;
  /**
   * The bulk receive path for read completions (LinkPort): the CplD items of a batch that follow
   * one, from an offset on, taken together (the requester's native scan), before any later item
   * is looked at. Returns where it stopped; the link counts those taken and frees their credits,
   * and hands the item it stopped at on as usual (then scans again after it).
   */
  onCompletionScan: ((msg: Uint8Array, off: number, end: number, maxPayloadSize: number) => number) | undefined = undefined;
  /** Called when a received message is done with (LinkPort.onReceiveEnd). */
  onReceiveEnd: () => void = () => {};
  private readonly memReadView = new MemReadView();
  /**
   * Payload copies done together, many to a call: those of the MWr we send (sendMemWrites runs
   * them before it returns) and the data of completions made while a received batch is worked
   * through, those we send (RAM into the batch: sendCompletionData) and those we receive (into
   * the read's buffer: copyLater). They are done before the batch leaves (flush), before a
   * received TLP that may write memory (a posted one, or one for onTlp), before a received read
   * when completion data is among them (copiesIntoMemory), before the native passes that copy at
   * once (the completion scan, completionRun), and when the received batch is done. A read's data
   * is thus what memory held when the read was answered.
   */
  private readonly copies: DeferredCopies;
  /**
   * Whether copies that write memory (copyLater: received completion data into a read's buffer)
   * are among those deferred: a read answered from memory runs them first.
   */
  private copiesIntoMemory = false;
  /** The addon's placing of a run's completions (sendCompletionRun), when it has one; and the header it starts from. */
  private readonly placeRun: CompletionRunFn | undefined;
  private readonly headerTemplate = new Uint8Array(16);
  private readonly run = new MemWriteRun();
  private readonly runView = new MemWriteView();
  private readonly readRun = new MemReadRun();
  private readonly readRunView = new MemReadView();
  private readonly memWriteView = new MemWriteView();
  private readonly cursor = new PartsCursor();
  private readonly completionView = new CompletionView();

  private _state: LinkState = 'down';
  private _partner: LinkCapabilities | undefined;
  private started = false;
  private finished = false;
  private downReason: string | undefined;
  private downError: TlpwireError | undefined;

  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly version: number;
  private readonly hello: HelloBody;
  private readonly ownAdv: CreditAdvertisement;
  private readonly batchBytes: number;
  private readonly malformedLogEvery: number;
  private readonly fcUpdateFraction: number;
  private readonly fcUpdateDelayNs: number;
  private readonly maxPayloadSize: number;
  private readonly handshakeTimeoutNs: number;

  private readonly writer: BatchWriter;
  private flushScheduled = false;
  private readonly flushFromDefer = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private fcTimer: TimerHandle | undefined;
  private handshakeTimer: TimerHandle | undefined;
  private congested = false;
  /** Inside receive(): urgent credit returns wait for the end of the message, not the turn. */
  private receiving = false;
  private flushAfterReceive = false;
  /** Credits were freed while a batch is received: creditsFreed is due when it is done. */
  private freedWhileReceiving = false;
  /** Set while a batch is received when an item raised the partner's credit limits. */
  private creditsRaised = false;

  private partnerHello: HelloBody | undefined;
  private tx: TxCredits | undefined;
  private rx: RxCredits | undefined;
  private malformedCount = 0;
  private upWaiters: Waiter[] = [];
  private downWaiters: ((reason: string) => void)[] = [];

  constructor(
    private readonly transport: Transport,
    options: LinkOptions,
  ) {
    this.clock = options.clock;
    this.counters = options.counters ?? new Counters();
    this.sent = countersByKind(this.counters, 'tlp.sent.');
    this.received = countersByKind(this.counters, 'tlp.received.');
    this.remote = transport.remote;
    this.log = (options.logger ?? silentLogger).child({ link: transport.remote });
    this.version = options.protocolVersion ?? PROTOCOL_VERSION;
    this.batchBytes = options.batchBytes ?? DEFAULT_BATCH_BYTES;
    const copies = options.bulkCopy ?? bulkCopy();
    this.copies = new DeferredCopies(copies.copyMany);
    this.placeRun = copies.completionRun;
    this.malformedLogEvery = Math.max(1, options.malformedLogEvery ?? 100);
    this.fcUpdateFraction = options.fcUpdateFraction ?? DEFAULT_FC_UPDATE_FRACTION;
    this.fcUpdateDelayNs = options.fcUpdateDelayNs ?? 100_000;
    this.handshakeTimeoutNs = options.handshakeTimeoutNs ?? DEFAULT_HANDSHAKE_TIMEOUT_NS;
    this.maxPayloadSize = options.maxPayloadSize ?? 4096;
    if (!(MPS_BYTES as readonly number[]).includes(this.maxPayloadSize)) {
      throw new TlpwireError('ERR_USAGE', `maxPayloadSize ${this.maxPayloadSize} is not one of ${MPS_BYTES.join(', ')}`);
    }
    const maxControl = ITEM_HEADER_BYTES + MAX_CONTROL_BODY_BYTES;
    if (this.batchBytes < BATCH_HEADER_BYTES + Math.max(maxControl, ITEM_HEADER_BYTES + MAX_TLP_BYTES) || this.batchBytes > MAX_MESSAGE_BYTES) {
      throw new TlpwireError('ERR_USAGE', `batchBytes ${this.batchBytes} must be between ${BATCH_HEADER_BYTES + maxControl} and ${MAX_MESSAGE_BYTES}`);
    }
    this.ownAdv = normalizeAdvertisement({
      credits: { ...DEFAULT_CREDITS, ...options.credits },
      scale: { ...DEFAULT_SCALES, ...options.scales },
    });
    const badAdv = checkAdvertisement(this.ownAdv);
    if (badAdv !== undefined) throw new TlpwireError('ERR_USAGE', `credit configuration: ${badAdv}`);
    // §3.4.2: a receiver must advertise room for the largest TLP it accepts, or a sender waits
    // forever. With scale s up to s − 1 freed credits may still be unadvertised, so add s − 1.
    const largest = { PD: this.maxPayloadSize / 16, CplD: this.maxPayloadSize / 16, NPD: 2 /* CAS, 32 B */ } as const;
    for (const t of ['PD', 'CplD', 'NPD'] as const) {
      const c = this.ownAdv.credits[t];
      const need = largest[t] + this.ownAdv.scale[t] - 1;
      if (c !== 0 && (c < need || Math.min(c, 2047) < largest[t])) {
        throw new TlpwireError(
          'ERR_USAGE',
          `${t} credits ${c} at scale ${this.ownAdv.scale[t]} cannot hold one ${t === 'NPD' ? '32-byte AtomicOp' : `${this.maxPayloadSize}-byte payload`} (${need} needed)`,
        );
      }
    }
    const features = new Set(options.features ?? []);
    if (options.scaledFlowControl ?? true) features.add(FEATURE_SCALED_FC);
    else features.delete(FEATURE_SCALED_FC);
    this.hello = {
      protocol: PROTOCOL_NAME,
      version: this.version,
      role: options.role,
      capabilities: { maxPayloadSize: this.maxPayloadSize, tag10Bit: options.tag10Bit ?? true, features: [...features] },
      fc: this.ownAdv,
    };
    if (options.name !== undefined) this.hello.name = options.name;
    this.writer = new BatchWriter(this.version & 0xff);

    transport.onMessage = (data) => this.receive(data);
    transport.onMessageParts = (parts) => this.receiveParts(parts);
    transport.onDrain = () => this.drained();
    transport.onClose = (error) => {
      this.goDown(error === undefined ? 'transport closed by peer' : `transport error: ${error.message}`, 'ERR_LINK_DOWN', false);
    };
  }

  get state(): LinkState {
    return this._state;
  }

  get partner(): LinkCapabilities | undefined {
    return this._partner;
  }

  /** Why the link went down (undefined while it has not). */
  get reason(): string | undefined {
    return this.downReason;
  }

  /** Sends our HELLO and starts the handshake timer: down → training. */
  start(): void {
    if (this.started || this.finished) return;
    this.started = true;
    this.setState('training');
    this.handshakeTimer = this.clock.setTimer(this.handshakeTimeoutNs, () => {
      this.handshakeTimer = undefined;
      if (this._state === 'up' || this.finished) return;
      const ms = this.handshakeTimeoutNs / 1e6;
      this.log.warn({ timeoutMs: ms }, 'handshake timed out');
      this.goDown(`handshake timeout after ${ms} ms`, 'ERR_LINK_TIMEOUT', true);
    });
    this.appendControl(ITEM.HELLO, this.hello);
    this.flush();
    if (!this.finished && this.partnerHello !== undefined) this.goUp(this.partnerHello);
  }

  /** Resolves when the link is up; rejects with the reason if it goes down first. */
  whenUp(): Promise<void> {
    if (this._state === 'up') return Promise.resolve();
    if (this.finished) return Promise.reject(this.downError ?? new TlpwireError('ERR_LINK_DOWN', 'link is down'));
    return new Promise((resolve, reject) => this.upWaiters.push({ resolve, reject }));
  }

  /** Resolves with the reason once the link is down for good. */
  whenDown(): Promise<string> {
    if (this.finished) return Promise.resolve(this.downReason ?? 'down');
    return new Promise((resolve) => this.downWaiters.push(resolve));
  }

  hasCredits(cls: TlpClass, dataBytes: number): boolean {
    if (this._state !== 'up' || this.tx === undefined) return false;
    if (this.congested) {
      this.counters.add('stalls.transport');
      return false;
    }
    if (!this.tx.canSend(cls, dataBytes)) {
      this.counters.add('stalls.credits');
      return false;
    }
    return true;
  }

  /** Credits the partner still grants for a type (Infinity when it advertised infinite). */
  creditsAvailable(type: CreditType): number {
    return this.tx?.available(type) ?? 0;
  }

  /** Credits we have received for a type and the consumer has not released yet. */
  creditsHeld(type: CreditType): number {
    return this.rx?.heldCredits(type) ?? 0;
  }

  /**
   * Queues a TLP for this turn's batch. Throws ERR_LINK_DOWN when the link is not up,
   * ERR_LINK_NO_CREDITS when the partner has not granted the credits (call hasCredits first), and
   * the codec's ERR_TLP_* when the TLP is invalid; in each case nothing is queued.
   */
  sendTlp(tlp: Tlp): void {
    this.send(tlp, false);
  }

  /** sendTlp for a TLP that passed validateTlp and was not changed since (the transaction layer's own). */
  sendValidatedTlp(tlp: Tlp): void {
    this.send(tlp, true);
  }

  private send(tlp: Tlp, validated: boolean): void {
    const tx = this.tx;
    if (this._state !== 'up' || tx === undefined) {
      throw new TlpwireError('ERR_LINK_DOWN', `cannot send ${tlp.kind}: link is ${this._state}${this.downReason ? ` (${this.downReason})` : ''}`);
    }
    const size = encodedLength(tlp);
    if (this.writer.length + ITEM_HEADER_BYTES + size > this.batchBytes) this.flush();
    const offset = this.writer.reserveItem(size);
    const buf = this.writer.buffer;
    const n = validated ? encodeValidatedTlpInto(tlp, buf, offset) : encodeTlpInto(tlp, buf, offset);
    // Credits from the encoded bytes: the very computation the receiver makes before decoding.
    const ci = rawTlpClassIndex(buf, offset, n);
    if (ci < 0) throw new TlpwireError('ERR_INTERNAL', `encoded ${tlp.kind} has an unknown Fmt/Type`);
    const dataBytes = rawTlpDataBytes(buf, offset, n);
    if (!tx.canSendClass(ci, dataBytes)) {
      this.counters.add('stalls.credits');
      throw new TlpwireError('ERR_LINK_NO_CREDITS', `no ${CLASSES[ci]!} credits for ${tlp.kind} with ${dataBytes} data bytes (call hasCredits first)`);
    }
    tx.consumeClass(ci, dataBytes);
    this.writer.commitItem(ITEM.TLP, n);
    this.sent[tlp.kind].add();
    this.scheduleFlush();
  }

  /**
   * Sends a DMA write of whole DWs as MWr/MWr64 TLPs straight from `src` (src/tlp
   * encodeMemWriteInto): one TLP per naturally aligned `mps` block of [address, address + length),
   * src[srcOffset] being the byte at `address`. Sends as many as credits and the transport allow,
   * in order, and returns how many bytes went (whole TLPs; 0 when hasCredits would say no for the
   * first, which is then counted as a stall like hasCredits counts one).
   *
   * This is the bulk path: a 64 KiB write is 256 TLPs at MPS 256, and doing the link's bookkeeping
   * (state, counters, flush scheduling) once per call instead of once per TLP is most of what a
   * TLP costs here besides its bytes.
   */
  sendMemWrites(f: MemWriteFields, address: number, src: Uint8Array, srcOffset: number, length: number, mps: number): number {
    const tx = this.tx;
    if (this._state !== 'up' || tx === undefined) return 0;
    if (!(srcOffset >= 0 && srcOffset + length <= src.length)) {
      throw new TlpwireError('ERR_INTERNAL', `sendMemWrites: source range ${srcOffset}+${length} is outside its ${src.length}-byte buffer`);
    }
    if (!(mps >= 4 && mps <= 4096 && (mps & (mps - 1)) === 0)) throw new TlpwireError('ERR_INTERNAL', `sendMemWrites: mps ${mps} is not a power of two from 4 to 4096`);
    const end = address + length;
    let a = address;
    let narrow = 0;
    let wide = 0;
    // Headers are written as the TLPs are placed, the payloads copied together with the other
    // deferred copies (flush runs them before the batch leaves).
    const writer = this.writer;
    try {
      while (a < end) {
        if (this.congested) {
          this.counters.add('stalls.transport');
          break;
        }
        // (Low bits by masking: % on a double is a library call. mps is a power of two ≤ 4096.)
        const pe = Math.min(end, a - (a & (mps - 1)) + mps);
        const n = pe - a;
        if (!tx.canSendClass(CLASS_P, n)) {
          this.counters.add('stalls.credits');
          break;
        }
        if (n === mps && pe + mps <= end) {
          // Whole MPS blocks: as many as the credits allow and the batch holds, placed together
          // (the same TLPs, items and copies as one by one, with the bookkeeping done once).
          const hdr = a >= FOUR_GIB ? 16 : 12;
          const item = ITEM_HEADER_BYTES + hdr + mps;
          let k = Math.floor((end - a) / mps);
          if (a < FOUR_GIB) k = Math.min(k, (FOUR_GIB - a) / mps); // one header form per stretch
          k = tx.countClass(CLASS_P, mps, k);
          if (writer.length + item > this.batchBytes) {
            this.flush();
            if (this.congested) continue; // the top of the loop counts the stall and stops
          }
          k = Math.min(k, Math.floor((this.batchBytes - Math.max(writer.length, BATCH_HEADER_BYTES)) / item));
          if (k > 1) {
            const first = writer.reserveItems(k, hdr + mps);
            const out = writer.buffer;
            encodeMemWriteHeadersInto(out, first, item, f, a, mps, k);
            const from = srcOffset + (a - address);
            for (let i = 0; i < k; i++) this.copies.add(out, first + i * item + hdr, src, from + i * mps, mps);
            tx.consumeClassN(CLASS_P, mps, k);
            writer.commitItems(k, ITEM.TLP, hdr + mps);
            if (hdr === 16) wide += k;
            else narrow += k;
            a += k * mps;
            continue;
          }
        }
        const size = (a >= FOUR_GIB ? 16 : 12) + n;
        if (this.writer.length + ITEM_HEADER_BYTES + size > this.batchBytes) this.flush();
        const offset = this.writer.reserveItem(size);
        const hdr = encodeMemWriteHeaderInto(this.writer.buffer, offset, f, a, n);
        this.copies.add(this.writer.buffer, offset + hdr, src, srcOffset + (a - address), n);
        tx.consumeClass(CLASS_P, n);
        this.writer.commitItem(ITEM.TLP, hdr + n);
        if (a >= FOUR_GIB) wide++;
        else narrow++;
        a = pe;
      }
    } finally {
      // The caller may reuse src once we return; and no TLP may go without its payload, even
      // when something above threw.
      this.runCopies();
    }
    if (narrow > 0) this.sent.MWr.add(narrow);
    if (wide > 0) this.sent.MWr64.add(wide);
    if (a > address) this.scheduleFlush();
    return a - address;
  }

  /**
   * Sends an MRd/MRd64 for `byteLength` bytes at `address` (src/tlp encodeMemReadInto) when
   * hasCredits would say yes; otherwise returns false having sent and counted nothing.
   */
  sendMemRead(f: MemReadFields, tag: number, address: number, byteLength: number): boolean {
    // No stall is counted here: a caller that is refused queues the read, and that counts it.
    if (this._state !== 'up' || this.tx === undefined || this.congested || !this.tx.canSendClass(CLASS_NP, 0)) return false;
    const size = address - (address & 3) >= FOUR_GIB ? 16 : 12;
    if (this.writer.length + ITEM_HEADER_BYTES + size > this.batchBytes) this.flush();
    const offset = this.writer.reserveItem(size);
    const n = encodeMemReadInto(this.writer.buffer, offset, f, tag, address, byteLength);
    this.tx!.consumeClass(CLASS_NP, 0);
    this.writer.commitItem(ITEM.TLP, n);
    (n === 16 ? this.sent.MRd64 : this.sent.MRd).add();
    this.scheduleFlush();
    return true;
  }

  /**
   * Sends the CplD/CplDLk parts of one read straight from `src` (src/tlp
   * encodeCompletionHeaderInto, the payloads joining the deferred copies), in order, while
   * hasCredits would say yes; returns how many went (0: none, nothing counted). Throws
   * ERR_INTERNAL, having sent nothing, when a part's bytes are not in `src`.
   */
  sendCompletionData(f: CompletionFields, src: Uint8Array, parts: CompletionParts): number {
    const tx = this.tx;
    if (this._state !== 'up' || tx === undefined) return 0;
    const n = parts.count;
    for (let i = 0; i < n; i++) {
      const o = parts.srcOffset[i]!;
      if (!(o >= 0 && o + parts.bytes[i]! <= src.length)) {
        throw new TlpwireError('ERR_INTERNAL', `sendCompletionData: source range ${o}+${parts.bytes[i]!} is outside its ${src.length}-byte buffer`);
      }
    }
    // Completion credits are infinite at a root complex and an endpoint: then nothing to gate or count.
    const counted = !tx.infiniteClass(CLASS_CPL);
    const writer = this.writer;
    let i = 0;
    for (; i < n && !this.congested; i++) {
      const lead = parts.lead[i]!;
      const bytes = parts.bytes[i]!;
      const payload = (lead + bytes + 3) & ~3;
      if (counted && !tx.canSendClass(CLASS_CPL, payload)) break;
      if (writer.length + ITEM_HEADER_BYTES + 12 + payload > this.batchBytes) this.flush();
      this.placeCompletion(f, src, parts, i, 0);
      if (counted) tx.consumeClass(CLASS_CPL, payload);
    }
    if (i === 0) return 0;
    if (!this.receiving) this.runCopies();
    (f.locked ? this.sent.CplDLk : this.sent.CplD).add(i);
    this.scheduleFlush();
    return i;
  }

  /**
   * sendCompletionData for `count` reads one after another, with the link's bookkeeping done
   * once: read r's completions are `parts` with their source `r × stride` further on and the tag
   * tags[first + r] (their byte counts and lower addresses the same for every read: the caller's
   * reads are `stride` bytes apart, a multiple of 128 and of the parts' MPS blocks). All of a
   * read's completions go or none: returns how many reads went (0 with finite completion
   * credits: sendCompletionData then, read by read).
   */
  sendCompletionRun(f: CompletionFields, tags: Uint16Array, first: number, count: number, src: Uint8Array, parts: CompletionParts, stride: number): number {
    const tx = this.tx;
    const n = parts.count;
    if (this._state !== 'up' || tx === undefined || n === 0 || count <= 0 || !tx.infiniteClass(CLASS_CPL)) return 0;
    if (!(stride > 0 && (stride & 127) === 0 && first >= 0 && first + count <= tags.length)) {
      throw new TlpwireError('ERR_INTERNAL', `sendCompletionRun: ${count} reads ${stride} bytes apart from tag index ${first} of ${tags.length}`);
    }
    let readBytes = 0; // what one read's completions take in a batch
    for (let i = 0; i < n; i++) {
      const o = parts.srcOffset[i]!;
      if (!(o >= 0 && o + parts.bytes[i]! + (count - 1) * stride <= src.length)) {
        throw new TlpwireError('ERR_INTERNAL', `sendCompletionRun: source range ${o}+${parts.bytes[i]!} (+${count - 1} × ${stride}) is outside its ${src.length}-byte buffer`);
      }
      readBytes += ITEM_HEADER_BYTES + 12 + ((parts.lead[i]! + parts.bytes[i]! + 3) & ~3);
    }
    const writer = this.writer;
    let r = 0;
    if (this.placeRun !== undefined) {
      r = this.placeCompletionRun(this.placeRun, f, tags, first, count, src, parts, stride, readBytes);
    } else {
      for (; r < count; r++) {
        // A read's completions all in one batch: a flush between them could leave it half sent.
        if (writer.length + readBytes > this.batchBytes) this.flush();
        if (this.congested) break;
        f.tag = tags[first + r]!;
        for (let i = 0; i < n; i++) this.placeCompletion(f, src, parts, i, r * stride);
      }
    }
    if (r === 0) return 0;
    if (!this.receiving) this.runCopies();
    (f.locked ? this.sent.CplDLk : this.sent.CplD).add(r * n);
    this.scheduleFlush();
    return r;
  }

  /**
   * sendCompletionRun's loop with the addon's completionRun: as many whole reads at a time as the
   * batch holds (the same batches the loop one read at a time makes), their headers made from
   * words the JavaScript encoder writes for the run and their payloads copied at once. Returns
   * how many reads went.
   */
  private placeCompletionRun(
    place: CompletionRunFn,
    f: CompletionFields,
    tags: Uint16Array,
    first: number,
    count: number,
    src: Uint8Array,
    parts: CompletionParts,
    stride: number,
    readBytes: number,
  ): number {
    // What every completion of the run shares: a header encoded for tag 0, without its Length,
    // Byte Count, tag and Lower Address bits (the addon puts in each completion's own).
    const t = this.headerTemplate;
    f.tag = 0;
    encodeCompletionHeaderInto(t, 0, f, 4, 0, 0, 4);
    const dw0 = (((t[0]! << 24) | (t[1]! << 16) | (t[2]! << 8) | t[3]!) & ~DW0.LENGTH_MASK) >>> 0;
    const dw1 = (((t[4]! << 24) | (t[5]! << 16) | (t[6]! << 8) | t[7]!) & ~CPL_FIELDS.BYTE_COUNT_MASK) >>> 0;
    const dw2 = (((t[8]! << 24) | (t[9]! << 16)) >>> 0);
    const writer = this.writer;
    const batchBytes = this.batchBytes;
    // The addon copies at once: the copies deferred before (completion data received into memory
    // this run reads, say) go first, so that they keep their order.
    this.runCopies();
    let r = 0;
    while (r < count) {
      if (writer.length + readBytes > batchBytes) this.flush();
      if (this.congested) break;
      // Read j of those placed now starts at base + j × readBytes: it goes while it ends within
      // batchBytes (the first always, as one read at a time does).
      const length = writer.length;
      const base = length === 0 ? BATCH_HEADER_BYTES : length;
      const k = Math.min(count - r, Math.max(1, 1 + Math.floor((batchBytes - base - readBytes) / readBytes)));
      const at = writer.reserveRaw(k * readBytes);
      const n = place(writer.buffer, at, r === 0 ? src : src.subarray(r * stride), parts.byteCount, parts.lowerAddress, parts.srcOffset, parts.lead, parts.bytes, parts.count, tags, first + r, k, stride, dw0, dw1, dw2);
      writer.commitRaw(n, k * parts.count);
      r += k;
    }
    if (r > 0) f.tag = tags[first + r - 1]!;
    return r;
  }

  /**
   * Places part i of `parts` as a CplD item of the batch being built (there is room): its header
   * written, its payload, src[srcOffset + shift…], joining the deferred copies.
   */
  private placeCompletion(f: CompletionFields, src: Uint8Array, parts: CompletionParts, i: number, shift: number): void {
    const writer = this.writer;
    const lead = parts.lead[i]!;
    const bytes = parts.bytes[i]!;
    const offset = writer.reserveItem(12 + ((lead + bytes + 3) & ~3));
    const out = writer.buffer;
    const len = encodeCompletionHeaderInto(out, offset, f, parts.byteCount[i]!, parts.lowerAddress[i]!, lead, bytes);
    this.copies.add(out, offset + 12 + lead, src, parts.srcOffset[i]! + shift, bytes);
    writer.commitItem(ITEM.TLP, len);
  }

  /** The deferred copies, now; one that cannot be done is counted and logged (the others are done). */
  private runCopies(): void {
    this.copiesIntoMemory = false;
    const failed = this.copies.run();
    if (failed === 0) return;
    this.counters.add('errors.copy', failed);
    this.log.error({ failed }, 'deferred completion copies out of range (a read buffer transferred or shrunk while the read was outstanding?)');
  }

  copyLater(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void {
    this.copies.add(dst, dstOffset, src, srcOffset, length);
    this.copiesIntoMemory = true;
    if (!this.receiving) this.runCopies();
  }

  releaseCredits(cls: TlpClass, dataBytes: number): void {
    const rx = this.rx;
    if (rx === undefined || this.finished) return; // nothing to return credits to
    // Completions are infinite at both ends: nothing to tell the partner, no timer to set.
    if (!rx.release(cls, dataBytes)) return;
    // While a batch is received (most releases are then), what its TLPs free is looked at once,
    // when it is done: an urgent update still leaves at the end of the message.
    if (this.receiving) this.freedWhileReceiving = true;
    else this.creditsFreed(rx);
  }

  /** The end of a received batch: creditsFreed for what was freed while it was received. */
  private receivedFreed(): void {
    if (!this.freedWhileReceiving) return;
    this.freedWhileReceiving = false;
    if (this.rx !== undefined && !this.finished) this.creditsFreed(this.rx);
  }

  private creditsFreed(rx: RxCredits): void {
    if (rx.urgent()) {
      // A partner waiting for these credits should not wait for the rest of our turn (which may
      // hold many more socket reads): return them once the message being processed is done.
      if (this.receiving) this.flushAfterReceive = true;
      else this.scheduleFlush();
    } else if (this.fcTimer === undefined) {
      this.fcTimer = this.clock.setTimer(this.fcUpdateDelayNs, () => {
        this.fcTimer = undefined;
        this.flush();
      });
    }
  }

  /** Sends the batch being built now (normally it leaves at the end of the turn). */
  flush(): void {
    if (this.finished) return;
    this.runCopies();
    if (this.rx !== undefined && this._state === 'up') {
      const update = this.rx.takeUpdate();
      if (update !== undefined) {
        this.appendControl(ITEM.UPDATE_FC, update);
        this.counters.add('fc.updates.sent');
      }
      if (this.fcTimer !== undefined) {
        this.fcTimer.cancel();
        this.fcTimer = undefined;
      }
    }
    const msg = this.writer.finish();
    if (msg === undefined) return;
    this.counters.add('batches.sent');
    this.counters.add('bytes.sent', msg.length);
    const slab = this.writer.lastSlab;
    if (!this.transport.send([msg], () => this.writer.release(slab))) this.congested = true;
  }

  /** Closes the link: tells the partner why (BYE), then closes the transport. */
  close(reason = 'closed locally'): void {
    if (this.finished) return;
    if (this.started) {
      this.appendControl(ITEM.BYE, { reason });
      this.flush();
    }
    this.goDown(reason, 'ERR_LINK_DOWN', true);
  }

  // ---------------------------------------------------------------------------------------------
  // receiving

  private receive(msg: Uint8Array): void {
    if (this.finished) return;
    this.receiving = true;
    try {
      // Decoded payloads are views of the message: views of a plain Uint8Array are cheaper to
      // make than views of a Buffer (which the socket transports deliver), and TLPs carry
      // Uint8Array anyway.
      this.receiveBatch(msg.constructor === Uint8Array ? msg : new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
    } finally {
      this.receivedFreed(); // while receiving: an urgent update leaves at the end of the message
      this.receiving = false;
      this.runCopies();
    }
    this.afterReceive();
  }

  /** Urgent credit returns leave at the end of the message that freed them, not the turn. */
  private afterReceive(): void {
    if (!this.finished) {
      try {
        this.onReceiveEnd();
      } catch (e) {
        this.counters.add('errors.consumer');
        this.log.error({ err: errorMessage(e) }, 'onReceiveEnd threw');
      }
    }
    if (!this.flushAfterReceive) return;
    this.flushAfterReceive = false;
    this.flush();
  }

  /**
   * A message that the transport delivered in pieces (Transport.onMessageParts): processed as
   * receiveBatch would process the joined message, but each item where it lies; only the batch
   * header or an item that a piece boundary cuts is copied (into a buffer of its own, so views of
   * it stay valid).
   */
  private receiveParts(parts: readonly Uint8Array[]): void {
    if (this.finished) return;
    if (parts.length === 1) {
      this.receive(parts[0]!);
      return;
    }
    const c = this.cursor;
    c.reset(parts);
    this.receiving = true;
    try {
      this.receivePieces(c);
    } finally {
      this.receivedFreed(); // while receiving: an urgent update leaves at the end of the message
      this.receiving = false;
      this.runCopies();
      c.reset(NO_PARTS);
    }
    this.afterReceive();
  }

  private receivePieces(c: PartsCursor): void {
    const total = c.remaining;
    this.counters.add('batches.received');
    this.counters.add('bytes.received', total);
    if (total < BATCH_HEADER_BYTES || !hasBatchMagic(c.peek(BATCH_HEADER_BYTES))) {
      const head = c.peek(Math.min(16, total));
      if (this.partnerHello === undefined) this.refuseStranger(head);
      else this.protocolError(`message without the batch header (starts ${hexPrefix(head, 8)})`);
      return;
    }
    c.take(BATCH_HEADER_BYTES);
    if (this.partnerHello !== undefined && c.buf[c.off + 2] !== (this.version & 0xff)) {
      this.protocolError(`batch header says version ${c.buf[c.off + 2]!}, the handshake agreed on ${this.version}`);
      return;
    }
    this.creditsRaised = false;
    while (c.remaining > 0) {
      // The items wholly inside the current piece, read where they lie (as receiveBatch does);
      // only one that a piece boundary cuts goes through the cursor below.
      const from = c.pieceOffset;
      const off = this.receiveItems(c.piece, from, c.piece.length);
      if (this.finished) return;
      if (off > from) c.advance(off - from);
      if (c.remaining === 0) break;
      const at = total - c.remaining;
      if (c.remaining < ITEM_HEADER_BYTES) {
        this.flushRun();
        this.protocolError(`truncated item header at byte ${at} of a ${total}-byte batch`);
        return;
      }
      c.take(ITEM_HEADER_BYTES);
      const type = c.buf[c.off]!;
      const len = (c.buf[c.off + 2]! << 8) | c.buf[c.off + 3]!;
      if (len > c.remaining) {
        this.flushRun();
        this.protocolError(`item at byte ${at} (type 0x${type.toString(16)}) claims ${len} bytes, only ${c.remaining} left in the batch`);
        return;
      }
      c.take(len);
      if (this.receiveItem(type, c.buf, c.off, len)) this.creditsRaised = true;
      if (this.finished) return;
    }
    this.flushRun();
    if (this.creditsRaised) this.onCreditsAvailable();
  }

  private receiveBatch(msg: Uint8Array): void {
    this.counters.add('batches.received');
    this.counters.add('bytes.received', msg.length);
    if (!hasBatchMagic(msg)) {
      if (this.partnerHello === undefined) {
        this.refuseStranger(msg);
      } else {
        this.protocolError(`message without the batch header (starts ${hexPrefix(msg, 8)})`);
      }
      return;
    }
    if (this.partnerHello !== undefined && msg[2] !== (this.version & 0xff)) {
      this.protocolError(`batch header says version ${msg[2]!}, the handshake agreed on ${this.version}`);
      return;
    }
    this.creditsRaised = false;
    const end = msg.length;
    const off = this.receiveItems(msg, BATCH_HEADER_BYTES, end);
    if (this.finished) return;
    if (off < end) {
      // An item that does not fit: the batch is cut short.
      this.flushRun();
      if (off + ITEM_HEADER_BYTES > end) {
        this.protocolError(`truncated item header at byte ${off} of a ${end}-byte batch`);
      } else {
        const len = (msg[off + 2]! << 8) | msg[off + 3]!;
        this.protocolError(`item at byte ${off} (type 0x${msg[off]!.toString(16)}) claims ${len} bytes, only ${end - off - ITEM_HEADER_BYTES} left in the batch`);
      }
      return;
    }
    this.flushRun();
    if (this.creditsRaised) this.onCreditsAvailable();
  }

  /**
   * The items wholly inside buf[off, end), handled in order (those that continue a run of writes,
   * and the CplD that follow one, each in a loop of their own); returns where the first item that
   * is not wholly inside begins (end when there is none), or where the link finished. Sets
   * creditsRaised when one raised the partner's credit limits.
   */
  private receiveItems(buf: Uint8Array, off: number, end: number): number {
    for (;;) {
      const body = off + ITEM_HEADER_BYTES;
      if (body > end) return off;
      const len = (buf[off + 2]! << 8) | buf[off + 3]!;
      if (body + len > end) return off;
      const type = buf[off]!;
      off = body + len;
      if (this.receiveItem(type, buf, body, len)) this.creditsRaised = true;
      if (this.finished) return off;
      if (this.run.count > 0) off = this.extendRun(buf, off, end);
      else if (type === ITEM.TLP && buf[body] === BYTE0_CPLD) off = this.receiveCompletions(buf, off, end);
      if (this.finished) return off;
    }
  }

  /**
   * The CplD items of msg[off, end) that follow one, each handled as receiveTlp would handle it
   * (its credits taken, then deliverTlp), in one loop, those that onCompletionScan takes first;
   * returns where the first item that is not such a CplD begins (receiveItem's then). Most of a
   * DMA read's answer goes this way.
   */
  private receiveCompletions(msg: Uint8Array, off: number, end: number): number {
    const rx = this.rx;
    if (rx === undefined || this._state !== 'up' || this.run.count + this.readRun.count > 0) return off;
    // (The scan takes no credits into account: only when completions have infinite ones, as at
    // a root complex and an endpoint.)
    const scan = this.onCompletionScan !== undefined && rx.roomOf(CLASS_CPL * 2) === Infinity && rx.roomOf(CLASS_CPL * 2 + 1) === Infinity;
    for (;;) {
      if (scan) {
        off = this.scanCompletions(rx, msg, off, end);
        if (this.finished) break;
      }
      // One the scan did not take (each of them, without a scan): the usual way.
      if (!(off + ITEM_HEADER_BYTES + TLP_SIZE.HEADER_3DW <= end && msg[off] === ITEM.TLP && msg[off + ITEM_HEADER_BYTES] === BYTE0_CPLD)) break;
      const len = (msg[off + 2]! << 8) | msg[off + 3]!;
      const body = off + ITEM_HEADER_BYTES;
      if (body + len > end) break;
      off = body + len;
      const dataBytes = rawTlpDataBytes(msg, body, len);
      const overrun = rx.receiveClass(CLASS_CPL, dataBytes);
      if (overrun !== undefined) {
        this.protocolError(`partner sent beyond its ${overrun} credits`);
        break;
      }
      this.deliverTlp(msg, body, len, CLASS_CPL, dataBytes);
      if (this.finished) break;
    }
    return off;
  }

  /** onCompletionScan from `off`: what it took counted and its credits taken and freed; returns where it stopped. */
  private scanCompletions(rx: RxCredits, msg: Uint8Array, off: number, end: number): number {
    // The scan copies at once: the copies deferred before it (a completion's data taken the usual
    // way, a read answered from memory it may write) go first, so that they keep their order.
    this.runCopies();
    let to: number;
    try {
      to = this.onCompletionScan!(msg, off, end, this.maxPayloadSize);
    } catch (e) {
      // As for onTlp: the consumer's bug must not take the link down; the items go the usual way.
      this.counters.add('errors.consumer');
      this.log.error({ err: errorMessage(e) }, 'completion scan threw');
      return off;
    }
    if (!(to > off && to <= end)) return off;
    let count = 0;
    let data = 0;
    for (let p = off; p < to; ) {
      const len = (msg[p + 2]! << 8) | msg[p + 3]!;
      data += dataCreditsFor(len - TLP_SIZE.HEADER_3DW);
      count++;
      p += ITEM_HEADER_BYTES + len;
    }
    rx.receiveClassN(CLASS_CPL, count, data);
    rx.releaseClass(CLASS_CPL, count, data);
    this.received.CplD.add(count);
    return to;
  }

  /**
   * The TLP items of msg[off, end) that continue the open run of writes, added to it as
   * receiveItem would add them one by one (credits taken, nothing else to do for them), in one
   * loop; returns where the first item that does not continue it begins (receiveItem's then).
   * Most of a DMA write's batch goes this way: its TLPs cost their header words and credits.
   */
  private extendRun(msg: Uint8Array, off: number, end: number): number {
    const run = this.run;
    const rx = this.rx!;
    const mps = this.maxPayloadSize;
    // The credits are taken for all of them at the end, as many as fit in what the partner may
    // still send; one that does not fit goes on alone (receiveTlp reports the overrun).
    const roomH = rx.roomOf(CLASS_P * 2);
    const roomD = rx.roomOf(CLASS_P * 2 + 1);
    let heads = 0;
    let data = 0;
    while (off + ITEM_HEADER_BYTES <= end && msg[off] === ITEM.TLP) {
      const len = (msg[off + 2]! << 8) | msg[off + 3]!;
      const body = off + ITEM_HEADER_BYTES;
      if (body + len > end || !run.extend(msg, body, len)) break;
      const dataBytes = run.dataLengths[run.count - 1]!;
      const d = dataCreditsFor(dataBytes);
      if (dataBytes > mps || heads + 1 > roomH || data + d > roomD) {
        // Too large (malformed, reported alone) or beyond the credits: receiveTlp's to handle.
        run.dropLast();
        break;
      }
      heads++;
      data += d;
      off = body + len;
    }
    if (heads > 0) rx.receiveClassN(CLASS_P, heads, data);
    return off;
  }

  /** One item of a batch, at msg[body, body + len); true when it raised the partner's credit limits. */
  private receiveItem(type: number, msg: Uint8Array, body: number, len: number): boolean {
    // A partner may refuse us (ERROR) or leave (BYE) before it has sent its HELLO.
    if (this.partnerHello === undefined && type !== ITEM.HELLO && type !== ITEM.ERROR && type !== ITEM.BYE) {
      this.protocolError(`first item is type 0x${type.toString(16).padStart(2, '0')}, expected HELLO`);
      return false;
    }
    let creditsChanged = false;
    // A run of writes is done before anything that follows it.
    if (type !== ITEM.TLP && this.run.count + this.readRun.count > 0) this.flushRun();
    switch (type) {
      case ITEM.TLP:
        this.receiveTlp(msg, body, len);
        break;
      case ITEM.HELLO:
        this.receiveHello(msg.subarray(body, body + len));
        break;
      case ITEM.UPDATE_FC:
        if (this.receiveUpdateFc(msg.subarray(body, body + len))) creditsChanged = true;
        break;
      case ITEM.ERROR: {
        const e = this.control(msg.subarray(body, body + len), parseError);
        this.log.error({ code: e.code }, `partner reported an error: ${e.message}`);
        this.goDown(`partner: ${e.message}`, e.code === 'ERR_LINK_VERSION' ? 'ERR_LINK_VERSION' : 'ERR_LINK_PROTOCOL', true);
        break;
      }
      case ITEM.BYE: {
        const b = this.control(msg.subarray(body, body + len), parseBye);
        this.log.info(`partner closed the link: ${b.reason}`);
        this.goDown(`partner closed: ${b.reason}`, 'ERR_LINK_DOWN', true);
        break;
      }
      default:
        if (type >= ITEM.IGNORABLE_MIN) {
          this.counters.add('items.ignored');
        } else {
          this.protocolError(`unknown item type 0x${type.toString(16).padStart(2, '0')}${type === ITEM.TLP_SEQ || (type >= ITEM.ACK && type <= ITEM.RESUME) ? ' (reserved for a later version)' : ''}`);
        }
    }
    return creditsChanged;
  }

  private receiveTlp(msg: Uint8Array, body: number, len: number): void {
    if (this._state !== 'up' || this.rx === undefined) {
      this.flushRun();
      this.protocolError('TLP received before the handshake completed');
      return;
    }
    // Credits from the raw bytes, before decoding (a TLP that fails to decode took them too).
    const ci = rawTlpClassIndex(msg, body, len);
    const dataBytes = ci < 0 ? 0 : rawTlpDataBytes(msg, body, len);
    if (ci >= 0) {
      const overrun = this.rx.receiveClass(ci, dataBytes);
      if (overrun !== undefined) {
        this.flushRun();
        this.protocolError(`partner sent beyond its ${overrun} credits`);
        return;
      }
    }
    if (ci === CLASS_P) {
      // Reads before this write are answered before it is done, as one by one.
      if (this.readRun.count > 0) this.flushRun();
      // A posted TLP may write memory that completions waiting for their data copy read from.
      this.runCopies();
      if (this.onMemWriteRun !== undefined && dataBytes <= this.maxPayloadSize) {
        // The next write of a run (most are) is recognised from its header words alone.
        if (this.run.extend(msg, body, len)) return;
        const v = this.runView;
        if (parseMemWrite(msg, body, len, v)) {
          if (this.run.add(msg, body, len, v)) return;
          if (this.run.count > 0) {
            this.flushRun();
            if (this.run.add(msg, body, len, v)) return;
          }
        }
      }
    } else if (ci === CLASS_NP) {
      // A read sees the completion data that arrived before it: its answer may copy at once.
      if (this.copiesIntoMemory) this.runCopies();
      if (this.onMemReadRun !== undefined) {
        // Likewise the next read of a run of reads.
        if (this.readRun.extend(msg, body, len)) return;
        const v = this.readRunView;
        if (parseMemRead(msg, body, len, v)) {
          if (this.run.count > 0) this.flushRun();
          if (this.readRun.add(msg, body, len, v)) return;
          if (this.readRun.count > 0) {
            this.flushRun();
            if (this.readRun.add(msg, body, len, v)) return;
          }
        }
      }
    }
    if (this.run.count + this.readRun.count > 0) this.flushRun();
    this.deliverTlp(msg, body, len, ci, dataBytes);
  }

  /**
   * Hands on a run of writes (onMemWriteRun), or its TLPs one by one when the handler declines.
   * Their credits were taken as they arrived.
   */
  private flushRun(): void {
    if (this.readRun.count > 0) this.flushReadRun();
    const r = this.run;
    const n = r.count;
    if (n === 0) return;
    const handler = this.onMemWriteRun;
    let taken = false;
    if (handler !== undefined) {
      try {
        taken = handler(r);
      } catch (e) {
        // As for onTlp: the consumer's bug must not take the link down; the writes are gone.
        this.counters.add('errors.consumer');
        this.log.error({ err: errorMessage(e) }, 'write-run handler threw');
        taken = true;
      }
    }
    if (!taken) {
      const bytes = r.bytes;
      r.count = 0; // the TLPs are in the arrays still, until the next add
      for (let i = 0; i < n && !this.finished; i++) this.deliverTlp(bytes, r.bodyOffsets[i]!, r.bodyLengths[i]!, CLASS_P, r.dataLengths[i]!);
      r.clear();
      return;
    }
    let dataCredits = 0;
    for (let i = 0; i < n; i++) dataCredits += dataCreditsFor(r.dataLengths[i]!);
    (r.wide ? this.received.MWr64 : this.received.MWr).add(n);
    r.clear();
    const rx = this.rx;
    if (rx === undefined || this.finished) return;
    rx.releaseClass(CLASS_P, n, dataCredits);
    this.creditsFreed(rx);
  }

  /**
   * Hands on a run of reads (onMemReadRun); the TLPs it does not take go on one by one. Their
   * credits were taken as they arrived; those taken are the handler's to release.
   */
  private flushReadRun(): void {
    const r = this.readRun;
    const n = r.count;
    const handler = this.onMemReadRun;
    let taken = 0;
    if (handler !== undefined) {
      try {
        taken = handler(r);
      } catch (e) {
        // As for onTlp: the consumer's bug must not take the link down. What it answered is
        // unknown, and a read answered twice is worse than one unanswered: the reads are gone.
        this.counters.add('errors.consumer');
        this.log.error({ err: errorMessage(e) }, 'read-run handler threw');
        taken = n;
      }
      if (!(taken >= 0 && taken <= n)) taken = n; // not a count: as a handler that threw
      taken = Math.floor(taken);
    }
    if (taken > 0) (r.wide ? this.received.MRd64 : this.received.MRd).add(taken);
    const bytes = r.bytes;
    r.count = 0; // the TLPs are in the arrays still, until the next add
    for (let i = taken; i < n && !this.finished; i++) this.deliverTlp(bytes, r.bodyOffsets[i]!, r.bodyLengths[i]!, CLASS_NP, 0);
    r.clear();
  }

  /** A TLP whose credits were taken: the fast paths, else decoded for onTlp. */
  private deliverTlp(msg: Uint8Array, body: number, len: number, ci: number, dataBytes: number): void {
    if (ci >= 0 && dataBytes <= this.maxPayloadSize && this.receiveFast(msg, body, len, ci)) return;
    // onTlp's handlers may do anything, writing memory included.
    this.runCopies();
    if (this.transport.reusesReceiveMemory === true) {
      // Decoded payloads are views, and onTlp's handlers may keep them: bytes of their own.
      msg = msg.slice(body, body + len);
      body = 0;
    }
    let tlp: Tlp;
    try {
      if (ci < 0) {
        throw new TlpwireError('ERR_TLP_RESERVED', `byte 0 = 0x${(msg[body] ?? 0).toString(16).padStart(2, '0')} is not a TLP kind tlpwire carries`, { offset: 0 });
      }
      tlp = decodeTlp(msg, body, len);
      if (dataBytes > this.maxPayloadSize) {
        // §2.2.2: a payload larger than Max_Payload_Size makes the TLP Malformed.
        throw new TlpwireError('ERR_TLP_LENGTH', `${tlp.kind} payload of ${dataBytes} bytes exceeds Max_Payload_Size ${this.maxPayloadSize}`, { offset: 0 });
      }
    } catch (e) {
      const err = e instanceof TlpwireError ? e : new TlpwireError('ERR_TLP_MALFORMED', errorMessage(e), { cause: e });
      this.malformed(err, msg.subarray(body, body + len));
      // The TLP is dropped, so its buffer space is free again at once.
      if (ci >= 0) this.releaseCredits(CLASSES[ci]!, dataBytes);
      return;
    }
    this.received[tlp.kind].add();
    try {
      this.onTlp(tlp);
    } catch (e) {
      // The consumer's bug must not take the link (and the rest of this batch) down with it.
      this.counters.add('errors.consumer');
      this.log.error({ err: errorMessage(e), kind: tlp.kind }, 'onTlp threw');
    }
  }

  /**
   * The fast receive paths: true when a handler took the TLP. A TLP that the fast parser refuses
   * or the handler declines goes on to decodeTlp and onTlp (and is counted there instead).
   */
  private receiveFast(msg: Uint8Array, body: number, len: number, ci: number): boolean {
    let counter: Counter | undefined;
    let taken: boolean;
    try {
      if (ci === CLASS_P) {
        const handler = this.onMemWrite;
        const v = this.memWriteView;
        if (handler === undefined || !parseMemWrite(msg, body, len, v)) return false;
        counter = v.wide ? this.received.MWr64 : this.received.MWr;
        taken = handler(msg, v);
      } else if (ci === CLASS_NP) {
        const handler = this.onMemRead;
        const v = this.memReadView;
        if (handler === undefined || !parseMemRead(msg, body, len, v)) return false;
        counter = v.wide ? this.received.MRd64 : this.received.MRd;
        taken = handler(msg, v);
      } else {
        const handler = this.onCompletionData;
        const v = this.completionView;
        if (handler === undefined || !parseCompletionData(msg, body, len, v)) return false;
        counter = v.locked ? this.received.CplDLk : this.received.CplD;
        taken = handler(msg, v);
      }
    } catch (e) {
      // As for onTlp: the consumer's bug must not take the link (and the rest of the batch) down.
      counter?.add();
      this.counters.add('errors.consumer');
      this.log.error({ err: errorMessage(e) }, 'fast receive handler threw');
      return true;
    }
    if (taken) counter!.add();
    return taken;
  }

  private malformed(err: TlpwireError, bytes: Uint8Array): void {
    this.malformedCount++;
    this.counters.add('tlp.malformed');
    if ((this.malformedCount - 1) % this.malformedLogEvery === 0) {
      this.log.warn({ code: err.code, count: this.malformedCount, bytes: hexPrefix(bytes) }, `malformed TLP dropped: ${err.message}`);
    }
    try {
      this.onMalformedTlp(err, bytes);
    } catch (e) {
      this.counters.add('errors.consumer');
      this.log.error({ err: errorMessage(e) }, 'onMalformedTlp threw');
    }
  }

  private receiveHello(bytes: Uint8Array): void {
    if (this.partnerHello !== undefined) {
      this.protocolError('second HELLO');
      return;
    }
    const raw = unpackControl(bytes);
    if (!raw.ok) {
      this.protocolError(`handshake: ${raw.problem}`);
      return;
    }
    const id = helloIdentity(raw.value);
    if (id.protocol !== PROTOCOL_NAME) {
      this.protocolError(`handshake names protocol ${JSON.stringify(id.protocol)}, not ${JSON.stringify(PROTOCOL_NAME)}`);
      return;
    }
    if (id.version !== this.version) {
      const reason = `protocol version mismatch: local ${this.version}, remote ${String(id.version)}`;
      this.log.error({ local: this.version, remote: id.version }, reason);
      this.fail(reason, 'ERR_LINK_VERSION');
      return;
    }
    const hello = parseHello(raw.value);
    if (!hello.ok) {
      this.protocolError(hello.problem);
      return;
    }
    const badAdv = checkAdvertisement(hello.value.fc);
    if (badAdv !== undefined) {
      this.protocolError(`bad handshake: fc: ${badAdv}`);
      return;
    }
    this.partnerHello = hello.value;
    if (this.started) this.goUp(hello.value);
  }

  private goUp(partner: HelloBody): void {
    const scaled =
      this.hello.capabilities.features.includes(FEATURE_SCALED_FC) && partner.capabilities.features.includes(FEATURE_SCALED_FC);
    const partnerAdv = effectiveAdvertisement(partner.fc, scaled);
    this.tx = new TxCredits(partnerAdv);
    this.rx = new RxCredits(effectiveAdvertisement(this.ownAdv, scaled), this.fcUpdateFraction);
    this._partner = {
      maxPayloadSize: partner.capabilities.maxPayloadSize,
      tag10Bit: partner.capabilities.tag10Bit,
      features: partner.capabilities.features,
      role: partner.name === undefined ? partner.role : `${partner.role} ${partner.name}`,
    };
    if (this.handshakeTimer !== undefined) {
      this.handshakeTimer.cancel();
      this.handshakeTimer = undefined;
    }
    this.log.info(
      { partner: this._partner.role, mps: partner.capabilities.maxPayloadSize, scaledFc: scaled, credits: partnerAdv.credits },
      'link up',
    );
    this.setState('up');
    const waiters = this.upWaiters;
    this.upWaiters = [];
    for (const w of waiters) w.resolve();
  }

  private receiveUpdateFc(bytes: Uint8Array): boolean {
    const tx = this.tx;
    if (tx === undefined) {
      this.protocolError('UpdateFC before the handshake completed');
      return false;
    }
    const raw = unpackControl(bytes);
    const upd = raw.ok ? parseUpdateFc(raw.value) : raw;
    if (!upd.ok) {
      this.protocolError(upd.problem);
      return false;
    }
    this.counters.add('fc.updates.received');
    let raised = false;
    for (const t of CREDIT_TYPES) {
      const field = upd.value[t];
      if (field === undefined) continue;
      const r = tx.update(t, field);
      if (r === 'raised') raised = true;
      else if (r !== 'same') {
        this.protocolError(`flow control protocol error: ${r}`);
        return false;
      }
    }
    return raised;
  }

  private control<T>(bytes: Uint8Array, parse: (v: unknown) => T): T {
    const raw = unpackControl(bytes);
    return parse(raw.ok ? raw.value : undefined);
  }

  // ---------------------------------------------------------------------------------------------
  // sending control, errors, state

  private appendControl(type: number, body: object): void {
    const bytes = packControl(body);
    if (bytes.length > MAX_CONTROL_BODY_BYTES) {
      throw new TlpwireError('ERR_INTERNAL', `control item of ${bytes.length} bytes exceeds ${MAX_CONTROL_BODY_BYTES}`);
    }
    if (this.writer.length + ITEM_HEADER_BYTES + bytes.length > this.batchBytes) this.flush();
    this.writer.appendItem(type, bytes);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.clock.defer(this.flushFromDefer);
  }

  private drained(): void {
    if (!this.congested) return;
    this.congested = false;
    if (this._state === 'up') this.onCreditsAvailable();
  }

  /** Bytes that are not tlpwire at all: log who it was and hang up without answering. */
  private refuseStranger(msg: Uint8Array): void {
    this.counters.add('errors.protocol');
    const reason = `not a tlpwire peer (first bytes: ${hexPrefix(msg, 8) || 'none'})`;
    this.log.warn({ remote: this.remote }, `refused: ${reason}`);
    this.goDown(reason, 'ERR_LINK_PROTOCOL', true);
  }

  /** A tlpwire partner broke the protocol: count, log, tell it why, close. */
  private protocolError(message: string): void {
    this.counters.add('errors.protocol');
    this.log.error(`protocol error: ${message}`);
    this.fail(`protocol error: ${message}`, 'ERR_LINK_PROTOCOL');
  }

  /** Sends an ERROR item (best effort) and goes down. */
  private fail(reason: string, code: ErrorCode): void {
    if (this.finished) return;
    this.runCopies(); // into the batch being dropped: harmless, and nothing is left pending
    this.writer.discard();
    this.appendControl(ITEM.ERROR, { code, message: reason });
    this.flush();
    this.goDown(reason, code, true);
  }

  private setState(state: LinkState, reason?: string): void {
    this._state = state;
    try {
      if (reason === undefined) this.onStateChange(state);
      else this.onStateChange(state, reason);
    } catch (e) {
      this.counters.add('errors.consumer');
      this.log.error({ err: errorMessage(e) }, 'onStateChange threw');
    }
  }

  private goDown(reason: string, code: ErrorCode, closeTransport: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.downReason = reason;
    this.downError = new TlpwireError(code, reason);
    this.handshakeTimer?.cancel();
    this.handshakeTimer = undefined;
    this.fcTimer?.cancel();
    this.fcTimer = undefined;
    this.runCopies();
    this.writer.discard();
    if (closeTransport) this.transport.close(reason);
    if (this.started) {
      this.log.info({ reason }, 'link down');
      this.setState('down', reason);
    }
    const up = this.upWaiters;
    this.upWaiters = [];
    for (const w of up) w.reject(this.downError);
    const down = this.downWaiters;
    this.downWaiters = [];
    for (const w of down) w(reason);
  }
}
