/**
 * The transaction layer of one side of a link: the ordering queues in front of the link, a
 * requester and a completer behind them.
 *
 * Transmit: requests and completions go into the ordering queues, which send when the link
 * has credits (pumped on enqueue and on `onCreditsAvailable`).
 * Receive: completions go to the requester, requests to the completer. The receive buffer a TLP
 * took (its link credits) is released once it is consumed: at once for completions and posted
 * requests, and for a non-posted request only when its completion has been handed to the link,
 * so a side that cannot send completions stops accepting reads instead of queueing without bound.
 */
import {
  Counters,
  TlpwireError,
  bulkCopy,
  errorMessage,
  silentLogger,
  type Clock,
  type Logger,
  type Rng,
} from '../core/index.js';
import type { LinkPort, LinkState } from '../link/index.js';
import { tlpClass, type CompletionView, type CplTlp, type MemReadRun, type MemReadView, type MemWriteRun, type MemWriteView, type MsgTlp, type Tlp } from '../tlp/index.js';
import { Completer } from './completer.js';
import { OrderingQueues, type HoldBackOptions, type OrderingMode, type TlpSink } from './ordering-queues.js';
import { Requester, type CompletionErrorEvent, type CplTimeoutConfig, type RequesterStats } from './requester.js';

export interface TransactionConfig {
  /** This function's Requester ID (bus << 8 | device << 3 | function). */
  requesterId: number;
  /** Completer ID for memory and I/O completions; default requesterId. */
  completerId?: number;
  /** Max_Payload_Size, bytes (128..4096). */
  maxPayloadSize: number;
  /** Max_Read_Request_Size, bytes (128..4096). */
  maxReadRequestSize: number;
  /** Read Completion Boundary, 64 or 128. */
  rcb: number;
  cplTimeout: CplTimeoutConfig;
  /** 10-bit tags when the link partner supports them too. */
  tag10Bit: boolean;
  maxOutstandingTags?: number;
  /** Set IDO on our completions. */
  idoCompletions?: boolean;
}

/**
 * Defaults for a link over sockets: a completion timeout of 260 ms (range C, 0b1001): socket
 * links see millisecond-scale stalls that the 50 µs..50 ms default range would turn into errors.
 */
export const DEFAULT_TRANSACTION_CONFIG: Readonly<TransactionConfig> = {
  requesterId: 0,
  maxPayloadSize: 256,
  maxReadRequestSize: 512,
  rcb: 64,
  cplTimeout: { range: 0b1001, point: 0 },
  tag10Bit: true,
};

export type OrderingConfig =
  | { mode: 'in-order' }
  | {
      mode: 'adversarial';
      holdBack?: HoldBackOptions;
      /** Also split read completions at random legal points (default true). */
      randomCompletionSplits?: boolean;
    };

export interface TransactionLayerOptions {
  clock: Clock;
  /** Needed for adversarial ordering. */
  rng?: Rng;
  logger?: Logger;
  counters?: Counters;
  config: TransactionConfig;
  /** Default in order. */
  ordering?: OrderingConfig;
}

export interface TransactionStats {
  requester: RequesterStats;
  queued: { P: number; NP: number; Cpl: number };
  queueHighWater: number;
  tlpsSent: number;
  tlpsReceived: number;
  counters: Record<string, number>;
}

export class TransactionLayer {
  readonly requester: Requester;
  readonly completer: Completer;
  readonly queues: OrderingQueues;
  readonly counters: Counters;
  private readonly log: Logger;
  private readonly config: TransactionConfig;
  private received = 0;
  /** The posted request being handled: whether its credits went back, and its payload size. */
  private postedReleased = true;
  private postedBytes = 0;
  private readonly releasePosted = (): void => {
    if (this.postedReleased) return;
    this.postedReleased = true;
    this.link.releaseCredits('P', this.postedBytes);
  };
  /** Link state changes, after the layer has reacted to them. */
  onLinkState: (state: LinkState, reason?: string) => void = () => {};

  constructor(
    private readonly link: LinkPort,
    options: TransactionLayerOptions,
  ) {
    this.config = options.config;
    this.log = (options.logger ?? silentLogger).child({ layer: 'transaction' });
    this.counters = options.counters ?? new Counters();
    const ordering = options.ordering ?? { mode: 'in-order' };
    const mode: OrderingMode = ordering.mode;
    const sink: TlpSink = {
      hasCredits: (cls, bytes) => link.state === 'up' && link.hasCredits(cls, bytes),
      sendTlp: (tlp, validated) => {
        if (validated === true && link.sendValidatedTlp !== undefined) link.sendValidatedTlp(tlp);
        else link.sendTlp(tlp);
      },
    };
    // The DMA fast paths, when the link has them (a Link does; test doubles need not).
    if (link.sendMemWrites !== undefined) sink.sendMemWrites = link.sendMemWrites.bind(link);
    if (link.sendMemRead !== undefined) sink.sendMemRead = link.sendMemRead.bind(link);
    if (link.sendCompletionData !== undefined) sink.sendCompletionData = link.sendCompletionData.bind(link);
    if (link.sendCompletionRun !== undefined) sink.sendCompletionRun = link.sendCompletionRun.bind(link);
    const copyLater = link.copyLater?.bind(link);
    const scan = bulkCopy().scanCompletions;
    this.queues = new OrderingQueues(
      sink,
      {
        mode,
        clock: options.clock,
        ...(options.rng === undefined ? {} : { rng: options.rng }),
        ...(ordering.mode === 'adversarial' && ordering.holdBack !== undefined ? { holdBack: ordering.holdBack } : {}),
      },
    );
    this.requester = new Requester(this.queues, {
      clock: options.clock,
      logger: this.log.child({ part: 'requester' }),
      counters: this.counters,
      config: {
        requesterId: this.config.requesterId,
        maxPayloadSize: this.config.maxPayloadSize,
        maxReadRequestSize: this.config.maxReadRequestSize,
        rcb: this.config.rcb,
        cplTimeout: this.config.cplTimeout,
        tag10Bit: this.config.tag10Bit,
        ...(this.config.maxOutstandingTags === undefined ? {} : { maxOutstandingTags: this.config.maxOutstandingTags }),
      },
      ...(copyLater === undefined ? {} : { copyLater }),
      // Requests for tags that a received batch's completions free go out in one loop at its end.
      deferIssue: link.onReceiveEnd !== undefined,
      // The native completion scan, when the link takes one (a Link does) and the addon has it.
      ...(scan === undefined || !('onCompletionScan' in link) ? {} : { scanCompletions: scan }),
    });
    const randomSplits = ordering.mode === 'adversarial' && ordering.randomCompletionSplits !== false;
    this.completer = new Completer(this.queues, {
      completerId: this.config.completerId ?? this.config.requesterId,
      rcb: this.config.rcb,
      maxPayloadSize: this.config.maxPayloadSize,
      logger: this.log.child({ part: 'completer' }),
      counters: this.counters,
      ...(randomSplits && options.rng !== undefined ? { rng: options.rng } : {}),
      idoCompletions: this.config.idoCompletions ?? false,
    });
    link.onTlp = (tlp) => this.receive(tlp);
    link.onMemWrite = (bytes, v) => this.receiveMemWrite(bytes, v);
    link.onCompletionData = (bytes, v) => this.receiveCompletionData(bytes, v);
    if (this.requester.scansCompletions) link.onCompletionScan = (msg, off, end, mps) => this.receiveCompletionScan(msg, off, end, mps);
    link.onMemWriteRun = (run) => this.receiveMemWriteRun(run);
    link.onMemRead = (bytes, v) => this.receiveMemRead(bytes, v);
    // (With random completion splits the completer answers reads one by one: no runs then.)
    if (!(randomSplits && options.rng !== undefined)) link.onMemReadRun = (run) => this.receiveMemReadRun(run);
    if (link.onReceiveEnd !== undefined) link.onReceiveEnd = () => this.requester.issueDeferred();
    link.onCreditsAvailable = () => this.queues.requestPump();
    link.onStateChange = (state, reason) => this.linkStateChanged(state, reason);
    if (link.state === 'up') this.partnerKnown();
  }

  /** Reported completion errors (unexpected, malformed, poisoned, timeout), for AER. */
  set onCompletionError(fn: (event: CompletionErrorEvent) => void) {
    this.requester.onCompletionError = fn;
  }

  /** Received messages (INTx, PME, ERR_*, vendor-defined). */
  set onMessage(fn: (msg: MsgTlp) => void) {
    this.completer.onMessage = fn;
  }

  /** New Requester and Completer ID (an endpoint's captured bus/device number). */
  setId(id: number): void {
    this.requester.setRequesterId(id);
    this.completer.setCompleterId(id);
  }

  stats(): TransactionStats {
    const q = this.queues.stats();
    return {
      requester: this.requester.stats(),
      queued: q.queued,
      queueHighWater: q.highWater,
      tlpsSent: q.sent,
      tlpsReceived: this.received,
      counters: this.counters.snapshot(),
    };
  }

  private partnerKnown(): void {
    const partner = this.link.partner;
    this.requester.setLinkPartner(partner);
    this.completer.setMaxPayloadSize(
      Math.min(this.config.maxPayloadSize, partner?.maxPayloadSize ?? this.config.maxPayloadSize),
    );
  }

  private linkStateChanged(state: LinkState, reason?: string): void {
    if (state === 'up') {
      this.partnerKnown();
      this.queues.requestPump();
    } else if (state === 'down') {
      const error = new TlpwireError('ERR_LINK_DOWN', `link down${reason === undefined ? '' : `: ${reason}`}`);
      this.queues.clear(error);
      this.requester.abortAll(error);
    }
    this.onLinkState(state, reason);
  }

  private receive(tlp: Tlp): void {
    this.received++;
    const cls = tlpClass(tlp);
    const bytes = tlp.data?.length ?? 0;
    if (cls === 'Cpl') {
      try {
        this.requester.handleCompletion(tlp as CplTlp);
      } catch (e) {
        this.handlerFailed(tlp, e);
      }
      this.link.releaseCredits(cls, bytes);
      return;
    }
    if (cls === 'P') {
      // Posted requests are consumed before handleRequest returns, so their release needs no
      // closure of its own: one bound function releases the TLP being handled, at most once.
      // (Saved and restored in case a handler makes another TLP arrive re-entrantly.)
      const outerReleased = this.postedReleased;
      const outerBytes = this.postedBytes;
      this.postedReleased = false;
      this.postedBytes = bytes;
      try {
        this.completer.handleRequest(tlp, this.releasePosted);
      } catch (e) {
        this.handlerFailed(tlp, e);
      }
      this.releasePosted();
      this.postedReleased = outerReleased;
      this.postedBytes = outerBytes;
      return;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.link.releaseCredits(cls, bytes);
    };
    try {
      this.completer.handleRequest(tlp, release);
    } catch (e) {
      this.handlerFailed(tlp, e);
      release();
    }
  }

  /** receive() for an MWr that the link parsed without a TLP object; false hands it back to be decoded. */
  private receiveMemWrite(bytes: Uint8Array, v: MemWriteView): boolean {
    let taken = true;
    try {
      taken = this.completer.handleMemWrite(bytes, v);
    } catch (e) {
      this.handlerFailed(v.wide ? 'MWr64' : 'MWr', e);
    }
    if (!taken) return false;
    this.received++;
    this.link.releaseCredits('P', v.dataLength);
    return true;
  }

  /** receive() for an MRd that the link parsed without a TLP object. */
  private receiveMemRead(bytes: Uint8Array, v: MemReadView): boolean {
    this.received++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.link.releaseCredits('NP', 0);
    };
    try {
      this.completer.handleMemRead(bytes, v, release);
    } catch (e) {
      this.handlerFailed(v.wide ? 'MRd64' : 'MRd', e);
      release();
    }
    return true;
  }

  /**
   * receive() for a run of MRd: how many, from the first, the completer took (the rest come back
   * one by one). Each taken read frees its credits once its last completion has left.
   */
  private receiveMemReadRun(run: MemReadRun): number {
    let taken: number;
    try {
      taken = this.completer.handleMemReadRun(run, this.releaseRead);
    } catch (e) {
      // A bug of ours, as receiveMemRead handles one: the read being answered is dropped (its
      // credits freed, its requester times out); those before it were taken, those after it
      // come one by one.
      this.handlerFailed(run.wide ? 'MRd64' : 'MRd', e);
      taken = Math.min(run.count, this.completer.runTaken + 1);
      this.releaseRead();
    }
    this.received += taken;
    return taken;
  }

  /** Frees one memory read's credits (the read-run path calls it once per read it took). */
  private readonly releaseRead = (): void => this.link.releaseCredits('NP', 0);

  /** receive() for a run of MWr (the link frees their credits when taken); false hands them back one by one. */
  private receiveMemWriteRun(run: MemWriteRun): boolean {
    let taken = true;
    try {
      taken = this.completer.handleMemWriteRun(run);
    } catch (e) {
      this.handlerFailed(run.wide ? 'MWr64' : 'MWr', e);
    }
    if (taken) this.received += run.count;
    return taken;
  }

  /** receive() for a CplD that the link parsed without a TLP object; false hands it back to be decoded. */
  private receiveCompletionData(bytes: Uint8Array, v: CompletionView): boolean {
    let taken = true;
    try {
      taken = this.requester.handleCompletionData(bytes, v);
    } catch (e) {
      this.handlerFailed(v.locked ? 'CplDLk' : 'CplD', e);
    }
    if (!taken) return false;
    this.received++;
    this.link.releaseCredits('Cpl', v.dataLength);
    return true;
  }

  /** receive() for the completions the requester's native scan takes (the link frees their credits); returns where it stopped. */
  private receiveCompletionScan(msg: Uint8Array, off: number, end: number, maxPayloadSize: number): number {
    const to = this.requester.scanCompletions(msg, off, end, maxPayloadSize);
    this.received += this.requester.lastScanCount;
    return to;
  }

  private handlerFailed(tlp: Tlp | string, e: unknown): void {
    // Input from the other side never crashes the process: count, log, carry on.
    this.counters.add('rx.handlerError');
    this.log.error({ kind: typeof tlp === 'string' ? tlp : tlp.kind, err: errorMessage(e) }, 'handling a received TLP failed');
  }
}
