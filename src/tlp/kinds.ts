/**
 * The Fmt/Type table (§2.2.1.1 Table 2-3) as data: one row per TLP kind, and a 256-entry lookup
 * from header byte 0 (Fmt[2:0]:Type[4:0]) to the kind, so decode classifies a TLP with one load.
 */
import { TLP_FMT, TLP_TYPE } from '../spec/index.js';
import type { TlpKind } from './types.js';

export type TlpFamily = 'mem' | 'io' | 'cfg' | 'cpl' | 'msg' | 'atomic';

export interface KindInfo {
  readonly kind: TlpKind;
  readonly fmt: number;
  /** Type[4:0]; for Msg/MsgD the base 0x10 (routing goes in bits 2:0). */
  readonly type: number;
  readonly family: TlpFamily;
  readonly hasData: boolean;
  readonly fourDw: boolean;
  /** MRd/MRdLk: Length is a read length and TH repurposes the Byte Enables as ST[7:0]. */
  readonly isRead: boolean;
}

function row(kind: TlpKind, fmt: number, type: number, family: TlpFamily, isRead = false): KindInfo {
  return {
    kind,
    fmt,
    type,
    family,
    hasData: (fmt & 0b010) !== 0,
    fourDw: (fmt & 0b001) !== 0,
    isRead,
  };
}

const F = TLP_FMT;
const T = TLP_TYPE;

export const KIND_INFO: Readonly<Record<TlpKind, KindInfo>> = {
  MRd: row('MRd', F.NO_DATA_3DW, T.MEM, 'mem', true),
  MRd64: row('MRd64', F.NO_DATA_4DW, T.MEM, 'mem', true),
  MRdLk: row('MRdLk', F.NO_DATA_3DW, T.MEM_LOCKED, 'mem', true),
  MRdLk64: row('MRdLk64', F.NO_DATA_4DW, T.MEM_LOCKED, 'mem', true),
  MWr: row('MWr', F.DATA_3DW, T.MEM, 'mem'),
  MWr64: row('MWr64', F.DATA_4DW, T.MEM, 'mem'),
  IORd: row('IORd', F.NO_DATA_3DW, T.IO, 'io'),
  IOWr: row('IOWr', F.DATA_3DW, T.IO, 'io'),
  CfgRd0: row('CfgRd0', F.NO_DATA_3DW, T.CFG0, 'cfg'),
  CfgWr0: row('CfgWr0', F.DATA_3DW, T.CFG0, 'cfg'),
  CfgRd1: row('CfgRd1', F.NO_DATA_3DW, T.CFG1, 'cfg'),
  CfgWr1: row('CfgWr1', F.DATA_3DW, T.CFG1, 'cfg'),
  Cpl: row('Cpl', F.NO_DATA_3DW, T.CPL, 'cpl'),
  CplD: row('CplD', F.DATA_3DW, T.CPL, 'cpl'),
  CplLk: row('CplLk', F.NO_DATA_3DW, T.CPL_LOCKED, 'cpl'),
  CplDLk: row('CplDLk', F.DATA_3DW, T.CPL_LOCKED, 'cpl'),
  Msg: row('Msg', F.NO_DATA_4DW, T.MSG_BASE, 'msg'),
  MsgD: row('MsgD', F.DATA_4DW, T.MSG_BASE, 'msg'),
  FetchAdd: row('FetchAdd', F.DATA_3DW, T.FETCH_ADD, 'atomic'),
  FetchAdd64: row('FetchAdd64', F.DATA_4DW, T.FETCH_ADD, 'atomic'),
  Swap: row('Swap', F.DATA_3DW, T.SWAP, 'atomic'),
  Swap64: row('Swap64', F.DATA_4DW, T.SWAP, 'atomic'),
  CAS: row('CAS', F.DATA_3DW, T.CAS, 'atomic'),
  CAS64: row('CAS64', F.DATA_4DW, T.CAS, 'atomic'),
};

export const TLP_KINDS: readonly TlpKind[] = Object.keys(KIND_INFO) as TlpKind[];

/** Header byte 0 → kind; undefined for Reserved encodings, prefixes and kinds tlpwire does not carry. */
const BYTE0_TO_KIND: readonly (KindInfo | undefined)[] = (() => {
  const table: (KindInfo | undefined)[] = new Array<KindInfo | undefined>(256).fill(undefined);
  for (const info of Object.values(KIND_INFO)) {
    const routings = info.family === 'msg' ? 8 : 1;
    for (let r = 0; r < routings; r++) table[(info.fmt << 5) | info.type | r] = info;
  }
  return table;
})();

export function kindInfoOfByte0(byte0: number): KindInfo | undefined {
  return BYTE0_TO_KIND[byte0 & 0xff];
}

/** Type[4:0] of a TLP of this kind (messages add the routing). */
export function typeFieldOf(info: KindInfo, routing: number): number {
  return info.family === 'msg' ? info.type | routing : info.type;
}

export function isTlpKind(k: unknown): k is TlpKind {
  return typeof k === 'string' && Object.prototype.hasOwnProperty.call(KIND_INFO, k);
}
