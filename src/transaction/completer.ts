/**
 * The completer: executes requests that arrive from the link against memory, I/O and
 * configuration targets, and answers non-posted ones with completions (§2.3.1, §2.2.9).
 *
 * - A request nobody claims: non-posted → Unsupported Request completion; posted writes →
 *   dropped and counted (there is nobody to tell).
 * - A target that throws → Completer Abort for non-posted requests; posted → dropped, counted.
 * - Locked reads, AtomicOps and Type 1 configuration requests are not supported by an
 *   endpoint-style completer → UR.
 * - Poisoned write data is never written (§2.7.2.2): posted → dropped; non-posted → UR.
 */
import { Counters, errorMessage, silentLogger, type Logger, type Rng } from '../core/index.js';
import { PCIE_LIMITS } from '../spec/index.js';
import {
  CompletionParts,
  checkCompletionFields,
  decodeTlp,
  joinAddress,
  type CfgTlp,
  type CompletionFields,
  type CompletionOptions,
  type CplStatus,
  type IoTlp,
  type MemTlp,
  type MemReadRun,
  type MemReadView,
  type MemWriteRun,
  type MemWriteView,
  type MsgTlp,
  type Tlp,
} from '../tlp/index.js';
import { completionPartEnd, completionsFor, dataCompletions, type CompletableRequest } from './completions.js';
import type { EnqueueOptions } from './ordering-queues.js';
import { firstEnabledOffset, isZeroLengthRead, lowBits, lowerAddressOf, readByteCount } from './split.js';

/**
 * A range of memory or I/O space. `read` returns exactly `length` bytes starting at `address`
 * (the first enabled byte). `write` gets the request's DW-aligned address, its whole payload
 * (whole DWs) and its byte enables: byte i of `data` is written iff enabled — see
 * `forEachEnabledRun`, which turns that into contiguous runs.
 */
export interface CompleterTarget {
  /** `requesterId` lets a host-memory target apply the IOMMU of the requesting function. */
  claims(address: number, length: number, requesterId: number): boolean;
  /**
   * The bytes read: the target's to give away, never changed afterwards (the link may copy them
   * into the completions a little later, in the same turn).
   */
  read(address: number, length: number, requesterId: number): Uint8Array;
  /** `data` is the target's to keep (the completer never hands it a view of the link's buffer). */
  write(address: number, data: Uint8Array, firstBe: number, lastBe: number, requesterId: number): void;
  /**
   * Optional: `read` done in place, when the target can: sets `out` to where the bytes are
   * (out.bytes[out.offset, out.offset + length), e.g. a page of RAM) and returns true; otherwise
   * returns false having recorded nothing, and the completer calls `claims` and `read`. True
   * claims the range (the completer asks it instead of `claims`). The completer sends the
   * completions from those bytes at once, before anything else can write them, or copies them.
   */
  readSpan?(address: number, length: number, requesterId: number, out: ByteSpan): boolean;
  /**
   * Optional: `write` with the payload given as src[srcOffset, srcOffset + length) (the link's
   * receive buffer, valid only during the call), so that no view of it need be made.
   */
  writeFrom?(address: number, src: Uint8Array, srcOffset: number, length: number, firstBe: number, lastBe: number, requesterId: number): void;
  /**
   * Optional: does a whole run of writes (src/tlp MemWriteRun: whole DWs, one requester, one
   * contiguous range; its bytes are the link's receive buffer, valid only during the call) and
   * returns true when every byte of it is this target's and may be written;
   * otherwise returns false having written and recorded nothing (the writes then come one at a
   * time through claims and write, which report what is wrong).
   */
  writeRun?(run: MemWriteRun): boolean;
  /**
   * Optional: true when no byte of [address, address + length) is this target's, with nothing
   * recorded. A run of writes reaches a later target's writeRun only past targets that say so.
   */
  disjoint?(address: number, length: number): boolean;
}

/** Where readSpan found a read's bytes. */
export interface ByteSpan {
  bytes: Uint8Array;
  offset: number;
}

/** The fields of a memory read request the completer uses: a MemTlp's, or a MemReadView's. */
interface MemReadRequest {
  addressHi: number;
  addressLo: number;
  firstBe: number;
  lastBe: number;
  lengthDw: number;
  requesterId: number;
  tag: number;
  tc: number;
  ro: boolean;
  ns: boolean;
}

/** Configuration space of the functions behind this completer. */
export interface ConfigTarget {
  /** The DW at `register` (0..1023) of function `bdf`, or undefined if there is no such function (→ UR). */
  configRead(bdf: number, register: number): number | undefined;
  /** Writes the enabled bytes of `value`; false if there is no such function (→ UR). */
  configWrite(bdf: number, register: number, value: number, byteEnables: number): boolean;
}

/** The enabled bytes of a write as contiguous runs: fn(address, bytes) for each. */
export function forEachEnabledRun(
  address: number,
  data: Uint8Array,
  firstBe: number,
  lastBe: number,
  fn: (address: number, bytes: Uint8Array) => void,
): void {
  const lengthDw = data.length / 4;
  let runStart = -1;
  for (let i = 0; i <= data.length; i++) {
    let enabled = false;
    if (i < data.length) {
      const dw = i >> 2;
      const be = dw === 0 ? firstBe : dw === lengthDw - 1 ? lastBe : 0xf;
      enabled = (be & (1 << (i & 3))) !== 0;
    }
    if (enabled && runStart < 0) runStart = i;
    else if (!enabled && runStart >= 0) {
      fn(address + runStart, data.subarray(runStart, i));
      runStart = -1;
    }
  }
}

export interface CompleterOptions {
  completerId: number;
  /** Read Completion Boundary (64 or 128). */
  rcb: number;
  /** Max_Payload_Size for completions, bytes. */
  maxPayloadSize: number;
  logger?: Logger;
  counters?: Counters;
  /** Split read completions at random legal points (simulator adversary). */
  rng?: Rng;
  /** Set IDO on completions. */
  idoCompletions?: boolean;
}

/** Where completions go (the ordering queues). */
export interface CompletionOutput {
  enqueue(tlp: Tlp, options?: EnqueueOptions): void;
  /** Optional fast path (OrderingQueues.sendCompletionData): how many of a read's completions went; the rest must be enqueued. */
  sendCompletionData?(f: CompletionFields, src: Uint8Array, parts: CompletionParts): number;
  /** Optional (OrderingQueues.sendCompletionRun): sendCompletionData for reads one after another; how many reads went, each whole. */
  sendCompletionRun?(f: CompletionFields, tags: Uint16Array, first: number, count: number, src: Uint8Array, parts: CompletionParts, stride: number): number;
}

export class Completer {
  private readonly memTargets: CompleterTarget[] = [];
  private readonly ioTargets: CompleterTarget[] = [];
  private configTarget: ConfigTarget | undefined;
  private readonly log: Logger;
  readonly counters: Counters;
  private completerId: number;
  private mps: number;
  private readonly rcb: number;
  private readonly rng: Rng | undefined;
  private readonly ido: boolean;
  /** How many reads of the run being answered (handleMemReadRun) were taken so far: where it stopped, should it throw. */
  runTaken = 0;
  /** Where a read's bytes are (CompleterTarget.readSpan), reused: one read at a time. */
  private readonly span: ByteSpan = { bytes: new Uint8Array(0), offset: 0 };
  private readonly parts = new CompletionParts();
  /** Fields of the read being completed by the fast path (reused: one read at a time). */
  private readonly cplFields: CompletionFields = {
    completerId: 0,
    requesterId: 0,
    tag: 0,
    tc: 0,
    ro: false,
    ns: false,
    ido: false,
    locked: false,
  };
  /** Messages received (INTx, PME, errors, vendor-defined). */
  onMessage: (msg: MsgTlp) => void = () => {};
  /**
   * A Type 0 configuration write completed: functions capture their bus and device number
   * from it (§2.2.6.2); `bdf` is the request's target.
   */
  onConfigWrite0: (bdf: number) => void = () => {};

  constructor(
    private readonly output: CompletionOutput,
    options: CompleterOptions,
  ) {
    this.completerId = options.completerId;
    this.mps = options.maxPayloadSize;
    this.rcb = options.rcb;
    this.rng = options.rng;
    this.ido = options.idoCompletions ?? false;
    this.log = options.logger ?? silentLogger;
    this.counters = options.counters ?? new Counters();
  }

  /** Adds a memory range; returns a function that removes it. Earlier targets win overlaps. */
  addMemoryTarget(target: CompleterTarget): () => void {
    return addTo(this.memTargets, target);
  }

  addIoTarget(target: CompleterTarget): () => void {
    return addTo(this.ioTargets, target);
  }

  setConfigTarget(target: ConfigTarget | undefined): void {
    this.configTarget = target;
  }

  setCompleterId(id: number): void {
    this.completerId = id;
  }

  /** MPS in effect for completions (configured, capped by the link partner's). */
  setMaxPayloadSize(bytes: number): void {
    this.mps = bytes;
  }

  /**
   * Executes a received request. `release` frees the link buffer it took: called before this
   * returns for posted requests, once the last completion has gone to the link for non-posted
   * ones (so a completer whose completions cannot leave stops taking requests). Never throws.
   */
  handleRequest(tlp: Tlp, release: () => void): void {
    switch (tlp.kind) {
      case 'MWr':
      case 'MWr64':
        this.memWrite(tlp);
        release();
        return;
      case 'Msg':
      case 'MsgD':
        this.counters.add('completer.message');
        try {
          this.onMessage(tlp);
        } catch (e) {
          this.log.error({ err: errorMessage(e) }, 'message handler threw');
        }
        release();
        return;
      case 'MRd':
      case 'MRd64':
        this.memRead(tlp, release);
        return;
      case 'IORd':
      case 'IOWr':
        this.io(tlp, release);
        return;
      case 'CfgRd0':
      case 'CfgWr0':
        this.config(tlp, release);
        return;
      case 'MRdLk':
      case 'MRdLk64':
      case 'CfgRd1':
      case 'CfgWr1':
      case 'FetchAdd':
      case 'FetchAdd64':
      case 'Swap':
      case 'Swap64':
      case 'CAS':
      case 'CAS64':
        this.reply(tlp, 'UR', release, `${tlp.kind} is not supported here`);
        return;
      case 'Cpl':
      case 'CplD':
      case 'CplLk':
      case 'CplDLk':
        // Completions are routed to the requester; one here is a routing bug upstream.
        this.counters.add('completer.misrouted');
        release();
        return;
    }
  }

  /**
   * handleRequest for a posted MWr that the link's fast path parsed, without a TLP object: the
   * same effect. Returns false, having done nothing, for one it leaves to handleRequest (a
   * poisoned write). The caller releases the link credits afterwards.
   */
  handleMemWrite(bytes: Uint8Array, v: MemWriteView): boolean {
    if (v.ep) return false;
    if (v.firstBe === 0 && v.lengthDw === 1) return true; // zero-length write: nothing to do
    const dwAddress = joinAddress(v.addressHi, v.addressLo);
    const start = dwAddress + firstEnabledOffset(v.firstBe);
    const length = readByteCount(v.firstBe, v.lastBe, v.lengthDw);
    const target = find(this.memTargets, start, length, v.requesterId);
    if (target === undefined) {
      this.counters.add('completer.unclaimedWrite');
      this.log.debug({ address: start, length }, 'posted write to an unclaimed address dropped');
      return true;
    }
    try {
      if (target.writeFrom !== undefined) target.writeFrom(dwAddress, bytes, v.dataOffset, v.dataLength, v.firstBe, v.lastBe, v.requesterId);
      // write's data is the target's to keep; the link's buffer is valid only during this call.
      else target.write(dwAddress, bytes.slice(v.dataOffset, v.dataOffset + v.dataLength), v.firstBe, v.lastBe, v.requesterId);
    } catch (e) {
      this.counters.add('completer.writeFailed');
      this.log.warn({ address: start, err: errorMessage(e) }, 'memory target failed a posted write');
    }
    return true;
  }

  /**
   * A run of writes (the link's onMemWriteRun), done at once by the one target that owns all of
   * it; false when the run must go TLP by TLP (another target owns part of it, or none owns it).
   */
  handleMemWriteRun(run: MemWriteRun): boolean {
    for (const t of this.memTargets) {
      if (t.writeRun !== undefined) return t.writeRun(run);
      if (t.disjoint === undefined || !t.disjoint(run.address, run.length)) return false;
    }
    return false;
  }

  /**
   * A run of reads (the link's onMemReadRun), answered read by read in order from RAM in place,
   * as the reads one by one would be: each part of the range is routed once, to the one target
   * that reads it in place (readSpan) past targets that own none of it (disjoint). Returns how
   * many reads, from the first, were taken: answered, or their completions queued when the link
   * stopped taking them. `release` frees one read's credits; it is called once per taken read,
   * when its last completion has left. The rest (a part no target reads in place, an unusual
   * read) are the caller's to hand over one by one, which also reports what is wrong.
   */
  handleMemReadRun(run: MemReadRun, release: () => void): number {
    if (this.output.sendCompletionData === undefined || this.rng !== undefined) return 0;
    if (!this.setReadFields(this.completerId, run)) return 0;
    const f = this.cplFields;
    const span = this.span;
    const n = run.count;
    const length = run.readLength;
    let i = 0;
    this.runTaken = 0;
    while (i < n) {
      // A part of the run: the rest of it if one target reads all of that in place, else the
      // reads up to the next 4 KiB boundary (which no read crosses), else nothing more.
      const start = run.address + i * length;
      let m = n - i;
      if (!this.readsInPlace(start, m * length, run.requesterId)) {
        m = Math.min(m, Math.floor((PCIE_LIMITS.PAGE_4K - lowBits(start, PCIE_LIMITS.PAGE_4K)) / length));
        if (m === 0 || m === n - i || !this.readsInPlace(start, m * length, run.requesterId)) return i;
      }
      const src = span.bytes;
      const base = span.offset;
      let k = 0;
      // Reads a multiple of 128 bytes and of MPS apart split alike, with the same byte counts and
      // lower addresses: their completions go to the link together, from one read's parts.
      const sendRun = this.output.sendCompletionRun;
      if (sendRun !== undefined && m > 1 && (length & 127) === 0 && length % this.mps === 0 && this.readParts(start, length, base)) {
        k = sendRun.call(this.output, f, run.tags, i, m, src, this.parts, length);
        for (let r = 0; r < k; r++) release();
        i += k;
        this.runTaken = i;
      }
      for (; k < m; k++, i++) {
        f.tag = run.tags[i]!;
        if (!this.sendReadParts(start + k * length, length, src, base + k * length, release, true)) return i;
        this.runTaken = i + 1;
      }
    }
    return n;
  }

  /** span set to where [start, start + length) is, by the first target that owns any of it; false when none reads it in place. */
  private readsInPlace(start: number, length: number, requesterId: number): boolean {
    for (const t of this.memTargets) {
      if (t.readSpan !== undefined) {
        let found = false;
        try {
          found = t.readSpan(start, length, requesterId, this.span);
        } catch {
          found = false; // one by one, the read reports what the target did
        }
        if (found) return true;
      }
      if (t.disjoint === undefined || !t.disjoint(start, length)) return false;
    }
    return false;
  }

  private memWrite(tlp: MemTlp): void {
    const data = tlp.data;
    if (data === undefined) return;
    if (tlp.ep) {
      this.counters.add('completer.poisonedWrite');
      return;
    }
    const dwAddress = joinAddress(tlp.addressHi, tlp.addressLo);
    if (tlp.firstBe === 0 && tlp.lengthDw === 1) return; // zero-length write: nothing to do
    const start = dwAddress + firstEnabledOffset(tlp.firstBe);
    const length = readByteCount(tlp.firstBe, tlp.lastBe, tlp.lengthDw);
    const target = find(this.memTargets, start, length, tlp.requesterId);
    if (target === undefined) {
      this.counters.add('completer.unclaimedWrite');
      this.log.debug({ address: start, length }, 'posted write to an unclaimed address dropped');
      return;
    }
    try {
      target.write(dwAddress, data, tlp.firstBe, tlp.lastBe, tlp.requesterId);
    } catch (e) {
      this.counters.add('completer.writeFailed');
      this.log.warn({ address: start, err: errorMessage(e) }, 'memory target failed a posted write');
    }
  }

  private memRead(tlp: MemTlp, release: () => void): void {
    this.memReadOf(tlp, tlp, undefined, release);
  }

  /**
   * An MRd/MRd64 that the link parsed without a TLP object (its onMemRead), executed exactly as
   * handleRequest executes the decoded TLP; the object is decoded only for an answer that needs
   * it (UR, CA, or completions that must wait in the queues). Never throws for the request's sake.
   */
  handleMemRead(bytes: Uint8Array, v: MemReadView, release: () => void): void {
    this.memReadOf(v, undefined, bytes, release);
  }

  /**
   * A memory read given as a decoded TLP, or as the view the link parsed from `bytes` (decoded
   * here only for an answer that needs the object: no closure made per read to defer that).
   */
  private memReadOf(tlp: MemReadRequest, decoded: MemTlp | undefined, bytes: Uint8Array | undefined, release: () => void): void {
    const dwAddress = joinAddress(tlp.addressHi, tlp.addressLo);
    const start = dwAddress + firstEnabledOffset(tlp.firstBe);
    const zero = isZeroLengthRead(tlp.firstBe, tlp.lengthDw);
    const length = readByteCount(tlp.firstBe, tlp.lastBe, tlp.lengthDw);
    // With a target that can be read in place and a link that sends completions straight from
    // it, the data goes from RAM into the batch, allocating nothing. Such a target is asked with
    // readSpan first, which claims what it reads (and records nothing when it declines, so that
    // claims then decides, as find() would): one IOMMU look-up per read, not two.
    const span = this.span;
    const inPlace = !zero && this.rng === undefined && this.output.sendCompletionData !== undefined;
    let target: CompleterTarget | undefined;
    let spanned = false;
    for (const t of this.memTargets) {
      if (inPlace && t.readSpan !== undefined && t.readSpan(start, length, tlp.requesterId, span)) {
        target = t;
        spanned = true;
        break;
      }
      if (t.claims(start, length, tlp.requesterId)) {
        target = t;
        break;
      }
    }
    if (target === undefined) {
      this.reply(requestTlp(tlp, decoded, bytes), 'UR', release, `read of ${length} bytes at 0x${start.toString(16)} is unclaimed`);
      return;
    }
    if (zero) {
      // A zero-length read only flushes: no target side effects.
      this.sendCompletions(requestTlp(tlp, decoded, bytes), new Uint8Array(0), release);
      return;
    }
    if (spanned) {
      if (this.sendReadData(tlp, span.bytes, span.offset, release, this.completerId, true)) return;
      // The completions will wait in the queues: they need bytes of their own.
      this.sendCompletions(requestTlp(tlp, decoded, bytes), span.bytes.slice(span.offset, span.offset + length), release);
      return;
    }
    let data: Uint8Array;
    try {
      data = target.read(start, length, tlp.requesterId);
    } catch (e) {
      this.reply(requestTlp(tlp, decoded, bytes), 'CA', release, `memory target failed a read at 0x${start.toString(16)}: ${errorMessage(e)}`);
      return;
    }
    if (data.length !== length) {
      this.reply(requestTlp(tlp, decoded, bytes), 'CA', release, `memory target returned ${data.length} of ${length} bytes`);
      return;
    }
    if (this.rng === undefined && this.sendReadData(tlp, data, 0, release, this.completerId, false)) return;
    this.sendCompletions(requestTlp(tlp, decoded, bytes), data, release);
  }

  private io(tlp: IoTlp, release: () => void): void {
    const dwAddress = joinAddress(tlp.addressHi, tlp.addressLo);
    const start = dwAddress + firstEnabledOffset(tlp.firstBe);
    const length = readByteCount(tlp.firstBe, 0, 1);
    const target = find(this.ioTargets, start, length, tlp.requesterId);
    if (target === undefined) {
      this.reply(tlp, 'UR', release, `I/O access at 0x${start.toString(16)} is unclaimed`);
      return;
    }
    if (tlp.kind === 'IOWr') {
      if (tlp.ep || tlp.data === undefined) {
        this.counters.add('completer.poisonedWrite');
        this.reply(tlp, 'UR', release, 'poisoned I/O write');
        return;
      }
      try {
        target.write(dwAddress, tlp.data, tlp.firstBe, 0, tlp.requesterId);
      } catch (e) {
        this.reply(tlp, 'CA', release, `I/O target failed a write: ${errorMessage(e)}`);
        return;
      }
      this.sendCompletions(tlp, 'SC', release);
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = target.read(start, length, tlp.requesterId);
    } catch (e) {
      this.reply(tlp, 'CA', release, `I/O target failed a read: ${errorMessage(e)}`);
      return;
    }
    if (bytes.length !== length) {
      this.reply(tlp, 'CA', release, `I/O target returned ${bytes.length} of ${length} bytes`);
      return;
    }
    const dw = new Uint8Array(4);
    dw.set(bytes, start - dwAddress);
    this.sendCompletions(tlp, dw, release);
  }

  private config(tlp: CfgTlp, release: () => void): void {
    const bdf = (tlp.bus << 8) | (tlp.device << 3) | tlp.function;
    // Config completions come from the function addressed, whatever our own ID.
    const completerId = bdf;
    const target = this.configTarget;
    if (target === undefined) {
      this.reply(tlp, 'UR', release, 'no configuration space here', completerId);
      return;
    }
    if (tlp.kind === 'CfgWr0') {
      const d = tlp.data;
      if (tlp.ep || d === undefined || d.length !== 4) {
        this.counters.add('completer.poisonedWrite');
        this.reply(tlp, 'UR', release, 'poisoned or malformed config write', completerId);
        return;
      }
      let ok: boolean;
      try {
        ok = target.configWrite(bdf, tlp.register, le32(d), tlp.firstBe);
      } catch (e) {
        this.reply(tlp, 'CA', release, `config target failed a write: ${errorMessage(e)}`, completerId);
        return;
      }
      if (!ok) {
        this.reply(tlp, 'UR', release, `no function ${bdfString(bdf)}`, completerId);
        return;
      }
      this.sendCompletions(tlp, 'SC', release, completerId);
      try {
        this.onConfigWrite0(bdf);
      } catch (e) {
        this.log.error({ err: errorMessage(e) }, 'config write hook threw');
      }
      return;
    }
    let v: number | undefined;
    try {
      v = target.configRead(bdf, tlp.register);
    } catch (e) {
      this.reply(tlp, 'CA', release, `config target failed a read: ${errorMessage(e)}`, completerId);
      return;
    }
    if (v === undefined) {
      this.reply(tlp, 'UR', release, `no function ${bdfString(bdf)}`, completerId);
      return;
    }
    const u = v >>> 0;
    this.sendCompletions(tlp, new Uint8Array([u & 0xff, (u >>> 8) & 0xff, (u >>> 16) & 0xff, u >>> 24]), release, completerId);
  }

  private reply(
    tlp: CompletableRequest,
    status: Exclude<CplStatus, 'SC'>,
    release: () => void,
    why: string,
    completerId?: number,
  ): void {
    this.counters.add(`completer.${status}`);
    this.log.debug({ kind: tlp.kind, status, why }, 'request not completed successfully');
    this.sendCompletions(tlp, status, release, completerId);
  }

  private sendCompletions(
    request: CompletableRequest,
    result: Uint8Array | CplStatus,
    release: () => void,
    completerId = this.completerId,
  ): void {
    // (Memory read data was offered to sendReadData first, in memReadOf.)
    let cpls;
    try {
      cpls = completionsFor(request, result, {
        completerId,
        rcb: this.rcb,
        mps: this.mps,
        ...(this.rng === undefined ? {} : { rng: this.rng }),
        ido: this.ido,
      });
    } catch (e) {
      // Only a request our own checks let through can get here; answer it rather than hang the requester.
      this.log.error({ kind: request.kind, err: errorMessage(e) }, 'could not build completions');
      this.counters.add('completer.CA');
      if (result === 'CA') {
        release();
        return;
      }
      this.sendCompletions(request, 'CA', release, completerId);
      return;
    }
    // D2b: completions of I/O and configuration writes may pass posted requests.
    const ioCfgWrite = request.kind === 'IOWr' || request.kind === 'CfgWr0' || request.kind === 'CfgWr1';
    const last = cpls.length - 1;
    // The queues only read the options: every part but the last shares a constant.
    const middle = ioCfgWrite ? IO_CFG_WRITE_PART : PART;
    const lastOpts: EnqueueOptions = ioCfgWrite
      ? { onSent: release, ioCfgWriteCompletion: true, validated: true }
      : { onSent: release, validated: true };
    for (let i = 0; i <= last; i++) this.output.enqueue(cpls[i]!, i === last ? lastOpts : middle);
  }

  /**
   * A successful memory read's completions straight from its data (CompletionOutput.sendCompletionData),
   * split exactly as completionsFor splits them, without TLP objects; the byte at the read's start
   * address is src[base]. Returns false, having sent nothing, when the first cannot go that way
   * (anything unusual included: completionsFor then builds them all, and reports what is wrong);
   * parts after one that cannot go are built and queued. `borrowed`: src is not ours to keep
   * (RAM), so completions that must wait in the queues get a copy.
   */
  private sendReadData(request: MemReadRequest, src: Uint8Array, base: number, release: () => void, completerId: number, borrowed: boolean): boolean {
    if (this.output.sendCompletionData === undefined || isZeroLengthRead(request.firstBe, request.lengthDw)) return false;
    if (!this.setReadFields(completerId, request)) return false;
    this.cplFields.tag = request.tag;
    const start = joinAddress(request.addressHi, request.addressLo) + firstEnabledOffset(request.firstBe);
    return this.sendReadParts(start, readByteCount(request.firstBe, request.lastBe, request.lengthDw), src, base, release, borrowed);
  }

  /**
   * cplFields for the completions of reads with these fields (all but the tag, which the caller
   * sets); false when sendReadParts must not send them (anything unusual: completionsFor then
   * builds them, and reports what is wrong).
   */
  private setReadFields(completerId: number, r: { requesterId: number; tc: number; ro: boolean; ns: boolean }): boolean {
    const rcb = this.rcb;
    const mps = this.mps;
    if (!(rcb === 64 || rcb === 128) || !(mps >= rcb && mps <= 4096 && (mps & (mps - 1)) === 0)) return false;
    const f = this.cplFields;
    f.completerId = completerId;
    f.requesterId = r.requesterId;
    f.tag = 0;
    f.tc = r.tc;
    f.ro = r.ro;
    f.ns = r.ns;
    f.ido = this.ido;
    f.locked = false;
    try {
      checkCompletionFields(f);
    } catch {
      return false;
    }
    return true;
  }

  /** parts set to the completions of the read of `total` (> 0) bytes at `start` whose first byte is src[base]; false when they are too many. */
  private readParts(start: number, total: number, base: number): boolean {
    const rcb = this.rcb;
    const mps = this.mps;
    const end = start + total;
    const parts = this.parts;
    parts.count = 0;
    for (let s = start; s < end; ) {
      const e = completionPartEnd(s, end, rcb, mps);
      if (!parts.push(end - s, lowerAddressOf(s), base + s - start, lowBits(s, 4), e - s)) return false;
      s = e;
    }
    return true;
  }

  /**
   * The completions of the read of `total` (> 0) bytes at `start`, from src[base, base + total),
   * with the fields in cplFields (setReadFields, and the tag): as sendReadData says.
   */
  private sendReadParts(start: number, total: number, src: Uint8Array, base: number, release: () => void, borrowed: boolean): boolean {
    if (base + total > src.length) return false;
    const send = this.output.sendCompletionData!;
    const rcb = this.rcb;
    const mps = this.mps;
    const f = this.cplFields;
    const end = start + total;
    const parts = this.parts;
    if (!this.readParts(start, total, base)) return false;
    const sent = send.call(this.output, f, src, parts);
    if (sent === 0) return false;
    if (sent < parts.count) {
      const s = start + parts.srcOffset[sent]! - base;
      // The link stopped taking them (credits, congestion): the rest wait in the queues as TLPs.
      const o: CompletionOptions = {
        completerId: f.completerId,
        requesterId: f.requesterId,
        tag: f.tag,
        tc: f.tc,
        ro: f.ro,
        ns: f.ns,
        ido: f.ido,
        status: 'SC',
        byteCount: 0,
        lowerAddress: 0,
      };
      const rest = borrowed
        ? dataCompletions(o, src.slice(base + s - start, base + total), s, s, end, rcb, mps)
        : dataCompletions(o, base === 0 ? src : src.subarray(base, base + total), start, s, end, rcb, mps);
      const last = rest.length - 1;
      const lastOpts: EnqueueOptions = { onSent: release, validated: true };
      for (let i = 0; i <= last; i++) this.output.enqueue(rest[i]!, i === last ? lastOpts : PART);
      return true;
    }
    release();
    return true;
  }
}

// completionsFor builds every completion with a src/tlp builder, which validates it.
const PART: EnqueueOptions = Object.freeze({ validated: true });
const IO_CFG_WRITE_PART: EnqueueOptions = Object.freeze({ ioCfgWriteCompletion: true, validated: true });

/** The read as a TLP object: the decoded one, or decoded now from the bytes the link parsed it from. */
function requestTlp(tlp: MemReadRequest, decoded: MemTlp | undefined, bytes: Uint8Array | undefined): MemTlp {
  if (decoded !== undefined) return decoded;
  const v = tlp as MemReadView;
  return decodeTlp(bytes!, v.tlpOffset, v.tlpLength) as MemTlp;
}

function addTo(list: CompleterTarget[], target: CompleterTarget): () => void {
  list.push(target);
  return () => {
    const i = list.indexOf(target);
    if (i >= 0) list.splice(i, 1);
  };
}

function find(list: readonly CompleterTarget[], address: number, length: number, requesterId: number): CompleterTarget | undefined {
  for (const t of list) if (t.claims(address, length, requesterId)) return t;
  return undefined;
}

function le32(d: Uint8Array): number {
  return (d[0]! | (d[1]! << 8) | (d[2]! << 16) | (d[3]! << 24)) >>> 0;
}

function bdfString(bdf: number): string {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return `${h(bdf >> 8, 2)}:${h((bdf >> 3) & 0x1f, 2)}.${bdf & 7}`;
}
