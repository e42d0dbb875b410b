import type { Tlp, TlpClass } from '../tlp/index.js';

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
  releaseCredits(cls: TlpClass, dataBytes: number): void;
  onTlp: (tlp: Tlp) => void;
  onCreditsAvailable: () => void;
  onStateChange: (state: LinkState, reason?: string) => void;
}
