/**
 * The requester: turns reads and writes into TLPs, tracks outstanding non-posted requests by
 * tag, reassembles and checks their completions, and times them out (§2.2.9, §2.3.1.1, §2.8).
 *
 * Reads are split into naturally aligned Max_Read_Request_Size pieces (never across 4 KiB), each
 * with its own tag, all in flight at once as far as tags allow: a large DMA read costs about
 * one round trip, not one per piece. Operations waiting for tags are served round-robin, a
 * read up to the end of its 4 KiB block per turn (consecutive requests, which the completer can
 * answer as one run) and anything else one request per turn, so a config read is not stuck
 * behind a megabyte of DMA.
 *
 * Completions of one tag arrive in address order (the ordering table forbids parts of one
 * transaction to pass each other), so each part is checked against what must come next: its
 * Byte Count equals the bytes still owed, its Lower Address the low 7 bits of the next byte's
 * address, every part but the last ends on an RCB multiple, no payload exceeds MPS. A
 * completion that matches no outstanding tag is an Unexpected Completion; one that matches but
 * breaks these rules is handled as Malformed (§2.3.2). Both are counted, logged and reported to
 * `onCompletionError` (for AER).
 */
import {
  Counters,
  FixedQueue,
  TlpwireError,
  isTlpwireError,
  silentLogger,
  SCAN_TABLE_STRIDE,
  SCAN_TABLE_TAGS,
  type Clock,
  type ErrorCode,
  type Logger,
  type ScanCompletionsFn,
  type TimerHandle,
} from '../core/index.js';
import type { LinkCapabilities } from '../link/index.js';
import { CPL_RULES, CPL_TIMEOUT_RANGES_NS, PCIE_LIMITS } from '../spec/index.js';
import {
  checkMemReadFields,
  cfgReadTlp,
  cfgWriteTlp,
  ioReadTlp,
  ioWriteTlp,
  memReadTlp,
  memWriteTlp,
  messageTlp,
  type CompletionView,
  type CplTlp,
  type HeaderOptions,
  type MemReadFields,
  type MemReadOptions,
  type MemWriteOptions,
  type Tlp,
} from '../tlp/index.js';
import type { EnqueueOptions, MemWriteJob } from './ordering-queues.js';
import { isValidSize, lowBits, lowerAddressOf, pieceEnd } from './split.js';
import { TagPool } from './tag-pool.js';

/** Where requests go: the ordering queues. */
export interface RequestOutput {
  enqueue(tlp: Tlp, options?: EnqueueOptions): void;
  /** Optional fast path for whole-DW writes (OrderingQueues.enqueueMemWrite); false: use enqueue. */
  enqueueMemWrite?(job: MemWriteJob): boolean;
  /** Optional fast path for a read request sent at once (OrderingQueues.sendMemRead); false: use enqueue. */
  sendMemRead?(f: MemReadFields, tag: number, address: number, byteLength: number): boolean;
}

/**
 * Completion timeout (Device Control 2, §7.5.3.16): `range` is the 4-bit Completion Timeout
 * Value; the timeout used is `point` of the way from the range's minimum (0, the default) to
 * its maximum (1). `disabled` is the Completion Timeout Disable bit.
 */
export interface CplTimeoutConfig {
  range: number;
  point?: number;
  disabled?: boolean;
}

/** The timeout in ns, or undefined when disabled. */
export function cplTimeoutNs(cfg: CplTimeoutConfig): number | undefined {
  if (cfg.disabled === true) return undefined;
  const r = CPL_TIMEOUT_RANGES_NS[cfg.range];
  if (r === undefined) {
    throw new TlpwireError('ERR_USAGE', `completion timeout range ${cfg.range} is not a Device Control 2 encoding`);
  }
  const point = cfg.point ?? 0;
  if (!(point >= 0 && point <= 1)) throw new TlpwireError('ERR_USAGE', `completion timeout point ${point} is outside 0..1`);
  return Math.round(r[0] + (r[1] - r[0]) * point);
}

export interface RequesterConfig {
  requesterId: number;
  /** Max_Payload_Size, bytes: write TLPs are at most this, and so are completions we accept. */
  maxPayloadSize: number;
  /** Max_Read_Request_Size, bytes. */
  maxReadRequestSize: number;
  /** Read Completion Boundary the completer splits on (64 or 128). */
  rcb: number;
  cplTimeout: CplTimeoutConfig;
  /** This side may use 10-bit tags (used when the link partner supports them too). */
  tag10Bit: boolean;
  /** Cap on outstanding non-posted requests (default: what the tag width allows). */
  maxOutstandingTags?: number;
}

/** DW0 attributes a caller may set on a request. */
export interface RequestAttributes {
  tc?: number;
  ro?: boolean;
  ido?: boolean;
  ns?: boolean;
  th?: boolean;
  ph?: number;
}

export interface WriteOptions extends RequestAttributes {
  /**
   * Do not copy `data`: the caller leaves it unchanged until the write's promise settles (a DMA
   * engine's buffer), and TLPs that must wait for credits are sent from it then. Without it the
   * data is copied on the call, as a CPU store captures its value.
   */
  zeroCopy?: boolean;
}

export interface ReadOptions extends RequestAttributes {
  /** MRdLk instead of MRd. */
  locked?: boolean;
}

export interface ConfigRequestOptions {
  /** Type 0 (the device on this link, the default) or Type 1 (for a bridge to forward). */
  configType?: 0 | 1;
}

export interface MessageRequest {
  messageCode: number;
  /** MSG_ROUTING value. */
  routing: number;
  headerDw2?: number;
  headerDw3?: number;
  /** Whole DWs of payload (MsgD). */
  data?: Uint8Array;
  tc?: number;
}

export type CompletionErrorKind = 'unexpected' | 'malformed' | 'poisoned' | 'timeout';

/** What the requester reports for AER: an error it detected on a completion or a timeout. */
export interface CompletionErrorEvent {
  kind: CompletionErrorKind;
  reason: string;
  tag: number;
  /** The completion, except for timeouts. */
  tlp?: CplTlp;
}

export interface RequesterOptions {
  clock: Clock;
  config: RequesterConfig;
  logger?: Logger;
  counters?: Counters;
  onCompletionError?: (event: CompletionErrorEvent) => void;
  /**
   * How handleCompletionData moves a completion's data into the read's buffer: the link's
   * copyLater (LinkPort), which copies the completions of a received batch together; without it,
   * at once.
   */
  copyLater?: (dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number) => void;
  /**
   * handleCompletionData leaves the requests that the tags it frees allow to issueDeferred(),
   * which the owner calls once the received batch is done (the link's onReceiveEnd): one issue
   * loop per batch instead of one per completed request.
   */
  deferIssue?: boolean;
  /**
   * The native completion scan (src/core bulk-copy addon) for scanCompletions: with it the
   * requester keeps a table of its outstanding memory reads that the scan checks completions
   * against and copies them by. Without it scanCompletions is not offered (scansCompletions false).
   */
  scanCompletions?: ScanCompletionsFn;
}

export interface RequesterStats {
  tagsInUse: number;
  tagCapacity: number;
  tag10Bit: boolean;
  /** Operations waiting for a tag. */
  waitingForTags: number;
}

const ALL_ONES_32 = 0xffffffff;
/** A running timer's deadline before stampTimers sets it (≥ 0: the timer counts as running). */
const UNSTAMPED = Number.MAX_SAFE_INTEGER;

type SlotKind = 'mem' | 'cfgRd' | 'cfgWr' | 'ioRd' | 'ioWr';
const S_FREE = 0;
const S_ACTIVE = 1;
/** Matched a malformed completion: the request failed, the tag waits for its timeout before reuse. */
const S_QUARANTINED = 2;
/** Timed out: free, remembered so that a late completion is reported as such. */
const S_TIMED_OUT = 3;

interface ReadOp {
  kind: 'read';
  dest: Uint8Array;
  address: number;
  /** Bytes issued so far (offset into dest of the next piece). */
  issued: number;
  zeroLengthIssued: boolean;
  /** Builder options for its MRds, made once per read and updated per request. */
  tlpOptions: MemReadOptions;
  /** The same as fields for the MRd fast path, when the read has nothing that path does not carry. */
  fast: MemReadFields | undefined;
  outstanding: number;
  settled: boolean;
  /** Where dest is in the scan's list of read buffers (-1: not there). */
  destId: number;
  resolve: (data: Uint8Array) => void;
  reject: (error: TlpwireError) => void;
}

/** A request that is one TLP with one DW of result (config, I/O). */
interface SingleOp {
  kind: 'single';
  slotKind: Exclude<SlotKind, 'mem'>;
  build: (requesterId: number, tag: number) => Tlp;
  issued: boolean;
  outstanding: number;
  settled: boolean;
  resolve: (value: number) => void;
  reject: (error: TlpwireError) => void;
}

type Op = ReadOp | SingleOp;

interface Slot {
  tag: number;
  state: number;
  kind: SlotKind;
  op: Op | undefined;
  tc: number;
  /** Memory reads: offset in op.dest of the next byte, its address, and bytes still owed. */
  offset: number;
  nextAddress: number;
  remaining: number;
  zeroLength: boolean;
  /** When the completion timeout expires (clock ns); -1 while no timer runs for this tag. */
  deadline: number;
  /** Counts the timers started for this tag, so that a queued timeout of an earlier use is recognised as stale. */
  timerGen: number;
  /** Starts the completion timer when the request has been handed to the link. */
  enqueueOptions: EnqueueOptions;
}

export class Requester {
  private readonly copyLater: RequesterOptions['copyLater'];
  private readonly clock: Clock;
  private readonly log: Logger;
  readonly counters: Counters;
  private readonly config: RequesterConfig;
  private readonly timeoutNs: number | undefined;
  readonly tags: TagPool;
  private readonly slots: (Slot | undefined)[] = [];
  private readonly waiting = new FixedQueue<Op>(16);
  private requesterId: number;
  private mps: number;
  private issuing = false;
  private readonly deferIssue: boolean;
  /** handleCompletionData freed a tag and left issuing to issueDeferred. */
  private issueDue = false;
  /**
   * The native completion scan, when there is one, and what it works from: per tag, whether a
   * completion may be taken there and what the read still expects (armed by arm(), kept equal to
   * the slot while it is active, cleared when it is not: finishSlot, a failed read), and the read
   * buffers it copies into, by the destId of their reads.
   */
  private readonly scan: ScanCompletionsFn | undefined;
  private readonly scanTable: Int32Array | undefined;
  private readonly scanDests: (Uint8Array | undefined)[] = [];
  private readonly freeDestIds: number[] = [];
  private readonly scanOut: Int32Array | undefined;
  private scanTaken = 0;
  /**
   * Running completion timers, oldest first: every request gets the same timeout, so deadlines
   * are in start order and one clock timer, set for the oldest, serves them all (a timer per
   * request costs more than the rest of a read's bookkeeping). Entries of tags that completed
   * are skipped when they reach the head.
   */
  private readonly timerSlots = new FixedQueue<Slot>(64);
  private readonly timerGens = new FixedQueue<number>(64);
  /** Timers started during the current issue loop (stampTimers starts them when it ends). */
  private readonly unstampedSlots = new FixedQueue<Slot>(64);
  private readonly unstampedGens = new FixedQueue<number>(64);
  private timerHandle: TimerHandle | undefined;
  /** When timerHandle fires (Infinity when none is set). */
  private timerAt = Infinity;
  private readonly timerFired = (): void => {
    this.timerHandle = undefined;
    this.timerAt = Infinity;
    this.expireTimers();
  };
  onCompletionError: (event: CompletionErrorEvent) => void;

  constructor(
    private readonly output: RequestOutput,
    options: RequesterOptions,
  ) {
    const c = options.config;
    if (!isValidSize(c.maxPayloadSize) || !isValidSize(c.maxReadRequestSize) || !(c.rcb === 64 || c.rcb === 128)) {
      throw new TlpwireError(
        'ERR_USAGE',
        `bad sizes: MPS ${c.maxPayloadSize}, MRRS ${c.maxReadRequestSize}, RCB ${c.rcb} (MPS/MRRS 128..4096, RCB 64/128)`,
      );
    }
    this.clock = options.clock;
    this.log = options.logger ?? silentLogger;
    this.copyLater = options.copyLater;
    this.deferIssue = options.deferIssue === true;
    this.scan = options.scanCompletions;
    if (this.scan !== undefined) {
      this.scanTable = new Int32Array(SCAN_TABLE_TAGS * SCAN_TABLE_STRIDE);
      // Room for every tag's completions twice over: a scan stops when it is full.
      this.scanOut = new Int32Array(1 + 2 * 2 * SCAN_TABLE_TAGS);
    }
    this.counters = options.counters ?? new Counters();
    this.config = c;
    this.timeoutNs = cplTimeoutNs(c.cplTimeout);
    this.tags = new TagPool(c.maxOutstandingTags === undefined ? {} : { maxOutstanding: c.maxOutstandingTags });
    this.requesterId = c.requesterId;
    this.mps = c.maxPayloadSize;
    this.onCompletionError = options.onCompletionError ?? (() => {});
  }

  /** The link partner's capabilities (link up): 10-bit tags when both sides have them, the smaller MPS. */
  setLinkPartner(partner: LinkCapabilities | undefined): void {
    this.tags.set10Bit(this.config.tag10Bit && partner?.tag10Bit === true);
    this.mps = Math.min(this.config.maxPayloadSize, partner?.maxPayloadSize ?? this.config.maxPayloadSize);
    this.issueWaiting();
  }

  /** A new Requester ID (an endpoint captures its bus/device number from a Type 0 config write). */
  setRequesterId(id: number): void {
    this.requesterId = id;
  }

  get id(): number {
    return this.requesterId;
  }

  /** Max_Payload_Size in effect (the configured one, capped by the link partner's). */
  get maxPayloadSize(): number {
    return this.mps;
  }

  stats(): RequesterStats {
    return {
      tagsInUse: this.tags.inUse,
      tagCapacity: this.tags.capacity,
      tag10Bit: this.tags.tenBit,
      waitingForTags: this.waiting.length,
    };
  }

  // ---------------------------------------------------------------- memory

  /** Reads `length` bytes at `address`. Rejects with ERR_CPL_UR, ERR_CPL_CA, ERR_CPL_TIMEOUT, ERR_CPL_MALFORMED, ERR_CPL_POISONED. */
  memRead(address: number, length: number, options: ReadOptions = {}): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0) {
      return Promise.reject(new TlpwireError('ERR_REQUEST', `read length must be a non-negative integer, got ${length}`));
    }
    return this.memReadInto(address, new Uint8Array(length), options);
  }

  /** Reads `dest.length` bytes at `address` into `dest` (no other allocation per byte); resolves to `dest`. */
  memReadInto(address: number, dest: Uint8Array, options: ReadOptions = {}): Promise<Uint8Array> {
    const bad = checkRange(address, dest.length);
    if (bad !== undefined) return Promise.reject(bad);
    this.counters.add('req.memRead');
    return new Promise<Uint8Array>((resolve, reject) => {
      const op: ReadOp = {
        kind: 'read',
        dest,
        address,
        issued: 0,
        zeroLengthIssued: false,
        tlpOptions: readTlpOptions(options),
        fast: fastReadFields(options),
        outstanding: 0,
        settled: false,
        destId: -1,
        resolve,
        reject,
      };
      this.start(op);
    });
  }

  /**
   * Writes `data` at `address` as MPS-sized posted writes. Resolves when every TLP has been
   * handed to the link (posted writes have no completion), so a caller that awaits each write
   * is held back by link credits: memory stays bounded however much it writes. The data is
   * copied on the call, as a CPU store captures its value (unless options.zeroCopy).
   */
  memWrite(address: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    const bad = checkRange(address, data.length);
    if (bad !== undefined) return Promise.reject(bad);
    this.counters.add('req.memWrite');
    if (data.length === 0) return Promise.resolve();
    const enqueueMemWrite = this.output.enqueueMemWrite;
    if (enqueueMemWrite !== undefined && lowBits(address, 4) === 0 && lowBits(data.length, 4) === 0) {
      // Whole DWs (every DMA buffer in practice): the queues send the TLPs straight from `data`,
      // or copy what must wait, without a TLP object per piece (see OrderingQueues.enqueueMemWrite).
      return new Promise<void>((resolve, reject) => {
        const job: MemWriteJob = {
          fields: {
            requesterId: this.requesterId,
            tc: options.tc ?? 0,
            ro: options.ro ?? false,
            ns: options.ns ?? false,
            ido: options.ido ?? false,
            th: options.th ?? false,
          },
          address,
          data,
          length: data.length,
          mps: this.mps,
          onSent: () => resolve(),
          onDropped: reject,
          borrowed: options.zeroCopy === true,
        };
        try {
          if (!enqueueMemWrite.call(this.output, job)) this.writeTlps(address, data, options, resolve, reject);
        } catch (e) {
          reject(asTlpwireError(e));
        }
      });
    }
    return new Promise<void>((resolve, reject) => this.writeTlps(address, data, options, resolve, reject));
  }

  /** memWrite as MWr TLP objects through enqueue(): any alignment, and any output. */
  private writeTlps(
    address: number,
    data: Uint8Array,
    options: RequestAttributes,
    resolve: () => void,
    reject: (e: TlpwireError) => void,
  ): void {
    const copy = data.slice();
    const end = address + copy.length;
    // One builder options object and two enqueue options per call, shared by its TLPs (the
    // builder and the queues only read them): nothing but the TLP is allocated per piece.
    const middle: EnqueueOptions = { onDropped: reject, validated: true };
    const last: EnqueueOptions = { onSent: resolve, onDropped: reject, validated: true };
    const o = writeTlpOptions(options, this.requesterId, copy);
    const mps = this.mps;
    try {
      for (let a = address; a < end; ) {
        const e = pieceEnd(a, end, mps);
        o.address = a;
        o.data = e - a === copy.length ? copy : copy.subarray(a - address, e - address);
        this.output.enqueue(memWriteTlp(o), e === end ? last : middle);
        a = e;
      }
    } catch (e) {
      reject(asTlpwireError(e));
    }
  }

  /**
   * A CPU load: 1, 2 or 4 bytes little-endian. When the read fails (UR, CA, timeout, a bad
   * completion, link down) it returns all ones, as a CPU does; bad arguments still throw.
   */
  async cpuRead(address: number, size: 1 | 2 | 4): Promise<number> {
    try {
      const b = await this.memRead(address, size);
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + b[i]!;
      return v;
    } catch (e) {
      if (isTlpwireError(e) && (e.code.startsWith('ERR_CPL_') || e.code === 'ERR_LINK_DOWN')) {
        this.log.debug({ address, code: e.code }, 'CPU read failed: all ones');
        return size === 4 ? ALL_ONES_32 : size === 2 ? 0xffff : 0xff;
      }
      throw e;
    }
  }

  cpuRead32(address: number): Promise<number> {
    return this.cpuRead(address, 4);
  }

  /** A CPU store: 1, 2 or 4 bytes little-endian (a posted write). */
  cpuWrite(address: number, value: number, size: 1 | 2 | 4): Promise<void> {
    const b = new Uint8Array(size);
    let v = value >>> 0;
    for (let i = 0; i < size; i++) {
      b[i] = v & 0xff;
      v >>>= 8;
    }
    return this.memWrite(address, b);
  }

  // ---------------------------------------------------------------- config and I/O

  /** Reads config DW `register` (0..1023, byte offset / 4) of function `bdf` (bus << 8 | dev << 3 | fn). */
  cfgRead(bdf: number, register: number, options: ConfigRequestOptions = {}): Promise<number> {
    this.counters.add('req.cfgRead');
    return this.single('cfgRd', (requesterId, tag) =>
      cfgReadTlp({ ...bdfFields(bdf), requesterId, tag, register, configType: options.configType ?? 0 }),
    );
  }

  /** Writes config DW `register`; `value` is the DW (little-endian in config space), `byteEnables` which bytes. */
  async cfgWrite(
    bdf: number,
    register: number,
    value: number,
    byteEnables = 0xf,
    options: ConfigRequestOptions = {},
  ): Promise<void> {
    this.counters.add('req.cfgWrite');
    const data = le32(value);
    await this.single('cfgWr', (requesterId, tag) =>
      cfgWriteTlp({
        ...bdfFields(bdf),
        requesterId,
        tag,
        register,
        firstBe: byteEnables,
        data,
        configType: options.configType ?? 0,
      }),
    );
  }

  /** Reads 1..4 bytes of I/O space within one DW; resolves to the value, little-endian. */
  async ioRead(address: number, size: 1 | 2 | 4): Promise<number> {
    this.counters.add('req.ioRead');
    const dw = await this.single('ioRd', (requesterId, tag) => ioReadTlp({ requesterId, tag, address, byteLength: size }));
    const shift = (address % 4) * 8;
    const v = shift === 0 ? dw : Math.floor(dw / 2 ** shift);
    return size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff);
  }

  async ioWrite(address: number, data: Uint8Array): Promise<void> {
    this.counters.add('req.ioWrite');
    const copy = data.slice();
    await this.single('ioWr', (requesterId, tag) =>
      ioWriteTlp({ requesterId, tag, address, byteLength: copy.length, data: copy }),
    );
  }

  /** Sends a message (INTx, PME, ERR_*, vendor); resolves when handed to the link. */
  sendMessage(msg: MessageRequest): Promise<void> {
    this.counters.add('req.message');
    return new Promise<void>((resolve, reject) => {
      try {
        const tlp = messageTlp({
          requesterId: this.requesterId,
          messageCode: msg.messageCode,
          routing: msg.routing,
          ...(msg.headerDw2 === undefined ? {} : { headerDw2: msg.headerDw2 }),
          ...(msg.headerDw3 === undefined ? {} : { headerDw3: msg.headerDw3 }),
          ...(msg.data === undefined ? {} : { data: msg.data.slice() }),
          ...(msg.tc === undefined ? {} : { tc: msg.tc }),
        });
        this.output.enqueue(tlp, { onSent: () => resolve(), onDropped: reject, validated: true });
      } catch (e) {
        reject(asTlpwireError(e));
      }
    });
  }

  // ---------------------------------------------------------------- completions

  /** Takes a received completion (the transaction layer routes them here). Never throws. */
  handleCompletion(cpl: CplTlp): void {
    const tag = cpl.tag;
    if (cpl.requesterId !== this.requesterId) {
      this.unexpected(cpl, `completion for requester ${hex4(cpl.requesterId)}, we are ${hex4(this.requesterId)}`);
      return;
    }
    const slot = this.slots[tag];
    if (slot === undefined || slot.state !== S_ACTIVE) {
      if (slot?.state === S_QUARANTINED) {
        // The request already failed as malformed; later parts of it are expected noise.
        this.counters.add('cpl.dropped');
        return;
      }
      this.unexpected(cpl, slot?.state === S_TIMED_OUT ? 'completion after its request timed out' : 'no request outstanding with this tag');
      return;
    }
    const op = slot.op!;
    if (cpl.status !== 'SC') {
      const code: ErrorCode = cpl.status === 'UR' ? 'ERR_CPL_UR' : cpl.status === 'CA' ? 'ERR_CPL_CA' : 'ERR_CPL_CRS';
      this.counters.add(`cpl.status.${cpl.status}`);
      // A completion with an error status ends the request, even one split in parts (§2.3.1.1).
      this.finishSlot(slot, S_FREE);
      this.failOp(op, new TlpwireError(code, `${describe(slot)} completed with ${cpl.status}`));
      this.issueWaiting();
      return;
    }
    if (cpl.tc !== slot.tc) {
      this.malformed(slot, cpl, `TC ${cpl.tc} differs from the request's TC ${slot.tc}`);
      return;
    }
    if (slot.kind === 'mem') {
      this.memCompletion(slot, op as ReadOp, cpl);
      if (this.scanTable !== undefined && slot.state === S_ACTIVE) this.arm(slot);
    } else {
      this.singleCompletion(slot, op as SingleOp, cpl);
    }
  }

  /**
   * handleCompletion for a CplD that the link's fast path parsed, without a TLP object: takes it
   * (copying its data into the read's buffer) when it is the next expected, well-formed part of an
   * outstanding memory read, and returns false, having done nothing, for anything else (an error
   * status, an unexpected or malformed completion, poisoned data), which then comes to
   * handleCompletion decoded and is dealt with there. Never throws.
   */
  handleCompletionData(bytes: Uint8Array, v: CompletionView): boolean {
    if (v.requesterId !== this.requesterId || v.status !== 0 || v.ep) return false;
    const slot = this.slots[v.tag];
    if (slot === undefined || slot.state !== S_ACTIVE || slot.kind !== 'mem' || v.tc !== slot.tc) return false;
    if (v.byteCount !== slot.remaining || v.lowerAddress !== lowerAddressOf(slot.nextAddress) || v.dataLength > this.mps) return false;
    const lead = lowBits(slot.nextAddress, 4);
    let n = v.dataLength - lead;
    if (n >= slot.remaining) {
      if (v.lengthDw !== Math.ceil((lead + slot.remaining) / 4)) return false;
      n = slot.remaining;
    } else if (lowBits(slot.nextAddress + n, this.config.rcb) !== 0) return false;
    const op = slot.op as ReadOp;
    if (!slot.zeroLength && !op.settled) {
      const copyLater = this.copyLater;
      if (copyLater !== undefined) copyLater(op.dest, slot.offset, bytes, v.dataOffset + lead, n);
      else op.dest.set(bytes.subarray(v.dataOffset + lead, v.dataOffset + lead + n), slot.offset);
    }
    slot.offset += n;
    slot.nextAddress += n;
    slot.remaining -= n;
    if (slot.remaining === 0) this.lastPartTaken(slot, op);
    else if (this.scanTable !== undefined) this.arm(slot);
    return true;
  }

  /**
   * A fast path (handleCompletionData, the scan) took the last part on a memory read's tag: the
   * tag is freed, the read settled if that was its last, waiting requests issued (now, or with
   * deferIssue at the received batch's end).
   */
  private lastPartTaken(slot: Slot, op: ReadOp): void {
    this.finishSlot(slot, S_FREE);
    this.maybeResolveRead(op);
    if (this.deferIssue) this.issueDue = true;
    else this.issueWaiting();
  }

  /** Whether scanCompletions may be called (the requester was given the native scan). */
  get scansCompletions(): boolean {
    return this.scan !== undefined;
  }

  /** How many completions the last scanCompletions took. */
  get lastScanCount(): number {
    return this.scanTaken;
  }

  /**
   * The CplD items of msg[off, end) from `off` on that the native scan takes, taken: each is the
   * next expected, well-formed, successful part of an outstanding memory read (what
   * handleCompletionData takes), its data copied into the read's buffer. Returns where the scan
   * stopped: at the first item it did not take, which the caller hands on the usual way.
   * `maxPayloadSize` is the link's (larger payloads are for the link to report). Throws only what
   * the scan throws for bad arguments (nothing taken then); never called without a scan.
   */
  scanCompletions(msg: Uint8Array, off: number, end: number, maxPayloadSize: number): number {
    const out = this.scanOut!;
    const to = this.scan!(msg, off, end, this.scanTable!, this.scanDests, out, this.requesterId, Math.min(maxPayloadSize, this.mps), this.config.rcb);
    const k = out[0]!;
    this.scanTaken = k;
    for (let j = 0; j < k; j++) {
      const slot = this.slots[out[1 + 2 * j]!]!;
      const n = out[2 + 2 * j]!;
      // The scan has copied the data and moved the tag's table entry on: the slot follows.
      slot.offset += n;
      slot.nextAddress += n;
      slot.remaining -= n;
      if (slot.remaining === 0) this.lastPartTaken(slot, slot.op as ReadOp);
    }
    return to;
  }

  /** Issues what handleCompletionData left for later (RequesterOptions.deferIssue). */
  issueDeferred(): void {
    if (!this.issueDue) return;
    this.issueDue = false;
    this.issueWaiting();
  }

  /** Fails everything outstanding or waiting (link down); tags are all freed. */
  abortAll(error: TlpwireError): void {
    for (const slot of this.slots) {
      if (slot === undefined || (slot.state !== S_ACTIVE && slot.state !== S_QUARANTINED)) continue;
      const op = slot.op;
      this.finishSlot(slot, S_FREE);
      if (op !== undefined) this.failOp(op, error);
    }
    for (let op = this.waiting.shift(); op !== undefined; op = this.waiting.shift()) this.failOp(op, error);
  }

  // ---------------------------------------------------------------- internals

  private single(slotKind: SingleOp['slotKind'], build: SingleOp['build']): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.start({ kind: 'single', slotKind, build, issued: false, outstanding: 0, settled: false, resolve, reject });
    });
  }

  private start(op: Op): void {
    this.waiting.push(op);
    this.issueWaiting();
  }

  private hasMore(op: Op): boolean {
    if (op.settled) return false;
    if (op.kind === 'single') return !op.issued;
    return op.dest.length === 0 ? !op.zeroLengthIssued : op.issued < op.dest.length;
  }

  /** Gives free tags to waiting operations, round-robin: a read to the end of its 4 KiB block, anything else one request. */
  private issueWaiting(): void {
    if (this.issuing) return;
    this.issuing = true;
    try {
      while (this.waiting.length > 0) {
        const op = this.waiting.peek()!;
        if (!this.hasMore(op)) {
          this.waiting.shift();
          continue;
        }
        const tag = this.tags.tryAlloc();
        if (tag < 0) return;
        this.waiting.shift();
        this.issue(op, tag);
        if (op.kind === 'read') this.issueRestOfBlock(op);
        if (this.hasMore(op)) this.waiting.push(op);
      }
    } finally {
      this.issuing = false;
      if (this.unstampedSlots.length > 0) this.stampTimers();
    }
  }

  /**
   * A read's turn goes on to the end of its 4 KiB block, as tags allow: consecutive requests, as
   * a DMA engine fetches, which the completer can answer as one run.
   */
  private issueRestOfBlock(op: ReadOp): void {
    while (this.hasMore(op) && lowBits(op.address + op.issued, PCIE_LIMITS.PAGE_4K) !== 0) {
      const tag = this.tags.tryAlloc();
      if (tag < 0) return;
      this.issue(op, tag);
    }
  }

  private issue(op: Op, tag: number): void {
    const slot = this.slotFor(tag);
    /** The request, or undefined when the MRd fast path has sent it already. */
    let tlp: Tlp | undefined;
    let tc: number;
    try {
      if (op.kind === 'read') {
        const start = op.address + op.issued;
        const end = op.address + op.dest.length;
        const e = op.dest.length === 0 ? start : pieceEnd(start, end, this.config.maxReadRequestSize);
        const fast = op.fast;
        const sendMemRead = this.output.sendMemRead;
        let sent = false;
        if (fast !== undefined && e > start && sendMemRead !== undefined) {
          fast.requesterId = this.requesterId;
          sent = sendMemRead.call(this.output, fast, tag, start, e - start);
        }
        if (sent) {
          tc = fast!.tc;
        } else {
          const o = op.tlpOptions;
          o.requesterId = this.requesterId;
          o.tag = tag;
          o.address = start;
          o.byteLength = e - start;
          tlp = memReadTlp(o);
          tc = tlp.tc;
        }
        slot.kind = 'mem';
        slot.offset = op.issued;
        slot.zeroLength = e === start;
        // A zero-length read is answered as if for its DW address (Byte Count 1).
        slot.nextAddress = slot.zeroLength ? start - lowBits(start, 4) : start;
        slot.remaining = slot.zeroLength ? CPL_RULES.ZERO_LENGTH_READ_BYTE_COUNT : e - start;
        op.issued = e - op.address;
        if (slot.zeroLength) op.zeroLengthIssued = true;
      } else {
        tlp = op.build(this.requesterId, tag);
        tc = tlp.tc;
        slot.kind = op.slotKind;
        op.issued = true;
      }
    } catch (e) {
      this.tags.free(tag);
      this.failOp(op, asTlpwireError(e));
      return;
    }
    slot.state = S_ACTIVE;
    slot.op = op;
    slot.tc = tc;
    op.outstanding++;
    if (this.scanTable !== undefined && slot.kind === 'mem') this.arm(slot);
    // The timeout runs from transmission: a request waiting for credits is not yet late.
    if (tlp === undefined) slot.enqueueOptions.onSent!();
    else this.output.enqueue(tlp, slot.enqueueOptions);
  }


  // ---------------------------------------------------------------- completion timers

  private startTimer(slot: Slot, timeoutNs: number): void {
    slot.timerGen++;
    if (this.issuing) {
      // Stamped when the issue loop ends, with one clock reading for all of them.
      slot.deadline = UNSTAMPED;
      this.unstampedSlots.push(slot);
      this.unstampedGens.push(slot.timerGen);
      return;
    }
    const now = this.clock.nowNs();
    slot.deadline = now + timeoutNs;
    this.timerSlots.push(slot);
    this.timerGens.push(slot.timerGen);
    this.armTimer(slot.deadline, now);
  }

  /**
   * Starts the timers of the requests the issue loop sent, from the time it ended. Reading the
   * clock once per loop rather than once per request (it costs about as much as the rest of an
   * MRd's issue here) makes a deadline late by up to the loop's length, microseconds; never early,
   * which is what the completion timeout ranges forbid (§7.5.3.16: no timeout before the minimum).
   */
  private stampTimers(): void {
    const timeoutNs = this.timeoutNs ?? 0; // (only requests with a timeout start timers)
    const now = this.clock.nowNs();
    const deadline = now + timeoutNs;
    let any = false;
    for (let slot = this.unstampedSlots.shift(); slot !== undefined; slot = this.unstampedSlots.shift()) {
      const gen = this.unstampedGens.shift();
      // Skipped: completed (or failed) meanwhile, or restarted (a later entry stamps it).
      if (slot.deadline !== UNSTAMPED || slot.timerGen !== gen) continue;
      slot.deadline = deadline;
      this.timerSlots.push(slot);
      this.timerGens.push(gen);
      any = true;
    }
    if (any) this.armTimer(deadline, now);
  }

  /** Makes the clock timer fire no later than `deadline`. */
  private armTimer(deadline: number, now: number): void {
    if (this.timerHandle !== undefined) {
      if (this.timerAt <= deadline) return;
      this.timerHandle.cancel();
    }
    this.timerAt = deadline;
    this.timerHandle = this.clock.setTimer(deadline - now, this.timerFired);
  }

  private stopTimer(slot: Slot): void {
    slot.deadline = -1;
    this.dropStaleTimers();
  }

  /** Drops entries at the head whose tag completed (or started another timer) meanwhile. */
  private dropStaleTimers(): void {
    for (;;) {
      const s = this.timerSlots.peek();
      if (s === undefined || (s.deadline >= 0 && s.timerGen === this.timerGens.peek())) return;
      this.timerSlots.shift();
      this.timerGens.shift();
    }
  }

  /** The clock timer fired: time out every request whose deadline has passed, then wait for the next. */
  private expireTimers(): void {
    for (;;) {
      this.dropStaleTimers();
      const s = this.timerSlots.peek();
      if (s === undefined) return;
      const now = this.clock.nowNs();
      if (s.deadline > now) {
        this.armTimer(s.deadline, now);
        return;
      }
      this.timerSlots.shift();
      this.timerGens.shift();
      s.deadline = -1;
      this.timedOut(s);
    }
  }

  private slotFor(tag: number): Slot {
    let slot = this.slots[tag];
    if (slot === undefined) {
      const s: Slot = {
        tag,
        state: S_FREE,
        kind: 'mem',
        op: undefined,
        tc: 0,
        offset: 0,
        nextAddress: 0,
        remaining: 0,
        zeroLength: false,
        deadline: -1,
        timerGen: 0,
        enqueueOptions: {
          validated: true,
          onSent: () => {
            if (s.state === S_ACTIVE && s.deadline < 0 && this.timeoutNs !== undefined) this.startTimer(s, this.timeoutNs);
          },
        },
      };
      this.slots[tag] = s;
      slot = s;
    }
    return slot;
  }

  private memCompletion(slot: Slot, op: ReadOp, cpl: CplTlp): void {
    if (cpl.kind !== 'CplD' && cpl.kind !== 'CplDLk') {
      this.malformed(slot, cpl, `successful read completion without data (${cpl.kind})`);
      return;
    }
    if (cpl.byteCount !== slot.remaining) {
      this.malformed(slot, cpl, `Byte Count ${cpl.byteCount}, expected ${slot.remaining} remaining`);
      return;
    }
    const expectLa = lowerAddressOf(slot.nextAddress);
    if (cpl.lowerAddress !== expectLa) {
      this.malformed(slot, cpl, `Lower Address 0x${cpl.lowerAddress.toString(16)}, expected 0x${expectLa.toString(16)}`);
      return;
    }
    const payloadBytes = cpl.lengthDw * 4;
    const data = cpl.data;
    if (data === undefined || data.length !== payloadBytes) {
      this.malformed(slot, cpl, `payload of ${data?.length ?? 0} bytes for Length ${cpl.lengthDw} DW`);
      return;
    }
    if (payloadBytes > this.mps) {
      this.malformed(slot, cpl, `payload of ${payloadBytes} bytes exceeds Max_Payload_Size ${this.mps}`);
      return;
    }
    const lead = lowBits(slot.nextAddress, 4);
    let n = payloadBytes - lead;
    if (n >= slot.remaining) {
      // The last part: exactly the DWs covering what was still owed.
      if (cpl.lengthDw !== Math.ceil((lead + slot.remaining) / 4)) {
        this.malformed(slot, cpl, `Length ${cpl.lengthDw} DW for the last ${slot.remaining} bytes at offset ${lead}`);
        return;
      }
      n = slot.remaining;
    } else if (lowBits(slot.nextAddress + n, this.config.rcb) !== 0) {
      this.malformed(slot, cpl, `a partial completion must end on a ${this.config.rcb}-byte RCB boundary`);
      return;
    }
    if (cpl.ep) {
      this.poisoned(slot, cpl, n === slot.remaining);
      return;
    }
    if (!slot.zeroLength && !op.settled) op.dest.set(lead === 0 && n === data.length ? data : data.subarray(lead, lead + n), slot.offset);
    slot.offset += n;
    slot.nextAddress += n;
    slot.remaining -= n;
    if (slot.remaining === 0) {
      this.finishSlot(slot, S_FREE);
      this.maybeResolveRead(op);
      this.issueWaiting();
    }
  }

  private singleCompletion(slot: Slot, op: SingleOp, cpl: CplTlp): void {
    const isRead = slot.kind === 'cfgRd' || slot.kind === 'ioRd';
    if (isRead !== (cpl.kind === 'CplD')) {
      this.malformed(slot, cpl, `${cpl.kind} for ${describe(slot)}`);
      return;
    }
    if (cpl.byteCount !== CPL_RULES.NON_MEMORY_BYTE_COUNT || cpl.lowerAddress !== 0) {
      this.malformed(slot, cpl, `Byte Count ${cpl.byteCount} / Lower Address ${cpl.lowerAddress} (expected 4 / 0)`);
      return;
    }
    let value = 0;
    if (isRead) {
      const d = cpl.data;
      if (d === undefined || cpl.lengthDw !== 1 || d.length !== 4) {
        this.malformed(slot, cpl, `${describe(slot)} must complete with one DW`);
        return;
      }
      if (cpl.ep) {
        this.poisoned(slot, cpl, true);
        return;
      }
      value = (d[0]! | (d[1]! << 8) | (d[2]! << 16) | (d[3]! << 24)) >>> 0;
    }
    this.finishSlot(slot, S_FREE);
    if (!op.settled) {
      op.settled = true;
      op.resolve(value);
    }
    this.issueWaiting();
  }

  private maybeResolveRead(op: ReadOp): void {
    if (op.settled || op.outstanding > 0 || this.hasMore(op)) return;
    op.settled = true;
    if (op.destId >= 0) this.releaseDest(op);
    op.resolve(op.dest);
  }

  /**
   * Lets the scan take the next completion of a memory read's tag, as the slot expects it now
   * (or not at all when it expects none: no longer active, a zero-length read, its read settled).
   */
  private arm(slot: Slot): void {
    const t = this.scanTable!;
    const i = slot.tag * SCAN_TABLE_STRIDE;
    const op = slot.op as ReadOp | undefined;
    if (slot.state !== S_ACTIVE || slot.kind !== 'mem' || slot.zeroLength || op === undefined || op.settled || !(slot.remaining > 0)) {
      t[i] = 0;
      return;
    }
    if (op.destId < 0) {
      const id = this.freeDestIds.pop() ?? this.scanDests.length;
      this.scanDests[id] = op.dest;
      op.destId = id;
    }
    t[i + 1] = slot.tc;
    t[i + 2] = op.destId;
    t[i + 3] = slot.offset;
    // The scan needs the address's low bits only (Lower Address, RCB boundaries, the lead in its DW).
    t[i + 4] = slot.nextAddress % 0x1_0000_0000 | 0;
    t[i + 5] = slot.remaining;
    t[i] = 1;
  }

  /** The read's buffer leaves the scan's list (none of its tags is armed any more). */
  private releaseDest(op: ReadOp): void {
    this.scanDests[op.destId] = undefined;
    this.freeDestIds.push(op.destId);
    op.destId = -1;
  }

  /** Ends a tag's request: timer off, tag back to the pool (or kept, if quarantined). */
  private finishSlot(slot: Slot, state: number): void {
    if (slot.deadline >= 0) this.stopTimer(slot);
    if (this.scanTable !== undefined) this.scanTable[slot.tag * SCAN_TABLE_STRIDE] = 0;
    const op = slot.op;
    if (op !== undefined) op.outstanding--;
    slot.op = undefined;
    slot.state = state;
    if (state !== S_QUARANTINED) this.tags.free(slot.tag);
  }

  private failOp(op: Op, error: TlpwireError): void {
    if (op.settled) return;
    op.settled = true;
    if (op.kind === 'read' && op.destId >= 0) {
      // Its buffer is the caller's again: no completion still to come may be copied into it.
      if (op.outstanding > 0) {
        const t = this.scanTable!;
        for (const slot of this.slots) if (slot !== undefined && slot.op === op) t[slot.tag * SCAN_TABLE_STRIDE] = 0;
      }
      this.releaseDest(op);
    }
    op.reject(error);
  }

  private timedOut(slot: Slot): void {
    if (slot.state === S_QUARANTINED) {
      slot.state = S_FREE;
      this.tags.free(slot.tag);
      this.issueWaiting();
      return;
    }
    if (slot.state !== S_ACTIVE) return;
    const op = slot.op!;
    const what = describe(slot);
    this.counters.add('cpl.timeout');
    this.log.warn({ tag: slot.tag, request: what, timeoutNs: this.timeoutNs }, 'completion timeout');
    this.onCompletionError({ kind: 'timeout', reason: `${what}: no completion within ${this.timeoutNs} ns`, tag: slot.tag });
    this.finishSlot(slot, S_TIMED_OUT);
    this.failOp(op, new TlpwireError('ERR_CPL_TIMEOUT', `${what}: completion timeout`));
    this.issueWaiting();
  }

  private unexpected(cpl: CplTlp, reason: string): void {
    this.counters.add('cpl.unexpected');
    this.log.warn({ tag: cpl.tag, requesterId: cpl.requesterId, completerId: cpl.completerId, reason }, 'unexpected completion');
    this.onCompletionError({ kind: 'unexpected', reason, tag: cpl.tag, tlp: cpl });
  }

  private malformed(slot: Slot, cpl: CplTlp, reason: string): void {
    this.counters.add('cpl.malformed');
    this.log.warn({ tag: slot.tag, request: describe(slot), reason }, 'malformed completion');
    this.onCompletionError({ kind: 'malformed', reason, tag: slot.tag, tlp: cpl });
    this.abandon(slot, new TlpwireError('ERR_CPL_MALFORMED', `${describe(slot)}: ${reason}`), false);
  }

  private poisoned(slot: Slot, cpl: CplTlp, last: boolean): void {
    this.counters.add('cpl.poisoned');
    this.log.warn({ tag: slot.tag, request: describe(slot) }, 'poisoned completion');
    this.onCompletionError({ kind: 'poisoned', reason: 'completion data is poisoned (EP)', tag: slot.tag, tlp: cpl });
    this.abandon(slot, new TlpwireError('ERR_CPL_POISONED', `${describe(slot)}: poisoned completion`), last);
  }

  /**
   * Fails the request of a tag. When more parts may still come, the tag is kept out of use until
   * the request would have timed out, so that those parts cannot match a new request.
   */
  private abandon(slot: Slot, error: TlpwireError, complete: boolean): void {
    const op = slot.op!;
    if (complete || slot.deadline < 0) this.finishSlot(slot, S_FREE);
    else {
      // Quarantined until its timer expires: the timer keeps running (timedOut frees the tag).
      const deadline = slot.deadline;
      slot.deadline = -1;
      this.finishSlot(slot, S_QUARANTINED);
      slot.deadline = deadline;
    }
    this.failOp(op, error);
    this.issueWaiting();
  }
}

function describe(slot: Slot): string {
  switch (slot.kind) {
    case 'mem':
      return `memory read (tag ${slot.tag})`;
    case 'cfgRd':
      return `config read (tag ${slot.tag})`;
    case 'cfgWr':
      return `config write (tag ${slot.tag})`;
    case 'ioRd':
      return `I/O read (tag ${slot.tag})`;
    case 'ioWr':
      return `I/O write (tag ${slot.tag})`;
  }
}

function checkRange(address: number, length: number): TlpwireError | undefined {
  if (!Number.isSafeInteger(address) || address < 0 || !Number.isSafeInteger(address + length)) {
    return new TlpwireError('ERR_REQUEST', `address ${address} (+${length}) is not a byte address below 2^53`);
  }
  if (length > PCIE_LIMITS.PAGE_4K * 0x100000) {
    return new TlpwireError('ERR_REQUEST', `request of ${length} bytes is too large`);
  }
  return undefined;
}

/** The attributes a request passes to the TLP builder (not PH for writes, as before). */
function copyAttributes(a: RequestAttributes, h: HeaderOptions): void {
  if (a.tc !== undefined) h.tc = a.tc;
  if (a.ro !== undefined) h.ro = a.ro;
  if (a.ido !== undefined) h.ido = a.ido;
  if (a.ns !== undefined) h.ns = a.ns;
  if (a.th !== undefined) h.th = a.th;
}

// Builder options are object literals filled field by field, never spread: a spread result is a
// slow-mode object in V8, and the builder reads its fields once per TLP.
function writeTlpOptions(a: RequestAttributes, requesterId: number, data: Uint8Array): MemWriteOptions {
  const o: MemWriteOptions = { requesterId, address: 0, data };
  copyAttributes(a, o);
  return o;
}

/** MemReadFields for the MRd fast path, or undefined when the read needs memReadTlp (locked, TH/PH, bad fields). */
function fastReadFields(a: ReadOptions): MemReadFields | undefined {
  if (a.locked === true || a.th === true || a.ph !== undefined) return undefined;
  const f: MemReadFields = { requesterId: 0, tc: a.tc ?? 0, ro: a.ro ?? false, ns: a.ns ?? false, ido: a.ido ?? false };
  try {
    checkMemReadFields(f);
  } catch {
    return undefined; // memReadTlp reports it
  }
  return f;
}

function readTlpOptions(a: ReadOptions): MemReadOptions {
  const o: MemReadOptions = { requesterId: 0, tag: 0, address: 0, byteLength: 0 };
  copyAttributes(a, o);
  if (a.locked === true) o.locked = true;
  if (a.ph !== undefined) o.ph = a.ph;
  return o;
}

function bdfFields(bdf: number): { bus: number; device: number; function: number } {
  return { bus: (bdf >> 8) & 0xff, device: (bdf >> 3) & 0x1f, function: bdf & 0x7 };
}

function le32(value: number): Uint8Array {
  const v = value >>> 0;
  return new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);
}

function hex4(id: number): string {
  return `0x${id.toString(16).padStart(4, '0')}`;
}

function asTlpwireError(e: unknown): TlpwireError {
  if (e instanceof TlpwireError) return e;
  return new TlpwireError('ERR_INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
