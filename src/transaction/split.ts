/**
 * Arithmetic shared by the requester and the completer: where requests are split, which bytes a
 * request's byte enables cover, and what a completion's Byte Count and Lower Address must be.
 * Addresses are numbers (exact below 2^53). Remainders by a power of two m ≤ 2^30 are taken as
 * `x & (m - 1)` (see lowBits): exact for every safe integer, because ToInt32 keeps the low 32 bits,
 * and much cheaper than `%` once an address is a double (V8 calls fmod for that).
 */

/** x mod m for a safe integer x ≥ 0 and a power of two m ≤ 2^30. */
export function lowBits(x: number, m: number): number {
  return x & (m - 1);
}
import { CPL_RULES, PCIE_LIMITS } from '../spec/index.js';

/**
 * End (exclusive) of the piece starting at `address`: pieces are the naturally aligned blocks of
 * `block` bytes (a power of two ≤ 4096, so a piece never crosses 4 KiB), capped at `end`.
 * MRRS-sized blocks for reads, MPS-sized for writes; the DW span of a piece is then ≤ block.
 */
export function pieceEnd(address: number, end: number, block: number): number {
  return Math.min(end, address - lowBits(address, block) + block);
}

/** Number of pieces `pieceEnd` cuts [address, address + length) into (1 for length 0). */
export function pieceCount(address: number, length: number, block: number): number {
  if (length === 0) return 1;
  const first = Math.floor(address / block);
  const last = Math.floor((address + length - 1) / block);
  return last - first + 1;
}

function lowestBit(be: number): number {
  for (let i = 0; i < 4; i++) if ((be & (1 << i)) !== 0) return i;
  return -1;
}

function highestBit(be: number): number {
  for (let i = 3; i >= 0; i--) if ((be & (1 << i)) !== 0) return i;
  return -1;
}

/**
 * Offset from the request's DW address to the first byte a read returns: the lowest enabled
 * byte of First DW BE (0 for a zero-length read).
 */
export function firstEnabledOffset(firstBe: number): number {
  return firstBe === 0 ? 0 : lowestBit(firstBe);
}

/**
 * Byte Count of the (first) completion for a read (§2.2.9, Byte Count calculation table): from
 * the first enabled byte to the last one, holes in a 1-DW request included; 1 for a
 * zero-length read.
 */
export function readByteCount(firstBe: number, lastBe: number, lengthDw: number): number {
  if (lengthDw === 1) {
    if (firstBe === 0) return CPL_RULES.ZERO_LENGTH_READ_BYTE_COUNT;
    return highestBit(firstBe) - lowestBit(firstBe) + 1;
  }
  return lengthDw * 4 - lowestBit(firstBe) - (3 - highestBit(lastBe));
}

/** Lower Address of a completion whose first returned byte is at `address`. */
export function lowerAddressOf(address: number): number {
  return lowBits(address, CPL_RULES.LOWER_ADDRESS_MODULUS);
}

/** A zero-length read: one DW, no byte enabled (used to flush posted writes). */
export function isZeroLengthRead(firstBe: number, lengthDw: number): boolean {
  return lengthDw === 1 && firstBe === 0;
}

/** Largest address a request may start at and still end below 2^53 (numbers stay exact). */
export const MAX_SAFE_ADDRESS = Number.MAX_SAFE_INTEGER;

export function isValidSize(bytes: number): boolean {
  return bytes >= 128 && bytes <= PCIE_LIMITS.PAGE_4K && (bytes & (bytes - 1)) === 0;
}
