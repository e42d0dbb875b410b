/**
 * The transmit side of the transaction layer: posted, non-posted and completion queues whose
 * output obeys the PCIe ordering table (§2.4.1) and waits for link credits.
 *
 * A waiting TLP X may be sent when the link has credits for it and X may pass every TLP that was
 * queued before it and is still waiting. Under the table only two things ever hold a TLP back:
 * an earlier Posted Request of its Traffic Class that it has no exception for (RO, IDO with a
 * different ID, I/O/config write completion), and, for a Completion, an earlier Completion of
 * the same transaction. Nothing ever waits for a Non-Posted Request or for a Completion of
 * another transaction, which is what keeps a credit-starved class from deadlocking the others.
 *
 * Two modes:
 * - 'in-order' (real runtime): each class is a FIFO; the oldest class head that may go, goes.
 *   So the output is the input order except where a class stalled for credits is passed.
 * - 'adversarial' (simulator): every waiting TLP that may go is a candidate and one is chosen
 *   uniformly at random, repeatedly. Any legal output order can come out, none that the table
 *   forbids. An optional hold-back delays TLPs at random so that reordering windows exist even
 *   when credits are plentiful.
 */
import { FixedQueue, TlpwireError, type Clock, type Rng, type TimerHandle } from '../core/index.js';
import type { LinkPort } from '../link/index.js';
import { checkMemWriteFields, tlpClass, type CompletionFields, type CompletionParts, type MemReadFields, type MemWriteFields, type Tlp, type TlpClass } from '../tlp/index.js';
import { orderingTraitsInto, postedWriteTraitsInto, type OrderingHints, type OrderingTraits } from './ordering-rules.js';
import { pieceCount, pieceEnd } from './split.js';
import { StagingRing } from './staging.js';

/**
 * Staging for waiting write jobs: twice the largest posted window (512 KiB) plus the writes a
 * caller typically has in flight beyond it; a job that does not fit gets a buffer of its own.
 */
const STAGING_BYTES = 2 * 1024 * 1024;

/** Where the queues send to: the link's credit check and send (a subset of LinkPort). */
export interface TlpSink {
  hasCredits(cls: TlpClass, dataBytes: number): boolean;
  /** `validated`: the enqueuer said the TLP passed validateTlp and is unchanged (EnqueueOptions.validated). */
  sendTlp(tlp: Tlp, validated?: boolean): void;
  /** The optional fast paths, as the link has them (LinkPort). */
  sendMemRead?: LinkPort['sendMemRead'];
  sendMemWrites?: LinkPort['sendMemWrites'];
  sendCompletionData?: LinkPort['sendCompletionData'];
  sendCompletionRun?: LinkPort['sendCompletionRun'];
}

/**
 * A DMA write of whole DWs, for enqueueMemWrite: it becomes the MWr TLPs that memWriteTlp would
 * make for each naturally aligned `mps` block of [address, address + length), sent straight from
 * `data` (data[0] is the byte at `address`) without TLP objects.
 */
export interface MemWriteJob {
  fields: MemWriteFields;
  address: number;
  data: Uint8Array;
  length: number;
  mps: number;
  /** Called once the last TLP has been handed to the link. */
  onSent?: () => void;
  /** Called if the TLPs not yet sent are discarded (clear(), link down). */
  onDropped?: (error: TlpwireError) => void;
  /**
   * The caller leaves `data` unchanged until onSent or onDropped (a DMA engine's buffer): what
   * must wait is sent from it later instead of from a copy taken now.
   */
  borrowed?: boolean;
}

export type OrderingMode = 'in-order' | 'adversarial';

export interface HoldBackOptions {
  /** Probability (0..1) that a queued TLP is held back. */
  probability: number;
  /** Longest hold, ns; a held TLP waits a uniform 1..maxNs. */
  maxNs: number;
}

export interface OrderingQueuesOptions {
  mode: OrderingMode;
  clock: Clock;
  /** Required in adversarial mode. */
  rng?: Rng;
  /** Adversarial mode only. */
  holdBack?: HoldBackOptions;
  /**
   * When queued TLPs are sent: 'sync' inside enqueue()/requestPump(), 'defer' once per clock
   * instant (so TLPs queued together can be reordered), 'manual' only on pump()/sendOne().
   * Default: 'sync' in order, 'defer' adversarial.
   */
  pump?: 'sync' | 'defer' | 'manual';
}

export interface EnqueueOptions extends OrderingHints {
  /** Called right after the TLP was handed to the link. */
  onSent?: () => void;
  /** Called if the TLP is discarded unsent (clear(), link down). */
  onDropped?: (error: TlpwireError) => void;
  /**
   * The TLP passed validateTlp (a src/tlp builder made it) and nobody changes it until it is
   * sent, so the link may skip validating it again. The requester and completer set it.
   */
  validated?: boolean;
}

/**
 * Kinds of reordering, counted once per sent TLP and kind: "X-passed-Y" means a TLP of kind X
 * was sent while at least one earlier TLP of kind Y was still waiting.
 */
export const REORDER_KINDS = [
  'posted-ro-passed-posted',
  'posted-ido-passed-posted',
  'read-ido-passed-posted',
  'npw-ro-passed-posted',
  'npw-ido-passed-posted',
  'cpl-ro-passed-posted',
  'cpl-ido-passed-posted',
  'cpl-io-cfg-write-passed-posted',
  'posted-passed-np',
  'posted-passed-cpl',
  'read-passed-read',
  'np-passed-np',
  'np-passed-cpl',
  'cpl-passed-np',
  'cpl-passed-cpl',
  'passed-posted-other-tc',
] as const;
export type ReorderKind = (typeof REORDER_KINDS)[number];

const K = Object.fromEntries(REORDER_KINDS.map((k, i) => [k, i])) as Record<ReorderKind, number>;

const Q_P = 0;
const Q_NP = 1;
const Q_CPL = 2;

interface Entry extends OrderingTraits {
  tlp: Tlp | undefined;
  seq: number;
  q: number;
  isRead: boolean;
  tc: number;
  dataBytes: number;
  requesterId: number;
  readyAt: number;
  validated: boolean;
  /** A write job instead of a TLP (tlp undefined): its fields, its own copy of the bytes left, and progress. */
  job: MemWriteJob | undefined;
  jobData: Uint8Array | undefined;
  /** jobData is a region of the staging ring (given back when the job is done or dropped). */
  jobStaged: boolean;
  /** Address of jobData[0], of the next TLP to send, and the end. */
  jobBase: number;
  jobNext: number;
  jobEnd: number;
  onSent: (() => void) | undefined;
  onDropped: ((error: TlpwireError) => void) | undefined;
}

export interface OrderingQueueStats {
  queued: { P: number; NP: number; Cpl: number };
  /** Most TLPs waiting at once. */
  highWater: number;
  sent: number;
  held: number;
}

export class OrderingQueues {
  readonly mode: OrderingMode;
  private readonly clock: Clock;
  private readonly rng: Rng | undefined;
  private readonly holdBack: HoldBackOptions | undefined;
  private readonly pumpMode: 'sync' | 'defer' | 'manual';
  /** In order and pumped synchronously: an enqueue into empty queues may send at once. */
  private readonly direct: boolean;
  private readonly queues: [FixedQueue<Entry>, FixedQueue<Entry>, FixedQueue<Entry>] = [
    new FixedQueue<Entry>(64),
    new FixedQueue<Entry>(64),
    new FixedQueue<Entry>(64),
  ];
  private readonly pool: Entry[] = [];
  /** Bytes of write jobs waiting for credits (see staging.ts). */
  private readonly staging = new StagingRing(STAGING_BYTES);
  private seq = 0;
  /** TLPs waiting, in all queues and per queue (a write job counts each TLP it has left). */
  private total = 0;
  private readonly classCount = [0, 0, 0];
  /** Waiting TLPs that carry an exception to "must not pass a posted request". */
  private exceptionCount = 0;
  private readonly tcCount = new Uint32Array(8);
  private readonly counts = new Float64Array(REORDER_KINDS.length);
  private sentCount = 0;
  private heldCount = 0;
  private highWater = 0;
  private pumping = false;
  private pumpAgain = false;
  private deferScheduled = false;
  private holdTimer: TimerHandle | undefined;
  private holdTimerAt = Infinity;
  /** Earliest readyAt of a held TLP that is otherwise free to go, found by the last pick. */
  private minHeldAt = Infinity;
  // Scratch for the adversarial scan, reused so a pick allocates nothing.
  private readonly postedIds = new Set<number>();
  private readonly cplKeys = new Set<number>();
  private chosen: Entry | undefined;
  private chosenIndex = 0;
  private chosenPassedPostedSameTc = false;
  private chosenPassedPostedOtherTc = false;
  private chosenEarlierReads = 0;
  private chosenEarlierNpw = 0;
  private chosenEarlierCpl = 0;
  private readonly deferredPump = (): void => {
    this.deferScheduled = false;
    this.pump();
  };
  private readonly holdTimerFired = (): void => {
    this.holdTimer = undefined;
    this.holdTimerAt = Infinity;
    this.pump();
  };

  constructor(
    private readonly sink: TlpSink,
    options: OrderingQueuesOptions,
  ) {
    this.mode = options.mode;
    this.clock = options.clock;
    this.rng = options.rng;
    if (this.mode === 'adversarial' && this.rng === undefined) {
      throw new TlpwireError('ERR_USAGE', 'adversarial ordering needs an Rng');
    }
    const hb = options.holdBack;
    if (hb !== undefined && !(hb.probability >= 0 && hb.probability <= 1 && hb.maxNs >= 1)) {
      throw new TlpwireError('ERR_USAGE', `bad hold-back options: probability ${hb.probability}, maxNs ${hb.maxNs}`);
    }
    this.holdBack = this.mode === 'adversarial' ? hb : undefined;
    this.pumpMode = options.pump ?? (this.mode === 'adversarial' ? 'defer' : 'sync');
    this.direct = this.mode === 'in-order' && this.pumpMode === 'sync';
  }

  /** TLPs waiting, in all classes or in one. */
  length(cls?: TlpClass): number {
    if (cls === undefined) return this.total;
    return this.classCount[cls === 'P' ? Q_P : cls === 'NP' ? Q_NP : Q_CPL]!;
  }

  stats(): OrderingQueueStats {
    return {
      queued: { P: this.classCount[Q_P]!, NP: this.classCount[Q_NP]!, Cpl: this.classCount[Q_CPL]! },
      highWater: this.highWater,
      sent: this.sentCount,
      held: this.heldCount,
    };
  }

  /** How often each kind of reordering happened (see REORDER_KINDS). */
  reorderings(): Record<ReorderKind, number> {
    const out = {} as Record<ReorderKind, number>;
    for (const k of REORDER_KINDS) out[k] = this.counts[K[k]]!;
    return out;
  }

  /**
   * In order, pumped synchronously, and nothing waiting or being sent: a TLP may go to the link
   * at once, as pump() would send it, without a queue entry (it can pass nothing).
   */
  private get directNow(): boolean {
    return this.direct && this.total === 0 && !this.pumping;
  }

  /** Accounts `n` TLPs sent past the queues (directNow). */
  private sentDirect(n: number): void {
    this.seq += n;
    if (this.highWater < 1) this.highWater = 1;
    this.sentCount += n;
  }

  enqueue(tlp: Tlp, options?: EnqueueOptions): void {
    if (this.directNow) {
      // Nothing is waiting, so nothing can be passed: the TLP goes now if the link has credits
      // for it, exactly as pump() would send it, without the queue entry and its bookkeeping.
      const dataBytes = tlp.data?.length ?? 0;
      if (this.sink.hasCredits(tlpClass(tlp), dataBytes)) {
        this.sentDirect(1);
        this.sink.sendTlp(tlp, options?.validated === true);
        options?.onSent?.();
        return;
      }
      // No credits: queue it. A pump now would ask the link the same question (and count a
      // second stall); onCreditsAvailable pumps when the answer changes.
      this.push(tlp, options);
      return;
    }
    const q = this.push(tlp, options);
    // In order, only class heads can go, and a pump ran after every change that could let one
    // go (a new head, credits, a drain). Behind a waiting TLP of its class this one is no head,
    // so there is nothing new to try (a stalled write stream queues without a pump per TLP).
    if (this.direct && this.queues[q]!.length > 1) return;
    this.requestPump();
  }

  /**
   * Queues a DMA write as MWr TLPs without building them: while nothing else waits they go to
   * the link straight from `job.data` as far as credits allow, and what is left waits in the
   * posted queue as one entry (with a copy of its bytes: the caller may reuse its buffer once this
   * returns) that the pump sends a TLP at a time, exactly where those TLPs would have been. Only
   * in order and pumped synchronously, and when the link has the fast path; otherwise returns
   * false having done nothing (the caller then enqueues TLPs). Throws ERR_TLP_FIELD for fields
   * memWriteTlp would refuse.
   */
  enqueueMemWrite(job: MemWriteJob): boolean {
    const send = this.sink.sendMemWrites;
    if (!this.direct || send === undefined) return false;
    checkMemWriteFields(job.fields);
    const end = job.address + job.length;
    let a = job.address;
    const alone = this.directNow;
    if (alone) {
      // As many TLPs as the link has credits for, at once (it counts a stall when that is none).
      const sent = send.call(this.sink, job.fields, a, job.data, 0, job.length, job.mps);
      if (sent > 0) {
        this.sentDirect(pieceCount(a, sent, job.mps));
        a += sent;
      }
      if (a === end) {
        job.onSent?.();
        return true;
      }
    }
    const e = postedWriteTraitsInto(job.fields.ro, job.fields.ido, job.fields.requesterId, this.pool.pop() ?? newEntry());
    e.tlp = undefined;
    e.job = job;
    const rest = job.length - (a - job.address);
    if (job.borrowed === true) {
      e.jobStaged = false;
      e.jobData = a === job.address ? job.data : job.data.subarray(a - job.address, job.length);
    } else {
      const staged = this.staging.take(rest);
      e.jobStaged = staged !== undefined;
      if (staged !== undefined) staged.set(a === job.address ? job.data : job.data.subarray(a - job.address, job.length));
      e.jobData = staged ?? job.data.slice(a - job.address, job.length);
    }
    e.jobBase = a;
    e.jobNext = a;
    e.jobEnd = end;
    e.seq = this.seq++;
    e.q = Q_P;
    e.isRead = false;
    e.tc = job.fields.tc & 7;
    e.dataBytes = pieceEnd(a, end, job.mps) - a;
    e.requesterId = job.fields.requesterId;
    e.onSent = job.onSent;
    e.onDropped = job.onDropped;
    e.validated = true;
    e.readyAt = 0;
    const P = this.queues[Q_P];
    P.push(e);
    this.count(e, pieceCount(a, end - a, job.mps));
    // As in enqueue(): when it was alone the link was just asked; behind another posted entry it is no head.
    if (!alone && P.length === 1) this.requestPump();
    return true;
  }

  /**
   * Sends an MRd straight into the link (LinkPort.sendMemRead) if nothing waits in the queues
   * (so it passes nothing) and the link takes it; false otherwise, having done nothing: the
   * caller then enqueues the request as a TLP.
   */
  sendMemRead(f: MemReadFields, tag: number, address: number, byteLength: number): boolean {
    const send = this.sink.sendMemRead;
    if (!this.directNow || send === undefined || !send.call(this.sink, f, tag, address, byteLength)) return false;
    this.sentDirect(1);
    return true;
  }

  /**
   * Sends the completions of a memory read straight from `src` (LinkPort.sendCompletionData) if
   * nothing waits in the queues (so they pass nothing), as many as the link takes; returns how
   * many went (0: none, nothing done): the caller enqueues the rest as TLPs.
   */
  sendCompletionData(f: CompletionFields, src: Uint8Array, parts: CompletionParts): number {
    const send = this.sink.sendCompletionData;
    if (!this.directNow || send === undefined) return 0;
    const sent = send.call(this.sink, f, src, parts);
    if (sent > 0) this.sentDirect(sent);
    return sent;
  }

  /** sendCompletionData for reads one after another (LinkPort.sendCompletionRun): how many reads went, each whole (0 when something waits in the queues). */
  sendCompletionRun(f: CompletionFields, tags: Uint16Array, first: number, count: number, src: Uint8Array, parts: CompletionParts, stride: number): number {
    const send = this.sink.sendCompletionRun;
    if (!this.directNow || send === undefined) return 0;
    const sent = send.call(this.sink, f, tags, first, count, src, parts, stride);
    if (sent > 0) this.sentDirect(sent * parts.count);
    return sent;
  }

  /** Adds `n` waiting TLPs of entry `e` to the counts (negative to remove). */
  private count(e: Entry, n: number): void {
    this.total += n;
    this.classCount[e.q] = this.classCount[e.q]! + n;
    this.tcCount[e.tc] = this.tcCount[e.tc]! + n;
    if (e.passesAllPosted || e.idoId >= 0) this.exceptionCount += n;
    if (this.total > this.highWater) this.highWater = this.total;
  }

  /** Queues the TLP; returns its queue index. */
  private push(tlp: Tlp, options: EnqueueOptions | undefined): number {
    const e = orderingTraitsInto(tlp, options, this.pool.pop() ?? newEntry());
    e.tlp = tlp;
    e.seq = this.seq++;
    e.q = e.cls === 'P' ? Q_P : e.cls === 'NP' ? Q_NP : Q_CPL;
    e.isRead = e.column === 'read';
    e.tc = tlp.tc & 7;
    e.dataBytes = tlp.data?.length ?? 0;
    e.requesterId = tlp.requesterId;
    e.onSent = options?.onSent;
    e.onDropped = options?.onDropped;
    e.validated = options?.validated === true;
    e.readyAt = 0;
    const hb = this.holdBack;
    if (hb !== undefined && hb.probability > 0 && this.rng!.chance(hb.probability)) {
      e.readyAt = this.clock.nowNs() + 1 + this.rng!.int(hb.maxNs);
      this.heldCount++;
    }
    this.queues[e.q]!.push(e);
    this.count(e, 1);
    return e.q;
  }

  /** Sends what may be sent now, honouring the pump mode ('manual' does nothing). */
  requestPump(): void {
    if (this.pumpMode === 'sync') this.pump();
    else if (this.pumpMode === 'defer' && !this.deferScheduled) {
      this.deferScheduled = true;
      this.clock.defer(this.deferredPump);
    }
  }

  /** Sends TLPs until none may go; returns how many were sent. Safe to call re-entrantly. */
  pump(): number {
    if (this.pumping) {
      this.pumpAgain = true;
      return 0;
    }
    this.pumping = true;
    const before = this.sentCount; // one step may send several TLPs of a write job
    try {
      do {
        this.pumpAgain = false;
        while (this.sendOneInner());
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    this.armHoldTimer();
    return this.sentCount - before;
  }

  /** Sends one TLP if one may go (the adversary's choice in adversarial mode); in order, a write job's TLPs that may go. */
  sendOne(): boolean {
    const sent = this.sendOneInner();
    if (!sent) this.armHoldTimer();
    return sent;
  }

  /** Discards everything waiting (link down); each TLP's onDropped gets `error`. */
  clear(error: TlpwireError): void {
    for (const q of this.queues) {
      for (let e = q.shift(); e !== undefined; e = q.shift()) {
        const cb = e.onDropped;
        this.release(e);
        cb?.(error);
      }
    }
    this.total = 0;
    this.classCount.fill(0);
    this.exceptionCount = 0;
    this.tcCount.fill(0);
    this.holdTimer?.cancel();
    this.holdTimer = undefined;
    this.holdTimerAt = Infinity;
  }

  private sendOneInner(): boolean {
    this.minHeldAt = Infinity;
    if (this.total === 0) return false;
    // Only held-back TLPs (adversarial hold-back) have a readyAt after 0: without hold-back the
    // clock is not read at all (a real clock read costs ~100 ns, per TLP).
    const now = this.holdBack === undefined ? 0 : this.clock.nowNs();
    this.chosen = undefined;
    if (this.mode === 'adversarial') this.pickAdversarial(now);
    else this.pickInOrder(now);
    const e = this.chosen as Entry | undefined;
    if (e === undefined) return false;
    if (e.job !== undefined) return this.sendJobPieces(e);
    const q = this.queues[e.q]!;
    if (this.chosenIndex === 0) q.shift();
    else q.removeAt(this.chosenIndex);
    this.count(e, -1);
    this.countReorderings(e);
    this.sentCount++;
    const tlp = e.tlp!;
    const onSent = e.onSent;
    const validated = e.validated;
    this.release(e);
    this.sink.sendTlp(tlp, validated);
    onSent?.();
    return true;
  }

  /**
   * Sends the next TLPs of a write job (chosen at the head of the posted queue); the job stays
   * there until its last. Jobs exist only in order, where the job remains the oldest head that
   * may go while its credits last (sending it changes no other class's credits), so it sends
   * every TLP the link takes now, as that many picks in a row would.
   */
  private sendJobPieces(e: Entry): boolean {
    const job = e.job!;
    const a = e.jobNext;
    const sent = this.sink.sendMemWrites!(job.fields, a, e.jobData!, a - e.jobBase, e.jobEnd - a, job.mps);
    if (sent === 0) {
      // hasCredits said yes just now, so this is a bug.
      throw new TlpwireError('ERR_INTERNAL', 'the link refused a write it had credits for');
    }
    const n = pieceCount(a, sent, job.mps);
    this.count(e, -n);
    this.countReorderings(e, n);
    this.sentCount += n;
    const next = a + sent;
    e.jobNext = next;
    if (next < e.jobEnd) {
      e.dataBytes = pieceEnd(next, e.jobEnd, job.mps) - next;
      return true;
    }
    this.queues[Q_P].shift();
    const onSent = e.onSent;
    this.release(e);
    onSent?.();
    return true;
  }

  /**
   * One pass over all waiting TLPs in queue order (a merge of the three class FIFOs by sequence
   * number), keeping a summary of what came before: which TCs have an earlier posted request,
   * their Requester IDs (for IDO), and the transactions with an earlier completion. A TLP that
   * the summary does not block, that is not held, and that has credits is a candidate;
   * reservoir sampling picks one uniformly without a candidate list.
   */
  private pickAdversarial(now: number): void {
    const [P, NP, C] = this.queues;
    const rng = this.rng!;
    const postedIds = this.postedIds;
    const cplKeys = this.cplKeys;
    postedIds.clear();
    cplKeys.clear();
    let tcQueued = 0;
    for (let tc = 0; tc < 8; tc++) if (this.tcCount[tc]! > 0) tcQueued |= 1 << tc;
    let exceptionsLeft = this.exceptionCount;
    let postedTcMask = 0;
    let reads = 0;
    let npws = 0;
    let cpls = 0;
    let ip = 0;
    let inp = 0;
    let ic = 0;
    let candidates = 0;
    // A class without header credits has no candidate, and its entries never block another
    // class: skip its queue (a starved read stream can hold hundreds of entries).
    const npOpen = NP.length > 0 && this.sink.hasCredits('NP', 0);
    const cplOpen = C.length > 0 && this.sink.hasCredits('Cpl', 0);
    for (;;) {
      const ep = P.at(ip);
      const en = npOpen ? NP.at(inp) : undefined;
      const ec = cplOpen ? C.at(ic) : undefined;
      let e: Entry;
      let index: number;
      if (ep !== undefined && (en === undefined || ep.seq < en.seq) && (ec === undefined || ep.seq < ec.seq)) {
        e = ep;
        index = ip++;
      } else if (en !== undefined && (ec === undefined || en.seq < ec.seq)) {
        e = en;
        index = inp++;
      } else if (ec !== undefined) {
        e = ec;
        index = ic++;
      } else break;
      // Without exceptions left, nothing behind a posted request of its own TC can move.
      if (exceptionsLeft === 0 && (tcQueued & ~postedTcMask) === 0) break;
      if (e.passesAllPosted || e.idoId >= 0) exceptionsLeft--;
      const tcBit = 1 << e.tc;
      let blocked = false;
      if ((postedTcMask & tcBit) !== 0 && !e.passesAllPosted) {
        blocked = e.idoId < 0 || postedIds.has(e.tc * 0x10000 + e.idoId);
      }
      if (!blocked && e.transactionKey >= 0 && cplKeys.has(e.transactionKey)) blocked = true;
      if (!blocked) {
        if (e.readyAt > now) {
          if (e.readyAt < this.minHeldAt) this.minHeldAt = e.readyAt;
        } else if (this.sink.hasCredits(e.cls, e.dataBytes)) {
          candidates++;
          if (candidates === 1 || rng.int(candidates) === 0) {
            this.chosen = e;
            this.chosenIndex = index;
            this.chosenPassedPostedSameTc = (postedTcMask & tcBit) !== 0;
            this.chosenPassedPostedOtherTc = (postedTcMask & ~tcBit) !== 0;
            this.chosenEarlierReads = reads;
            this.chosenEarlierNpw = npws;
            this.chosenEarlierCpl = cpls;
          }
        }
      }
      if (e.q === Q_P) {
        postedTcMask |= tcBit;
        postedIds.add(e.tc * 0x10000 + e.requesterId);
      } else if (e.q === Q_NP) {
        if (e.isRead) reads++;
        else npws++;
      } else {
        cpls++;
        cplKeys.add(e.transactionKey);
      }
    }
    // What the chosen TLP passed in a skipped queue: only "any", which is all counting needs.
    const chosen = this.chosen as Entry | undefined;
    if (chosen !== undefined) {
      if (!npOpen && (NP.peek()?.seq ?? Infinity) < chosen.seq) this.chosenEarlierReads = 1;
      if (!cplOpen && (C.peek()?.seq ?? Infinity) < chosen.seq) this.chosenEarlierCpl = 1;
    }
  }

  /** The oldest class head that has credits and may pass everything queued before it. */
  private pickInOrder(now: number): void {
    const [P, NP, C] = this.queues;
    const hp = P.peek();
    const hn = NP.peek();
    const hc = C.peek();
    let best = this.betterHead(undefined, hp, now);
    best = this.betterHead(best, hn, now);
    best = this.betterHead(best, hc, now);
    if (best === undefined) return;
    this.chosen = best;
    this.chosenIndex = 0;
    // blockedByPosted left the posted flags for `best` only if it ran last for it: recompute.
    if (best.q !== Q_P) this.blockedByPosted(best);
    else {
      this.chosenPassedPostedSameTc = false;
      this.chosenPassedPostedOtherTc = false;
    }
    this.chosenEarlierReads = hn !== undefined && hn !== best && hn.seq < best.seq ? 1 : 0;
    this.chosenEarlierNpw = 0;
    this.chosenEarlierCpl = hc !== undefined && hc !== best && hc.seq < best.seq ? 1 : 0;
  }

  /** `h` if it is older than `best` and may go now, else `best`. */
  private betterHead(best: Entry | undefined, h: Entry | undefined, now: number): Entry | undefined {
    if (h === undefined || (best !== undefined && best.seq < h.seq)) return best;
    if (h.readyAt > now) {
      if (h.readyAt < this.minHeldAt) this.minHeldAt = h.readyAt;
      return best;
    }
    if (!this.sink.hasCredits(h.cls, h.dataBytes)) return best;
    if (h.q !== Q_P && this.blockedByPosted(h)) return best;
    return h;
  }

  /** Whether an earlier posted request holds `h` back; notes which posted requests it passes. */
  private blockedByPosted(h: Entry): boolean {
    const P = this.queues[Q_P];
    let sameTc = false;
    let otherTc = false;
    for (let i = 0; ; i++) {
      const p = P.at(i);
      if (p === undefined || p.seq > h.seq) break;
      if (p.tc !== h.tc) {
        otherTc = true;
        continue;
      }
      if (!h.passesAllPosted && (h.idoId < 0 || h.idoId === p.requesterId)) return true;
      sameTc = true;
    }
    this.chosenPassedPostedSameTc = sameTc;
    this.chosenPassedPostedOtherTc = otherTc;
    return false;
  }

  private countReorderings(e: Entry, n = 1): void {
    const c = this.counts;
    if (this.chosenPassedPostedSameTc) {
      const pass = e.postedPass;
      if (e.q === Q_P) c[pass === 'ro' ? K['posted-ro-passed-posted'] : K['posted-ido-passed-posted']]! += n;
      else if (e.q === Q_NP) {
        if (e.isRead) c[K['read-ido-passed-posted']]! += n;
        else c[pass === 'ro' ? K['npw-ro-passed-posted'] : K['npw-ido-passed-posted']]! += n;
      } else {
        c[
          pass === 'io-cfg-write-cpl'
            ? K['cpl-io-cfg-write-passed-posted']
            : pass === 'ro'
              ? K['cpl-ro-passed-posted']
              : K['cpl-ido-passed-posted']
        ]! += n;
      }
    }
    if (this.chosenPassedPostedOtherTc) c[K['passed-posted-other-tc']]! += n;
    const np = this.chosenEarlierReads + this.chosenEarlierNpw;
    if (np > 0) {
      if (e.q === Q_P) c[K['posted-passed-np']]! += n;
      else if (e.q === Q_CPL) c[K['cpl-passed-np']]! += n;
      else {
        if (e.isRead && this.chosenEarlierReads > 0) c[K['read-passed-read']]! += n;
        if (!e.isRead || this.chosenEarlierNpw > 0) c[K['np-passed-np']]! += n;
      }
    }
    if (this.chosenEarlierCpl > 0) {
      c[e.q === Q_P ? K['posted-passed-cpl'] : e.q === Q_NP ? K['np-passed-cpl'] : K['cpl-passed-cpl']]! += n;
    }
  }

  private armHoldTimer(): void {
    const at = this.minHeldAt;
    if (at === Infinity || at >= this.holdTimerAt) return;
    this.holdTimer?.cancel();
    this.holdTimerAt = at;
    this.holdTimer = this.clock.setTimer(at - this.clock.nowNs(), this.holdTimerFired);
  }

  private release(e: Entry): void {
    e.tlp = undefined;
    e.job = undefined;
    e.jobData = undefined;
    // Jobs leave the posted queue in the order they came, which is the order the ring gave them space.
    if (e.jobStaged) this.staging.giveBack();
    e.jobStaged = false;
    e.onSent = undefined;
    e.onDropped = undefined;
    if (this.pool.length < 1024) this.pool.push(e);
  }
}

function newEntry(): Entry {
  return {
    tlp: undefined,
    seq: 0,
    q: 0,
    cls: 'P',
    column: 'posted',
    isRead: false,
    tc: 0,
    dataBytes: 0,
    requesterId: 0,
    passesAllPosted: false,
    idoId: -1,
    transactionKey: -1,
    postedPass: 'none',
    readyAt: 0,
    validated: false,
    job: undefined,
    jobData: undefined,
    jobStaged: false,
    jobBase: 0,
    jobNext: 0,
    jobEnd: 0,
    onSent: undefined,
    onDropped: undefined,
  };
}
