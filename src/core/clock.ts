/**
 * Time as the core sees it. The core never reads the OS clock or timers directly: a Clock is
 * passed in. The real runtime binds it to the OS (roles/real-runtime.ts); the simulator binds
 * it to a virtual clock driven by its scheduler, so any run reproduces from its seed.
 *
 * Times are nanoseconds as numbers (exact for ~104 days of run time).
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Nanoseconds since an arbitrary origin; never decreases. */
  nowNs(): number;
  /** Calls `fn` once after `delayNs` (≥ 0). */
  setTimer(delayNs: number, fn: () => void): TimerHandle;
  /** Calls `fn` after everything already queued at the current instant (like setImmediate). */
  defer(fn: () => void): void;
}

export const NS_PER_US = 1_000;
export const NS_PER_MS = 1_000_000;
export const NS_PER_S = 1_000_000_000;
