/** Ring indices are free-running u16 counters; all wrap arithmetic goes through here. */
export const U16_MASK = 0xffff;

export function u16(x: number): number {
  return x & U16_MASK;
}

export function u16Add(a: number, b: number): number {
  return (a + b) & U16_MASK;
}

/** (a − b) mod 2^16: how far `a` is ahead of `b`. */
export function u16Sub(a: number, b: number): number {
  return (a - b) & U16_MASK;
}

/**
 * The EVENT_IDX test (virtio spec, vring_need_event): notify iff the other side's event index
 * lies in [old, new).
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return u16Sub(newIdx, u16Add(eventIdx, 1)) < u16Sub(newIdx, oldIdx);
}
