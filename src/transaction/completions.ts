/**
 * One function builds every completion for a request (§2.2.9, §2.3.1.1).
 *
 * Memory reads are split into several completions when the data exceeds Max_Payload_Size, and
 * may be split anywhere a part ends on a naturally aligned Read Completion Boundary: every part
 * but the last ends on an RCB multiple, each part's payload (whole DWs from the DW holding its
 * first byte) is at most MPS, each part carries the bytes still to come including its own (Byte
 * Count) and the low 7 bits of its first byte's address (Lower Address). By default each part is
 * as large as those rules allow; with an Rng the split points are chosen at random among the
 * legal ones, so a requester sees every split a real completer could make.
 */
import { TlpwireError, type Rng } from '../core/index.js';
import { CPL_RULES } from '../spec/index.js';
import {
  completionTlp,
  type CompletionOptions,
  joinAddress,
  type AtomicTlp,
  type CfgTlp,
  type CplStatus,
  type CplTlp,
  type IoTlp,
  type MemTlp,
} from '../tlp/index.js';
import { firstEnabledOffset, isZeroLengthRead, lowBits, lowerAddressOf, readByteCount } from './split.js';

export type CompletableRequest = MemTlp | IoTlp | CfgTlp | AtomicTlp;

export interface CompletionBuildOptions {
  completerId: number;
  /** Read Completion Boundary, 64 or 128 bytes. */
  rcb: number;
  /** Max_Payload_Size in bytes (128..4096). */
  mps: number;
  /** Choose among all legal split points at random (the simulator's adversary). */
  rng?: Rng;
  /** Set IDO on the completions (IDO Completion Enable); RO and NS are copied from the request. */
  ido?: boolean;
}

/**
 * The completions for `request`:
 * - `result` a status other than 'SC': one Cpl without data carrying that status;
 * - 'SC' for an I/O or configuration write: one Cpl without data;
 * - bytes for a read: for memory, exactly the `readByteCount` bytes from the first enabled byte
 *   (none for a zero-length read); for I/O and configuration, the 4 bytes of the DW.
 */
export function completionsFor(
  request: CompletableRequest,
  result: Uint8Array | CplStatus,
  options: CompletionBuildOptions,
): CplTlp[] {
  const isMem = request.kind === 'MRd' || request.kind === 'MRd64' || request.kind === 'MRdLk' || request.kind === 'MRdLk64';
  const locked = request.kind === 'MRdLk' || request.kind === 'MRdLk64';
  const { rcb, mps, rng } = options;
  if (!(rcb === 64 || rcb === 128) || !(mps >= rcb && mps <= 4096 && (mps & (mps - 1)) === 0)) {
    throw new TlpwireError('ERR_USAGE', `bad completion sizes: RCB ${rcb}, MPS ${mps}`);
  }
  // One options object per request, written as a literal (never spread: V8 makes spread
  // results slow-mode objects) and updated in place for each part of a split read.
  const o: CompletionOptions = {
    completerId: options.completerId,
    requesterId: request.requesterId,
    tag: request.tag,
    tc: request.tc,
    ro: request.ro,
    ns: request.ns,
    ido: options.ido ?? false,
    locked,
    status: 'SC',
    byteCount: CPL_RULES.NON_MEMORY_BYTE_COUNT,
    lowerAddress: 0,
  };
  if (typeof result === 'string') {
    if (isMem && result === 'SC') {
      throw new TlpwireError('ERR_REQUEST', 'a successful memory read completes with data');
    }
    o.status = result;
    if (!isMem) return [completionTlp(o)];
    // A failed memory read reports the bytes it still owed and where they started.
    const mem = request as MemTlp;
    o.byteCount = readByteCount(mem.firstBe, mem.lastBe, mem.lengthDw);
    o.lowerAddress = lowerAddressOf(joinAddress(mem.addressHi, mem.addressLo) + firstEnabledOffset(mem.firstBe));
    return [completionTlp(o)];
  }
  if (!isMem) {
    if (result.length !== 4) {
      throw new TlpwireError('ERR_REQUEST', `a ${request.kind} completes with one DW, got ${result.length} bytes`);
    }
    o.data = result;
    return [completionTlp(o)];
  }
  const mem = request as MemTlp;
  const dwAddress = joinAddress(mem.addressHi, mem.addressLo);
  const start = dwAddress + firstEnabledOffset(mem.firstBe);
  if (isZeroLengthRead(mem.firstBe, mem.lengthDw)) {
    // One DW of undefined data with Byte Count 1 (§2.2.5.1).
    o.byteCount = CPL_RULES.ZERO_LENGTH_READ_BYTE_COUNT;
    o.lowerAddress = lowerAddressOf(start);
    o.data = new Uint8Array(4);
    return [completionTlp(o)];
  }
  const total = readByteCount(mem.firstBe, mem.lastBe, mem.lengthDw);
  if (result.length !== total) {
    throw new TlpwireError('ERR_REQUEST', `read of ${total} bytes completed with ${result.length} bytes`);
  }
  return dataCompletions(o, result, start, start, start + total, rcb, mps, rng);
}

/**
 * Where the completion part that starts at byte address `s` ends (exclusive), for a read whose
 * data ends at `end`: as large as the rules allow (every part but the last ends on an RCB
 * multiple; a part's DW-rounded payload is at most MPS), or, with an Rng, at a random legal point.
 */
export function completionPartEnd(s: number, end: number, rcb: number, mps: number, rng?: Rng): number {
  const dwStart = s - lowBits(s, 4);
  // The whole rest fits in one part when its DW-rounded payload is within MPS.
  const restFits = roundUp4(end) - dwStart <= mps;
  // RCB boundaries after s whose part would still fit MPS, strictly before the end.
  const lastBoundary = Math.min(dwStart + mps - lowBits(dwStart + mps, rcb), end - 1 - lowBits(end - 1, rcb));
  if (rng === undefined) return restFits ? end : lastBoundary;
  const firstBoundary = s - lowBits(s, rcb) + rcb;
  const boundaries = lastBoundary >= firstBoundary ? (lastBoundary - firstBoundary) / rcb + 1 : 0;
  const choices = boundaries + (restFits ? 1 : 0);
  const pick = rng.int(choices);
  return pick === boundaries ? end : firstBoundary + pick * rcb;
}

/**
 * The data completions of a successful memory read from byte address `from` on: `result` holds
 * the read's bytes, result[0] being the byte at `start`; `o` gives the other fields (its
 * byteCount, lowerAddress and data are overwritten).
 */
export function dataCompletions(
  o: CompletionOptions,
  result: Uint8Array,
  start: number,
  from: number,
  end: number,
  rcb: number,
  mps: number,
  rng?: Rng,
): CplTlp[] {
  const out: CplTlp[] = [];
  let s = from;
  while (s < end) {
    const e = completionPartEnd(s, end, rcb, mps, rng);
    const lead = lowBits(s, 4);
    const bytes = e - s;
    const offset = s - start;
    let payload: Uint8Array;
    if (lead === 0 && lowBits(bytes, 4) === 0) payload = bytes === result.length ? result : result.subarray(offset, offset + bytes);
    else {
      payload = new Uint8Array(roundUp4(e) - (s - lead));
      payload.set(result.subarray(offset, offset + bytes), lead);
    }
    o.byteCount = end - s;
    o.lowerAddress = lowerAddressOf(s);
    o.data = payload;
    out.push(completionTlp(o));
    s = e;
  }
  return out;
}

function roundUp4(x: number): number {
  const r = lowBits(x, 4);
  return r === 0 ? x : x + 4 - r;
}
