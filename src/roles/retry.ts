/**
 * Connecting with retries and staying connected: what `--connect URL --retry` does on either
 * side. Exponential backoff, capped; time comes from the Clock; a stop signal ends the waiting.
 */
import { TlpwireError, errorMessage, isTlpwireError, type Clock, type Logger } from '../core/index.js';

export interface RetryPolicy {
  /** Attempts after the first one; Infinity keeps trying. */
  retries: number;
  /** Wait before the first retry. Default 100 ms. */
  initialDelayNs?: number;
  /** The wait doubles up to this. Default 5 s. */
  maxDelayNs?: number;
}

/** How a run ended: the exit code, and the error to print when there is one. */
export interface RunExit {
  code: number;
  error?: TlpwireError;
}

/** A stop request shared by a run's loops (a tiny AbortSignal that needs no DOM types). */
export class StopSignal {
  private stopped = false;
  private readonly waiters = new Set<() => void>();

  get requested(): boolean {
    return this.stopped;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }

  /** Calls `fn` once when stopped (at once if it already is); returns the unsubscribe function. */
  onStop(fn: () => void): () => void {
    if (this.stopped) {
      fn();
      return () => {};
    }
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }
}

/** The delay before retry number `n` (1-based). */
export function backoffNs(policy: RetryPolicy, n: number): number {
  const first = policy.initialDelayNs ?? 100_000_000;
  const cap = policy.maxDelayNs ?? 5_000_000_000;
  return Math.min(cap, first * 2 ** Math.min(n - 1, 40));
}

/** Resolves after `ns`, or as soon as `stop` is requested. */
export function sleep(clock: Clock, ns: number, stop: StopSignal): Promise<void> {
  if (stop.requested) return Promise.resolve();
  return new Promise((resolve) => {
    let off = (): void => {};
    const t = clock.setTimer(ns, () => {
      off();
      resolve();
    });
    off = stop.onStop(() => {
      t.cancel();
      resolve();
    });
  });
}

/** A connection the loop can wait on. */
export interface Connected {
  /** Resolves with the reason once the link is down for good. */
  whenDown(): Promise<string>;
}

export interface ConnectLoopOptions {
  /** What is being connected to, for logs ("ws://10.0.0.2:5301"). */
  what: string;
  connect: () => Promise<Connected>;
  /** Without a policy the first failure ends the loop. */
  retry: RetryPolicy | undefined;
  clock: Clock;
  log: Logger;
  stop: StopSignal;
  /** The link went down and the loop is about to reconnect (or stop). */
  onDown?: (reason: string) => void;
  /** Stop after the first session, whatever the policy (retries still apply to connecting). */
  once?: boolean;
}

/** A link that ended because the partner said goodbye is not an error. */
export function isCleanClose(reason: string): boolean {
  return reason.startsWith('partner closed');
}

/**
 * Connects, waits for the link to go down, and (with a retry policy) connects again, backing
 * off after failures. Resolves when it stops: asked to (code 0), no retry policy and the link
 * went down (0 when the partner closed it, 1 otherwise), or retries exhausted (1 with the error).
 */
export async function connectLoop(o: ConnectLoopOptions): Promise<RunExit> {
  let failures = 0;
  for (;;) {
    if (o.stop.requested) return { code: 0 };
    let conn: Connected;
    try {
      conn = await o.connect();
    } catch (e) {
      const err = isTlpwireError(e) ? e : new TlpwireError('ERR_TRANSPORT', errorMessage(e));
      if (o.stop.requested) return { code: 0 };
      // A malformed URL will not get better by waiting.
      if (o.retry === undefined || err.code === 'ERR_BAD_URL' || err.code === 'ERR_USAGE') return { code: 1, error: err };
      failures++;
      if (failures > o.retry.retries) {
        return { code: 1, error: new TlpwireError(err.code, `${err.message} (gave up after ${failures} attempts)`) };
      }
      const delay = backoffNs(o.retry, failures);
      o.log.warn({ attempt: failures, retryInMs: Math.round(delay / 1e6) }, `${err.message}; retrying`);
      await sleep(o.clock, delay, o.stop);
      continue;
    }
    failures = 0;
    const reason = await new Promise<string>((resolve) => {
      const off = o.stop.onStop(() => resolve('stopped'));
      conn.whenDown().then(
        (r) => {
          off();
          resolve(r);
        },
        () => {
          off();
          resolve('down');
        },
      );
    });
    if (o.stop.requested) return { code: 0 };
    o.onDown?.(reason);
    if (o.retry === undefined || o.once === true) {
      return isCleanClose(reason) ? { code: 0 } : { code: 1, error: new TlpwireError('ERR_LINK_DOWN', `link to ${o.what} lost: ${reason}`) };
    }
    o.log.info({ reason }, `link to ${o.what} down; reconnecting`);
    // A partner that accepts and drops us at once should not make us spin.
    await sleep(o.clock, backoffNs(o.retry, 1), o.stop);
  }
}

/**
 * Dials once at once, so that without a retry policy an unreachable peer is an error the
 * caller reports (it rejects), then runs connectLoop starting from that connection. `done` is
 * the loop's outcome (wrapped, so that awaiting the dial does not await the loop).
 */
export async function dialThenLoop(o: ConnectLoopOptions): Promise<{ done: Promise<RunExit> }> {
  let first: Connected | undefined = o.retry === undefined ? await o.connect() : undefined;
  const done = connectLoop({
    ...o,
    connect: () => {
      if (first === undefined) return o.connect();
      const c = first;
      first = undefined;
      return Promise.resolve(c);
    },
  });
  return { done };
}
