/**
 * The PCIe ordering table (§2.4.1, src/spec ORDERING_TABLE) as a predicate: may a later TLP be
 * sent before an earlier one that is still waiting? The queues precompute the same answers per
 * entry (see `orderingTraits`) so that choosing the next TLP is one pass over the queue.
 */
import { ORDERING_TABLE } from '../spec/index.js';
import { KIND_INFO, TLP_KINDS, tlpClass, type Tlp, type TlpClass } from '../tlp/index.js';

export type OrderingColumn = keyof typeof ORDERING_TABLE;

export function orderingColumnOf(tlp: Tlp): OrderingColumn {
  const cls = tlpClass(tlp);
  if (cls === 'P') return 'posted';
  if (cls === 'Cpl') return 'completion';
  return KIND_INFO[tlp.kind].hasData ? 'npWithData' : 'read';
}

/** What the queue must know about a TLP that the TLP itself does not carry. */
export interface OrderingHints {
  /**
   * This Completion answers an I/O or Configuration Write (D2b lets it pass Posted Requests).
   * Only the completer that built it knows; without the hint a Cpl is treated conservatively.
   */
  ioCfgWriteCompletion?: boolean;
}

/**
 * The ID that the IDO exception compares with the earlier Posted Request's Requester ID: a
 * request's own Requester ID, a Completion's Completer ID (D2b).
 */
export function idoIdOf(tlp: Tlp): number {
  return tlp.kind === 'Cpl' || tlp.kind === 'CplD' || tlp.kind === 'CplLk' || tlp.kind === 'CplDLk'
    ? tlp.completerId
    : tlp.requesterId;
}

/** Why a TLP may pass a Posted Request of its own TC, if it can at all. */
export type PostedPass = 'none' | 'ro' | 'ido' | 'io-cfg-write-cpl';

/** Per-TLP answers to the table, computed once when a TLP is queued. */
export interface OrderingTraits {
  cls: TlpClass;
  column: OrderingColumn;
  /** Passes every earlier Posted Request of its TC (RO where the row allows it, or D2b's I/O/config write completion). */
  passesAllPosted: boolean;
  /** With IDO where the row allows it: the ID that must differ from the Posted Request's Requester ID; -1 otherwise. */
  idoId: number;
  /** Completions: Requester ID and Tag, which no other Completion of the same transaction may pass; -1 otherwise. */
  transactionKey: number;
  /** Which exception lets it pass a same-TC Posted Request (for counters). */
  postedPass: PostedPass;
}

export function transactionKey(requesterId: number, tag: number): number {
  // Tags are at most 10 bits (§2.2.6.2): the key is exact.
  return requesterId * 1024 + tag;
}

export function orderingTraits(tlp: Tlp, hints?: OrderingHints): OrderingTraits {
  return orderingTraitsInto(tlp, hints, {
    cls: 'P',
    column: 'posted',
    passesAllPosted: false,
    idoId: -1,
    transactionKey: -1,
    postedPass: 'none',
  });
}

/** What the table says about a kind, independent of the TLP's attributes: looked up once per queued TLP. */
interface KindRules {
  cls: TlpClass;
  column: OrderingColumn;
  /** RO lets it pass a Posted Request of its TC. */
  roAllowed: boolean;
  /** Being an I/O or configuration write completion lets it pass one (D2b). */
  ioCfgAllowed: boolean;
  /** Completions of one transaction must not pass each other. */
  keyed: boolean;
}

const KIND_RULES: Readonly<Record<string, KindRules>> = Object.fromEntries(
  TLP_KINDS.map((kind) => {
    const cls = tlpClass({ kind } as Tlp);
    const column: OrderingColumn =
      cls === 'P' ? 'posted' : cls === 'Cpl' ? 'completion' : KIND_INFO[kind].hasData ? 'npWithData' : 'read';
    const rule = ORDERING_TABLE[column].posted;
    const rules: KindRules = {
      cls,
      column,
      roAllowed: rule === 'no-unless-ro-or-ido' || rule === 'no-unless-ro-ido-or-io-cfg-write-cpl',
      ioCfgAllowed: rule === 'no-unless-ro-ido-or-io-cfg-write-cpl',
      keyed: ORDERING_TABLE[column].completion === 'may-unless-same-transaction',
    };
    return [kind, rules];
  }),
);

/** orderingTraits written into `out` (the queues reuse their entries; no allocation per TLP). */
export function orderingTraitsInto<T extends OrderingTraits>(tlp: Tlp, hints: OrderingHints | undefined, out: T): T {
  const k = KIND_RULES[tlp.kind]!;
  const ioCfg = k.ioCfgAllowed && hints?.ioCfgWriteCompletion === true;
  const ro = k.roAllowed && tlp.ro;
  // Every "no-unless" rule of the Posted column admits IDO with different IDs.
  const idoId = tlp.ido ? idoIdOf(tlp) : -1;
  out.cls = k.cls;
  out.column = k.column;
  out.passesAllPosted = ro || ioCfg;
  out.idoId = idoId;
  out.transactionKey = k.keyed ? transactionKey(tlp.requesterId, tlp.tag) : -1;
  out.postedPass = ioCfg ? 'io-cfg-write-cpl' : ro ? 'ro' : idoId >= 0 ? 'ido' : 'none';
  return out;
}

/** orderingTraitsInto for an MWr with these attributes (a write job that has no TLP object yet). */
export function postedWriteTraitsInto<T extends OrderingTraits>(ro: boolean, ido: boolean, requesterId: number, out: T): T {
  const k = KIND_RULES['MWr']!;
  const roPass = k.roAllowed && ro;
  const idoId = ido ? requesterId : -1;
  out.cls = k.cls;
  out.column = k.column;
  out.passesAllPosted = roPass;
  out.idoId = idoId;
  out.transactionKey = -1;
  out.postedPass = roPass ? 'ro' : idoId >= 0 ? 'ido' : 'none';
  return out;
}

/**
 * May `later` be sent before `earlier`, both waiting in the same queue? (§2.4.1 Table 2-42.)
 * Different Traffic Classes have no ordering relationship.
 */
export function mayPass(later: Tlp, earlier: Tlp, laterHints?: OrderingHints): boolean {
  if (later.tc !== earlier.tc) return true;
  const rule = ORDERING_TABLE[orderingColumnOf(later)][orderingColumnOf(earlier)];
  switch (rule) {
    case 'must':
    case 'may':
      return true;
    case 'no-unless-ido':
      return later.ido && idoIdOf(later) !== earlier.requesterId;
    case 'no-unless-ro-or-ido':
      return later.ro || (later.ido && idoIdOf(later) !== earlier.requesterId);
    case 'no-unless-ro-ido-or-io-cfg-write-cpl':
      return (
        later.ro ||
        (later.ido && idoIdOf(later) !== earlier.requesterId) ||
        laterHints?.ioCfgWriteCompletion === true
      );
    case 'may-unless-same-transaction':
      return !(later.requesterId === earlier.requesterId && later.tag === earlier.tag);
  }
}
