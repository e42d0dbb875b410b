/**
 * A fake LinkPort pair for transaction-layer tests: two ends joined through a VirtualClock, with
 * a fixed one-way latency, FIFO delivery and flow-control credits per class (a header count and
 * data in 16-byte units, Infinity for "infinite"). Credits come back one latency after the
 * receiver releases them. It checks the transaction layer's side of the contract: sending
 * without credits, or releasing more than was received, throws out of the clock.
 *
 * This is a test double, not the real link (src/link).
 */
import type { LinkCapabilities, LinkPort, LinkState } from '../../src/link/index.js';
import type { VirtualClock } from '../../src/sim/index.js';
import type { Tlp, TlpClass } from '../../src/tlp/index.js';

export interface ClassCredits {
  hdr: number;
  /** 16-byte data credits. */
  data: number;
}

export type CreditLimits = Record<TlpClass, ClassCredits>;

const INFINITE: ClassCredits = { hdr: Infinity, data: Infinity };

export const DEFAULT_FAKE_CREDITS: CreditLimits = {
  P: { hdr: 32, data: 512 },
  NP: { hdr: 32, data: 32 },
  // Endpoints and root complexes advertise infinite completion credits (SPEC-FACTS).
  Cpl: INFINITE,
};

export interface FakeLinkSideOptions {
  /** Buffers this side advertises, i.e. what its partner may have in flight to it. */
  credits?: Partial<CreditLimits>;
  caps?: Partial<LinkCapabilities>;
}

export interface FakeLinkOptions {
  latencyNs?: number;
  a?: FakeLinkSideOptions;
  b?: FakeLinkSideOptions;
  /** Keep every sent TLP in `sent` (off for big transfers). */
  record?: boolean;
}

function caps(role: string, c?: Partial<LinkCapabilities>): LinkCapabilities {
  return { maxPayloadSize: 4096, tag10Bit: false, features: [], role, ...c };
}

function dataCredits(bytes: number): number {
  return Math.ceil(bytes / 16);
}

export class FakeLinkPort implements LinkPort {
  state: LinkState = 'up';
  partner: LinkCapabilities | undefined;
  peer!: FakeLinkPort;
  readonly myCaps: LinkCapabilities;
  /** What the peer still lets us send. */
  readonly avail: CreditLimits;
  /** TLPs received and not yet released, per class (headers). */
  readonly unreleased: Record<TlpClass, number> = { P: 0, NP: 0, Cpl: 0 };
  readonly sent: Tlp[] = [];
  sentCount = 0;
  inFlight = 0;
  maxInFlight = 0;
  onTlp: (tlp: Tlp) => void = () => {};
  onCreditsAvailable: () => void = () => {};
  onStateChange: (state: LinkState, reason?: string) => void = () => {};
  /** Drop instead of delivering (for "the completion never comes" tests). */
  dropIf: ((tlp: Tlp) => boolean) | undefined;
  /** Rewrite a TLP on its way (for malformed-completion tests). */
  mutate: ((tlp: Tlp) => Tlp) | undefined;

  constructor(
    private readonly clock: VirtualClock,
    private readonly latencyNs: number,
    myCaps: LinkCapabilities,
    private readonly record: boolean,
  ) {
    this.myCaps = myCaps;
    this.avail = { P: { ...INFINITE }, NP: { ...INFINITE }, Cpl: { ...INFINITE } };
  }

  hasCredits(cls: TlpClass, dataBytes: number): boolean {
    const a = this.avail[cls];
    return this.state === 'up' && a.hdr >= 1 && a.data >= dataCredits(dataBytes);
  }

  sendTlp(tlp: Tlp): void {
    const cls = classOf(tlp);
    const bytes = tlp.data?.length ?? 0;
    if (!this.hasCredits(cls, bytes)) throw new Error(`credit violation: ${tlp.kind} sent without ${cls} credits`);
    this.avail[cls].hdr -= 1;
    this.avail[cls].data -= dataCredits(bytes);
    this.sentCount++;
    if (this.record) this.sent.push(tlp);
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    this.clock.setTimer(this.latencyNs, () => {
      this.inFlight--;
      const peer = this.peer;
      if (peer.state !== 'up') return;
      if (this.dropIf?.(tlp) === true) {
        // Lost on the wire: the buffer it would have taken is returned at once.
        this.returnCredits(cls, bytes);
        return;
      }
      const t = this.mutate === undefined ? tlp : this.mutate(tlp);
      peer.unreleased[cls]++;
      peer.onTlp(t);
    });
  }

  releaseCredits(cls: TlpClass, dataBytes: number): void {
    if (this.unreleased[cls] <= 0) throw new Error(`released ${cls} credits that were never received`);
    this.unreleased[cls]--;
    this.clock.setTimer(this.latencyNs, () => this.peer.returnCredits(cls, dataBytes));
  }

  /** Sets what the peer lets us send from now on (tests starve or open a class). */
  setAvailable(cls: TlpClass, credits: ClassCredits): void {
    this.avail[cls] = { ...credits };
    this.onCreditsAvailable();
  }

  takeDown(reason: string): void {
    for (const side of [this, this.peer]) {
      side.state = 'down';
      side.onStateChange('down', reason);
    }
  }

  private returnCredits(cls: TlpClass, dataBytes: number): void {
    this.avail[cls].hdr += 1;
    this.avail[cls].data += dataCredits(dataBytes);
    this.onCreditsAvailable();
  }
}

function classOf(tlp: Tlp): TlpClass {
  switch (tlp.kind) {
    case 'MWr':
    case 'MWr64':
    case 'Msg':
    case 'MsgD':
      return 'P';
    case 'Cpl':
    case 'CplD':
    case 'CplLk':
    case 'CplDLk':
      return 'Cpl';
    default:
      return 'NP';
  }
}

export function createFakeLinkPair(clock: VirtualClock, options: FakeLinkOptions = {}): [FakeLinkPort, FakeLinkPort] {
  const latency = options.latencyNs ?? 1000;
  const record = options.record ?? false;
  const a = new FakeLinkPort(clock, latency, caps('rc', options.a?.caps), record);
  const b = new FakeLinkPort(clock, latency, caps('ep', options.b?.caps), record);
  a.peer = b;
  b.peer = a;
  a.partner = b.myCaps;
  b.partner = a.myCaps;
  // Each side may send what the other side advertises.
  const bBuffers = { ...DEFAULT_FAKE_CREDITS, ...options.b?.credits };
  const aBuffers = { ...DEFAULT_FAKE_CREDITS, ...options.a?.credits };
  for (const cls of ['P', 'NP', 'Cpl'] as const) {
    a.avail[cls] = { ...bBuffers[cls] };
    b.avail[cls] = { ...aBuffers[cls] };
  }
  return [a, b];
}
