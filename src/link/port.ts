import type { CompletionFields, CompletionParts, CompletionView, MemReadFields, MemReadRun, MemReadView, MemWriteFields, MemWriteRun, MemWriteView, Tlp, TlpClass } from '../tlp/index.js';

export type LinkState = 'down' | 'training' | 'up';

/** What each partner announces in the training handshake. */
export interface LinkCapabilities {
  /** Largest TLP payload this side accepts, bytes (128..4096). */
  maxPayloadSize: number;
  /** This side can complete/issue 10-bit tags. */
  tag10Bit: boolean;
  /** Free-form feature flags (e.g. "scaled-fc"); unknown ones are ignored. */
  features: readonly string[];
  /** Who this is, for logs: "rc" or "ep" plus a name. */
  role: string;
}

/**
 * The link as the transaction layer sees it. The transaction layer owns the ordering queues and
 * asks the link for credits; the link owns the socket, batching and credit accounting.
 *
 * Sending: check `hasCredits(cls, dataBytes)`, then `sendTlp(tlp)`; TLPs sent in one turn of the
 * event loop (or simulator instant) leave in one transport message. When credits come back
 * `onCreditsAvailable` fires.
 *
 * Receiving: `onTlp` is called for each well-formed TLP, in arrival order. The receiver owns the
 * buffer space the TLP took: it calls `releaseCredits(cls, dataBytes)` once it has consumed the TLP
 * (for a slow receiver that is later, which is what slows the sender down).
 *
 * `dataBytes` is the payload the TLP carries: 0 for reads and for Cpl/Msg without data (a read's
 * length is not data), `tlp.data.length` otherwise; `tlpCredits(tlp)` from src/link computes
 * both arguments. `hasCredits` is also false while the transport is congested, and
 * `onCreditsAvailable` then fires when it drains.
 */
export interface LinkPort {
  readonly state: LinkState;
  /** The partner's capabilities, once the link is up. */
  readonly partner: LinkCapabilities | undefined;
  hasCredits(cls: TlpClass, dataBytes: number): boolean;
  sendTlp(tlp: Tlp): void;
  /**
   * Optional: sendTlp for a TLP that passed validateTlp (a src/tlp builder made it) and was not
   * changed since, so the link need not validate it again (see encodeValidatedTlpInto).
   */
  sendValidatedTlp?(tlp: Tlp): void;
  /**
   * Optional DMA fast paths (src/tlp/fast.ts), straight from a buffer without TLP objects.
   * sendMemWrites sends the MWr TLPs of a whole-DW write (one per aligned `mps` block) while
   * credits allow and returns the bytes sent (0: none could go). sendCompletionData sends the
   * CplD parts of one read from `src`, in order, while hasCredits would say yes, and returns how
   * many went (0: none, nothing counted); the caller then sends the rest sendTlp's way.
   */
  sendMemWrites?(f: MemWriteFields, address: number, src: Uint8Array, srcOffset: number, length: number, mps: number): number;
  sendCompletionData?(f: CompletionFields, src: Uint8Array, parts: CompletionParts): number;
  /** Optional: sendCompletionData for reads `stride` bytes apart with the same parts (Link.sendCompletionRun); how many reads went, each whole. */
  sendCompletionRun?(f: CompletionFields, tags: Uint16Array, first: number, count: number, src: Uint8Array, parts: CompletionParts, stride: number): number;
  /**
   * Optional: copies src[srcOffset, srcOffset + length) to dst[dstOffset…] before the received
   * batch being worked through is done (at once outside one), together with other such copies.
   * For a fast receive handler moving a payload into a buffer that nothing reads before then (a
   * read request's own buffer: its promise settles later). Host memory is never such a buffer.
   */
  copyLater?(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void;
  /** Optional: an MRd straight into the batch; false (nothing sent) when hasCredits would say no. */
  sendMemRead?(f: MemReadFields, tag: number, address: number, byteLength: number): boolean;
  /**
   * Optional fast receive paths: a received MWr/MWr64 or CplD/CplDLk that the fast parser
   * accepts goes here instead of being decoded for onTlp. The bytes and the view are valid only
   * during the call. Returning false declines: the TLP is then decoded and given to onTlp.
   */
  onMemWrite?: ((bytes: Uint8Array, v: MemWriteView) => boolean) | undefined;
  onCompletionData?: ((bytes: Uint8Array, v: CompletionView) => boolean) | undefined;
  /**
   * Optional bulk receive path: consecutive MWr that write one contiguous range with the same
   * header come here together (src/tlp MemWriteRun, valid only during the call). True: they were
   * done, and the link frees their credits. False declines: each goes to onMemWrite or onTlp.
   */
  onMemWriteRun?: ((run: MemWriteRun) => boolean) | undefined;
  /** Optional fast receive path for MRd/MRd64, as onMemWrite (the view is valid during the call). */
  onMemRead?: ((bytes: Uint8Array, v: MemReadView) => boolean) | undefined;
  /**
   * Optional bulk receive path: consecutive MRd that read one contiguous range in equal pieces
   * with the same header but the tag come here together (src/tlp MemReadRun, valid only during
   * the call). Returns how many, from the first, it took (their credits are its to release); the
   * rest go to onMemRead or onTlp one by one.
   */
  onMemReadRun?: ((run: MemReadRun) => number) | undefined;
  /**
   * Optional bulk receive path for read completions (the requester's native scan): takes the CplD
   * items of msg[off, end) from `off` on, as onCompletionData would take them one by one, and
   * returns where it stopped (`off`: it took none). The link counts them and frees their
   * credits; the item it stopped at goes the usual way. Used only while completion credits are
   * infinite; `maxPayloadSize` is the link's.
   */
  onCompletionScan?: ((msg: Uint8Array, off: number, end: number, maxPayloadSize: number) => number) | undefined;
  /**
   * Optional, set by the owner: called once the link is done with a received message (its TLPs
   * handled, their deferred copies done), before anything is sent early. Work that the message's
   * TLPs made due can be done here together instead of TLP by TLP (the requester issues the
   * requests its freed tags allow, in one loop).
   */
  onReceiveEnd?: () => void;
  releaseCredits(cls: TlpClass, dataBytes: number): void;
  onTlp: (tlp: Tlp) => void;
  onCreditsAvailable: () => void;
  onStateChange: (state: LinkState, reason?: string) => void;
}
