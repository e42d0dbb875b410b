/**
 * What the DMA benchmark writes and how both of its processes recognise it: chunk i of 64 KiB is
 * a fixed pseudo-random pattern with i in its first 4 bytes (little-endian), so a chunk that lands
 * in the wrong place is caught.
 */
export const CHUNK = 64 * 1024;
/**
 * Untimed passes before the timed ones, of the DMA each way and of the raw baseline: here the
 * first pass after a single warm-up still ran at about half the speed of later ones, on both.
 */
export const WARM_UP_PASSES = 4;
/** Where the region starts in host memory (the first 64 KiB stay unused, as in the DMA tests). */
export const BASE = 0x10_0000;

/** Chunk `index` as the peer writes it (the parent rebuilds it to check host RAM). */
export function patternChunk(index: number, out: Uint8Array = new Uint8Array(CHUNK)): Uint8Array {
  if (out.length !== CHUNK) throw new RangeError('pattern chunk size');
  let x = 0x2545f491;
  for (let i = 4; i < CHUNK; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  stampChunk(out, index);
  return out;
}

export function stampChunk(buf: Uint8Array, index: number): void {
  buf[0] = index & 0xff;
  buf[1] = (index >>> 8) & 0xff;
  buf[2] = (index >>> 16) & 0xff;
  buf[3] = index >>> 24;
}

export function stampOf(buf: Uint8Array): number {
  return (buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24)) >>> 0;
}

/** Lines the DMA processes (bench/dma-peer.ts, bench/dma-host.ts) print on stdout, one JSON object each. */
export type PeerEvent =
  | { event: 'up' }
  | { event: 'ready' }
  | { event: 'start'; phase: 'write' | 'read' }
  | { event: 'end'; phase: 'write' | 'read'; ns: number; cpuUs: number; bytes: number }
  | { event: 'done'; counters: Record<string, number> }
  // bench/dma-host.ts, the root complex's process
  | { event: 'listening'; url: string }
  | { event: 'started' }
  | { event: 'cpu'; cpuUs: number }
  | { event: 'checked'; problem?: string }
  | { event: 'error'; message: string };
