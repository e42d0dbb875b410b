import { VIRTQ_AVAIL_OFF, VIRTQ_DESC_SIZE, VIRTQ_MAX_SIZE, VIRTQ_USED_OFF } from '../spec/index.js';

/**
 * Where a split virtqueue's three areas live: `cpu` addresses are what the driver's CPU uses
 * (guest-physical), `dma` addresses are what the device is given (I/O virtual addresses with
 * ACCESS_PLATFORM, the same physical addresses without).
 *
 *   descriptor table  16·N bytes, align 16   {addr le64, len le32, flags le16, next le16}[N]
 *   available ring    6+2N bytes, align 2    flags, idx, ring[N], used_event
 *   used ring         6+8N bytes, align 4    flags, idx, {id le32, len le32}[N], avail_event
 */
export interface RingArea {
  cpu: number;
  dma: number;
}

export interface SplitRingLayout {
  size: number;
  desc: RingArea;
  avail: RingArea;
  used: RingArea;
}

export function isValidQueueSize(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= VIRTQ_MAX_SIZE && (n & (n - 1)) === 0;
}

export function descTableBytes(n: number): number {
  return VIRTQ_DESC_SIZE * n;
}

export function availRingBytes(n: number): number {
  return VIRTQ_AVAIL_OFF.RING + 2 * n + 2;
}

export function usedRingBytes(n: number): number {
  return VIRTQ_USED_OFF.RING + VIRTQ_USED_OFF.ELEM_SIZE * n + 2;
}

/** Offsets inside the areas, for a queue of size n. */
export function usedEventOffset(n: number): number {
  return VIRTQ_AVAIL_OFF.RING + 2 * n;
}

export function availEventOffset(n: number): number {
  return VIRTQ_USED_OFF.RING + VIRTQ_USED_OFF.ELEM_SIZE * n;
}

/** Total bytes for all three areas laid out one after another with their alignments. */
export function splitRingFootprint(n: number): { descOff: number; availOff: number; usedOff: number; bytes: number } {
  const descOff = 0;
  const availOff = descOff + descTableBytes(n);
  const usedOff = alignUp(availOff + availRingBytes(n), 4);
  return { descOff, availOff, usedOff, bytes: usedOff + usedRingBytes(n) };
}

export function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
