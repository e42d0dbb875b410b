/**
 * PCIe flow control (§3.4), as counters: the transmitter's CREDITS_CONSUMED and CREDIT_LIMIT, the
 * receiver's CREDITS_ALLOCATED and CREDITS_RECEIVED, for the six credit types. Counters are
 * modular (8/12 bits unscaled, 10/14 or 12/16 bits with Scaled Flow Control) exactly as in the
 * spec, so the wrap behaviour is the spec's and not an approximation of it.
 *
 * Nothing here knows about sockets or time: the Link feeds it and decides when to send UpdateFC.
 */
import { TlpwireError } from '../core/index.js';
import { DEFAULT_FC_UPDATE_FRACTION } from './constants.js';
import { CREDIT_TYPES, FC, FC_FIELD_BITS, FC_MAX_CREDITS, FC_SCALE_FACTORS } from '../spec/index.js';
import { kindInfoOfByte0, tlpClass, type Tlp, type TlpClass, type TlpKind } from '../tlp/index.js';

export type CreditType = (typeof CREDIT_TYPES)[number];
export type ScaleFactor = (typeof FC_SCALE_FACTORS)[number];
export type CreditValues = Record<CreditType, number>;
export type CreditScales = Record<CreditType, ScaleFactor>;

/** What a receiver advertises for its buffers (the handshake's `fc`). 0 credits = infinite. */
export interface CreditAdvertisement {
  credits: CreditValues;
  scale: CreditScales;
}

/** Index of each credit type in the arrays below: header of class c at 2c, data at 2c + 1. */
const TYPE_INDEX: Readonly<Record<CreditType, number>> = { PH: 0, PD: 1, NPH: 2, NPD: 3, CplH: 4, CplD: 5 };
const CLASS_INDEX: Readonly<Record<TlpClass, number>> = { P: 0, NP: 1, Cpl: 2 };

export function isDataType(t: CreditType): boolean {
  return (TYPE_INDEX[t] & 1) === 1;
}

export function isScaleFactor(n: unknown): n is ScaleFactor {
  return n === 1 || n === 4 || n === 16;
}

/** log2 of a scale factor: the bits it adds to the counters. */
function scaleShift(scale: ScaleFactor): number {
  return scale === 1 ? 0 : scale === 4 ? 2 : 4;
}

/** Counter width in bits for a credit type at a scale (§3.4.2). */
export function counterBits(dataType: boolean, scale: ScaleFactor): number {
  return (dataType ? FC_FIELD_BITS.DATA : FC_FIELD_BITS.HDR) + scaleShift(scale);
}

/** Largest credit value that may be advertised for a type at a scale. */
export function maxCredits(dataType: boolean, scale: ScaleFactor): number {
  return dataType ? FC_MAX_CREDITS.DATA[scale] : FC_MAX_CREDITS.HDR[scale];
}

const DATA_CREDIT_SHIFT = Math.log2(FC.DATA_CREDIT_BYTES);

/** Data credits a payload takes: one per 4 DW (16 bytes), rounded up. */
export function dataCreditsFor(bytes: number): number {
  // Integer arithmetic (bytes is a payload size, at most a few KiB): a division and Math.ceil
  // per TLP cost more.
  return (bytes + FC.DATA_CREDIT_BYTES - 1) >>> DATA_CREDIT_SHIFT;
}

/**
 * The spec's transmitter gate (§3.4.2): a TLP needing `needed` credits may be sent iff
 * (CREDIT_LIMIT − (CREDITS_CONSUMED + needed)) mod 2^bits ≤ 2^bits / 2.
 */
export function mayTransmit(limit: number, consumed: number, needed: number, bits: number): boolean {
  const mask = (1 << bits) - 1;
  return ((limit - (consumed + needed)) & mask) <= 1 << (bits - 1);
}

/** Modular addition on a counter of `bits`. */
export function wrapAdd(a: number, b: number, bits: number): number {
  return (a + b) & ((1 << bits) - 1);
}

const KINDS_WITH_DATA: ReadonlySet<TlpKind> = new Set<TlpKind>([
  'MWr', 'MWr64', 'IOWr', 'CfgWr0', 'CfgWr1', 'CplD', 'CplDLk', 'MsgD',
  'FetchAdd', 'FetchAdd64', 'Swap', 'Swap64', 'CAS', 'CAS64',
]);

/** The flow-control class and payload bytes of a TLP: what hasCredits/releaseCredits take. */
export function tlpCredits(tlp: Tlp): { cls: TlpClass; dataBytes: number } {
  const dataBytes = KINDS_WITH_DATA.has(tlp.kind) ? (tlp.data?.length ?? 0) : 0;
  return { cls: tlpClass(tlp), dataBytes };
}

/**
 * Credits of a TLP from its wire bytes alone (Fmt/Type and TD of DW0 and the byte count), so the
 * sender (after encoding) and the receiver (before decoding, even for a TLP that then fails to
 * decode) account the very same numbers. undefined when byte 0 is not a TLP kind tlpwire carries.
 */
export function rawTlpCredits(bytes: Uint8Array, offset: number, length: number): { cls: TlpClass; dataBytes: number } | undefined {
  const ci = rawTlpClassIndex(bytes, offset, length);
  if (ci < 0) return undefined;
  return { cls: CLASSES[ci]!, dataBytes: rawTlpDataBytes(bytes, offset, length) };
}

export const CLASSES: readonly TlpClass[] = ['P', 'NP', 'Cpl'];

/** Class index (0 P, 1 NP, 2 Cpl) of the TLP in `bytes`, -1 when rawTlpCredits says undefined. The link's per-TLP form: no allocation. */
export function rawTlpClassIndex(bytes: Uint8Array, offset: number, length: number): number {
  if (length < 4) return -1;
  return CLASS_OF_BYTE0[bytes[offset] as number]!;
}

/** Payload bytes that rawTlpCredits counts (call only where rawTlpClassIndex ≥ 0). */
export function rawTlpDataBytes(bytes: Uint8Array, offset: number, length: number): number {
  const hdr = DATA_HEADER_OF_BYTE0[bytes[offset] as number]!;
  if (hdr === 0) return 0;
  const td = ((bytes[offset + 2] as number) & 0x80) !== 0;
  const dataBytes = length - hdr - (td ? 4 : 0);
  return dataBytes > 0 ? dataBytes : 0;
}

/**
 * Per value of byte 0 (Fmt/Type): the class index (-1 for no kind tlpwire carries), and the
 * header size of a kind with data (0 for one without). Tables made from kindInfoOfByte0 once,
 * because the link looks them up for every TLP it sends and receives.
 */
const CLASS_OF_BYTE0 = new Int8Array(256);
const DATA_HEADER_OF_BYTE0 = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  const info = kindInfoOfByte0(b);
  CLASS_OF_BYTE0[b] = info === undefined ? -1 : info.family === 'cpl' ? 2 : info.family === 'msg' || (info.family === 'mem' && info.hasData) ? 0 : 1;
  DATA_HEADER_OF_BYTE0[b] = info === undefined || !info.hasData ? 0 : info.fourDw ? 16 : 12;
}

/** Checks an advertisement's shape and ranges; returns a problem description or undefined. */
export function checkAdvertisement(adv: CreditAdvertisement): string | undefined {
  for (const t of CREDIT_TYPES) {
    const c = adv.credits[t];
    const s = adv.scale[t];
    if (!isScaleFactor(s)) return `${t}: scale ${String(s)} is not 1, 4 or 16`;
    if (!Number.isInteger(c) || c < 0) return `${t}: credits ${String(c)} is not a non-negative integer`;
    const max = maxCredits(isDataType(t), s);
    if (c > max) return `${t}: ${c} credits exceed the maximum ${max} at scale ${s}`;
    if (c % s !== 0) return `${t}: ${c} credits are not a multiple of the scale ${s}`;
  }
  return undefined;
}

/**
 * The advertisement both partners actually use. Scaled Flow Control is active only when both
 * offered it (like the Data Link Feature exchange); otherwise every scale is 1 and finite values
 * are clamped to the unscaled maxima. Both sides run this same function on the same inputs, so
 * they agree on every initial limit without another round trip.
 */
export function effectiveAdvertisement(adv: CreditAdvertisement, scaledActive: boolean): CreditAdvertisement {
  if (scaledActive) return { credits: { ...adv.credits }, scale: { ...adv.scale } };
  const credits = { ...adv.credits };
  const scale: CreditScales = { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 };
  for (const t of CREDIT_TYPES) credits[t] = Math.min(credits[t], maxCredits(isDataType(t), 1));
  return { credits, scale };
}

/**
 * Rounds configured credits down to multiples of their scale and clamps them to the maximum, so a
 * configuration cannot produce an advertisement that checkAdvertisement refuses.
 */
export function normalizeAdvertisement(adv: CreditAdvertisement): CreditAdvertisement {
  const credits = { ...adv.credits };
  for (const t of CREDIT_TYPES) {
    const s = adv.scale[t];
    const c = Math.max(0, Math.floor(credits[t]));
    credits[t] = c === 0 ? 0 : Math.max(s, Math.min(maxCredits(isDataType(t), s), c - (c % s)));
  }
  return { credits, scale: { ...adv.scale } };
}

/** Per-type counter state shared by both directions. */
interface CounterSpec {
  infinite: boolean;
  bits: number;
  shift: number;
  /** The advertised window (credits), for thresholds and diagnostics. */
  window: number;
}

function specsOf(adv: CreditAdvertisement): CounterSpec[] {
  return CREDIT_TYPES.map((t) => {
    const scale = adv.scale[t];
    return {
      infinite: adv.credits[t] === 0,
      bits: counterBits(isDataType(t), scale),
      shift: scaleShift(scale),
      window: adv.credits[t],
    };
  });
}

/**
 * The transmitter side: what the partner's receive buffers allow us to send. Initialised from the
 * partner's effective advertisement; raised by its UpdateFC items.
 */
export class TxCredits {
  private readonly spec: CounterSpec[];
  private readonly limit: number[];
  private readonly consumed: number[];

  constructor(partnerAdv: CreditAdvertisement) {
    this.spec = specsOf(partnerAdv);
    this.limit = CREDIT_TYPES.map((t) => partnerAdv.credits[t]);
    this.consumed = CREDIT_TYPES.map(() => 0);
  }

  /** Whether a TLP of class `cls` with `dataBytes` of payload passes the gate now. */
  canSend(cls: TlpClass, dataBytes: number): boolean {
    return this.canSendClass(CLASS_INDEX[cls], dataBytes);
  }

  /** Whether the partner advertised infinite header and data credits for class index ci: no gate, nothing to count. */
  infiniteClass(ci: number): boolean {
    return this.spec[ci * 2]!.infinite && this.spec[ci * 2 + 1]!.infinite;
  }

  /** canSend by class index (0 P, 1 NP, 2 Cpl). */
  canSendClass(ci: number, dataBytes: number): boolean {
    const h = ci * 2;
    return this.gate(h, 1) && (dataBytes === 0 || this.gate(h + 1, dataCreditsFor(dataBytes)));
  }

  /**
   * How many TLPs of class index ci with `dataBytes` of payload each canSendClass would let
   * through one after another, each consumed before the next is asked for: at most `most`.
   */
  countClass(ci: number, dataBytes: number, most: number): number {
    const h = ci * 2;
    let k = Math.min(most, this.room(h, 1));
    if (dataBytes > 0 && k > 0) k = Math.min(k, this.room(h + 1, dataCreditsFor(dataBytes)));
    return k;
  }

  /** consumeClass for `count` TLPs of `dataBytes` each (call only after countClass said that many). */
  consumeClassN(ci: number, dataBytes: number, count: number): void {
    const h = ci * 2;
    this.add(h, count);
    if (dataBytes > 0) this.add(h + 1, count * dataCreditsFor(dataBytes));
  }

  /** Records a sent TLP (call only after canSend said yes). */
  consume(cls: TlpClass, dataBytes: number): void {
    this.consumeClass(CLASS_INDEX[cls], dataBytes);
  }

  consumeClass(ci: number, dataBytes: number): void {
    const h = ci * 2;
    this.add(h, 1);
    if (dataBytes > 0) this.add(h + 1, dataCreditsFor(dataBytes));
  }

  /**
   * Applies an UpdateFC field (the DLLP's HdrFC/DataFC value: the limit divided by the scale).
   * Returns 'raised' when the limit moved, 'same' when it did not, or a protocol-error message
   * when the new limit is more than half the counter range ahead of what we consumed (§3.4.2
   * Flow Control Protocol Error) or behind it.
   */
  update(type: CreditType, field: number): 'raised' | 'same' | string {
    const i = TYPE_INDEX[type];
    const s = this.spec[i]!;
    if (s.infinite) return 'same'; // §3.4.2: updates for an infinite type are ignored
    const mask = (1 << s.bits) - 1;
    const newLimit = (field << s.shift) & mask;
    const old = this.limit[i]!;
    if (newLimit === old) return 'same';
    const ahead = (newLimit - this.consumed[i]!) & mask;
    if (ahead > 1 << (s.bits - 1)) {
      return `${type} UpdateFC would grant ${ahead} credits beyond those consumed (limit ${newLimit}, consumed ${this.consumed[i]!}, ${s.bits}-bit counters)`;
    }
    if (((newLimit - old) & mask) > 1 << (s.bits - 1)) {
      return `${type} UpdateFC moves the credit limit backwards (from ${old} to ${newLimit})`;
    }
    this.limit[i] = newLimit;
    return 'raised';
  }

  /** Credits left for a type (Infinity for an infinite advertisement). */
  available(type: CreditType): number {
    const i = TYPE_INDEX[type];
    const s = this.spec[i]!;
    if (s.infinite) return Infinity;
    return (this.limit[i]! - this.consumed[i]!) & ((1 << s.bits) - 1);
  }

  /** How many times `per` credits of type i pass the gate, consumed one after another. */
  private room(i: number, per: number): number {
    const s = this.spec[i]!;
    if (s.infinite) return Infinity;
    const half = 1 << (s.bits - 1);
    const available = (this.limit[i]! - this.consumed[i]!) & ((1 << s.bits) - 1);
    // The limit is never more than half the counter range ahead (update() refuses that): then
    // the gate passes exactly while `per` fits in what is left. Otherwise ask the gate once.
    if (available > half || per >= half) return this.gate(i, per) ? 1 : 0;
    return Math.floor(available / per);
  }

  private gate(i: number, needed: number): boolean {
    const s = this.spec[i]!;
    return s.infinite || mayTransmit(this.limit[i]!, this.consumed[i]!, needed, s.bits);
  }

  private add(i: number, n: number): void {
    const s = this.spec[i]!;
    if (!s.infinite) this.consumed[i] = wrapAdd(this.consumed[i]!, n, s.bits);
  }
}

/**
 * The receiver side: our buffers as the partner sees them. CREDITS_RECEIVED is checked against
 * what we advertised (the receiver overflow check of §3.4.2); `release` moves
 * CREDITS_ALLOCATED; `takeUpdate` yields the UpdateFC fields that changed since the last one.
 */
export class RxCredits {
  private readonly spec: CounterSpec[];
  private readonly allocated: number[];
  private readonly advertised: number[];
  private readonly received: number[];
  /** Credits received and not yet released, as plain integers (catches double release). */
  private readonly held: number[];
  /** Credits released since the last UpdateFC, as plain integers. */
  private readonly freed: number[];
  private readonly threshold: number[];

  /** `urgentFraction`: an update is urgent once this fraction of a window has been freed. */
  constructor(ownAdv: CreditAdvertisement, urgentFraction = DEFAULT_FC_UPDATE_FRACTION) {
    this.spec = specsOf(ownAdv);
    this.allocated = CREDIT_TYPES.map((t) => ownAdv.credits[t]);
    this.advertised = CREDIT_TYPES.map((t) => ownAdv.credits[t]);
    this.received = CREDIT_TYPES.map(() => 0);
    this.held = CREDIT_TYPES.map(() => 0);
    this.freed = CREDIT_TYPES.map(() => 0);
    this.threshold = this.spec.map((s) => Math.max(1 << s.shift, Math.floor(s.window * urgentFraction)));
  }

  /**
   * Accounts a received TLP. Returns undefined, or the credit type the partner overran (it sent
   * beyond what we advertised: a protocol error).
   */
  receive(cls: TlpClass, dataBytes: number): CreditType | undefined {
    return this.receiveClass(CLASS_INDEX[cls], dataBytes);
  }

  /** receive by class index (0 P, 1 NP, 2 Cpl). */
  receiveClass(ci: number, dataBytes: number): CreditType | undefined {
    const h = ci * 2;
    if (!this.take(h, 1)) return CREDIT_TYPES[h];
    if (dataBytes > 0 && !this.take(h + 1, dataCreditsFor(dataBytes))) return CREDIT_TYPES[h + 1];
    return undefined;
  }

  /**
   * Credits of type index i (CREDIT_TYPES order) the partner may still send, Infinity when they
   * are infinite: receiveClass passes exactly while what TLPs need fits in it. (0 in a state the
   * protocol never reaches, the advertised limit more than half the counter range ahead.)
   */
  roomOf(i: number): number {
    const s = this.spec[i]!;
    if (s.infinite) return Infinity;
    const room = (this.advertised[i]! - this.received[i]!) & ((1 << s.bits) - 1);
    return room > 1 << (s.bits - 1) ? 0 : room;
  }

  /**
   * receiveClass for `count` TLPs of class index ci with `dataCredits` data credits in all (the
   * sum of dataCreditsFor over them), when roomOf said they fit: returns what receiveClass would
   * for the last of them.
   */
  receiveClassN(ci: number, count: number, dataCredits: number): CreditType | undefined {
    const h = ci * 2;
    if (!this.take(h, count)) return CREDIT_TYPES[h];
    if (dataCredits > 0 && !this.take(h + 1, dataCredits)) return CREDIT_TYPES[h + 1];
    return undefined;
  }

  /** The consumer freed the buffer space of a TLP. Throws on releasing more than was received. */
  /** Returns whether finite credits were freed (an update may be due); infinite ones only balance the books. */
  release(cls: TlpClass, dataBytes: number): boolean {
    const h = CLASS_INDEX[cls] * 2;
    const d = dataBytes > 0 ? dataCreditsFor(dataBytes) : 0;
    if (this.held[h]! < 1 || this.held[h + 1]! < d) {
      throw new TlpwireError(
        'ERR_INTERNAL',
        `releaseCredits(${cls}, ${dataBytes}) releases more than was received and not yet released (${CREDIT_TYPES[h]} ${this.held[h]!}, ${CREDIT_TYPES[h + 1]} ${this.held[h + 1]!})`,
      );
    }
    this.free(h, 1);
    if (d > 0) this.free(h + 1, d);
    return !this.spec[h]!.infinite || (d > 0 && !this.spec[h + 1]!.infinite);
  }

  /**
   * `release` for `headers` TLPs of class index ci (0 P, 1 NP, 2 Cpl) holding `dataCredits` data
   * credits in all (the sum of dataCreditsFor over them). Throws as release does.
   */
  releaseClass(ci: number, headers: number, dataCredits: number): void {
    const h = ci * 2;
    if (this.held[h]! < headers || this.held[h + 1]! < dataCredits) {
      throw new TlpwireError(
        'ERR_INTERNAL',
        `releasing ${headers} ${CREDIT_TYPES[h]} and ${dataCredits} ${CREDIT_TYPES[h + 1]} credits, more than received and not yet released (${this.held[h]!}, ${this.held[h + 1]!})`,
      );
    }
    this.free(h, headers);
    if (dataCredits > 0) this.free(h + 1, dataCredits);
  }

  /** True when enough has been freed that the partner may be waiting for it. */
  urgent(): boolean {
    for (let i = 0; i < 6; i++) if (this.freed[i]! >= this.threshold[i]!) return true;
    return false;
  }

  /**
   * The UpdateFC fields (limit divided by the scale, 8/12 bits as in the DLLP) that changed since
   * the last call, and marks them advertised. undefined when nothing changed.
   */
  takeUpdate(): Partial<CreditValues> | undefined {
    let out: Partial<CreditValues> | undefined;
    for (let i = 0; i < 6; i++) {
      const field = this.pendingField(i);
      if (field === undefined) continue;
      const s = this.spec[i]!;
      (out ??= {})[CREDIT_TYPES[i]!] = field;
      this.advertised[i] = (field << s.shift) & ((1 << s.bits) - 1);
      this.freed[i] = 0;
    }
    return out;
  }

  /** Credits received and not yet released, per type (for tests and diagnostics). */
  heldCredits(type: CreditType): number {
    return this.held[TYPE_INDEX[type]]!;
  }

  private pendingField(i: number): number | undefined {
    const s = this.spec[i]!;
    if (s.infinite) return undefined;
    // Scaled: only whole scale units can be advertised; the remainder waits for more releases.
    const field = this.allocated[i]! >>> s.shift;
    const limit = (field << s.shift) & ((1 << s.bits) - 1);
    return limit === this.advertised[i] ? undefined : field;
  }

  private take(i: number, n: number): boolean {
    const s = this.spec[i]!;
    this.held[i] = this.held[i]! + n;
    if (s.infinite) return true;
    if (!mayTransmit(this.advertised[i]!, this.received[i]!, n, s.bits)) return false;
    this.received[i] = wrapAdd(this.received[i]!, n, s.bits);
    return true;
  }

  private free(i: number, n: number): void {
    const s = this.spec[i]!;
    this.held[i] = this.held[i]! - n;
    if (s.infinite) return;
    this.allocated[i] = wrapAdd(this.allocated[i]!, n, s.bits);
    this.freed[i] = this.freed[i]! + n;
  }
}
