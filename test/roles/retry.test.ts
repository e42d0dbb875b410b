import { describe, expect, it } from 'vitest';
import { TlpwireError, silentLogger } from '../../src/core/index.js';
import { StopSignal, backoffNs, connectLoop, type Connected } from '../../src/roles/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { settle } from './sim.js';

describe('retry backoff', () => {
  it('doubles from the initial delay up to the cap', () => {
    const p = { retries: Infinity, initialDelayNs: 100, maxDelayNs: 1000 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffNs(p, n))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('without a policy the first failure ends the loop with that error', async () => {
    const clock = new VirtualClock();
    const exit = await settle(
      clock,
      connectLoop({
        what: 'x',
        connect: () => Promise.reject(new TlpwireError('ERR_TRANSPORT', 'cannot connect to x: connection refused')),
        retry: undefined,
        clock,
        log: silentLogger,
        stop: new StopSignal(),
      }),
    );
    expect(exit.code).toBe(1);
    expect(exit.error?.message).toBe('cannot connect to x: connection refused');
  });

  it('retries with backoff, gives up after the count, and reconnects after a link loss', async () => {
    const clock = new VirtualClock();
    const attempts: number[] = [];
    let downs = 0;
    // Fails twice, then connects; that link goes down after 1 s; then fails forever.
    const connect = (): Promise<Connected> => {
      attempts.push(clock.nowNs());
      const n = attempts.length;
      if (n === 3) {
        return Promise.resolve({ whenDown: () => new Promise<string>((r) => clock.setTimer(1e9, () => r('transport closed by peer'))) });
      }
      return Promise.reject(new TlpwireError('ERR_TRANSPORT', 'refused'));
    };
    const exit = await settle(
      clock,
      connectLoop({ what: 'x', connect, retry: { retries: 3, initialDelayNs: 1e6, maxDelayNs: 4e6 }, clock, log: silentLogger, stop: new StopSignal(), onDown: () => downs++ }),
    );
    expect(exit.code).toBe(1);
    expect(exit.error?.message).toBe('refused (gave up after 4 attempts)');
    expect(downs).toBe(1);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    // 1 ms, 2 ms, then connected for 1 s (+1 ms pause before reconnecting), then 1, 2, 4 ms.
    expect(gaps).toEqual([1e6, 2e6, 1e9 + 1e6, 1e6, 2e6, 4e6]);
  });

  it('a stop request ends the waiting at once', async () => {
    const clock = new VirtualClock();
    const stop = new StopSignal();
    clock.setTimer(5e6, () => stop.stop());
    const exit = await settle(
      clock,
      connectLoop({
        what: 'x',
        connect: () => Promise.reject(new TlpwireError('ERR_TRANSPORT', 'refused')),
        retry: { retries: Infinity, initialDelayNs: 1e9 },
        clock,
        log: silentLogger,
        stop,
      }),
    );
    expect(exit).toEqual({ code: 0 });
    expect(clock.nowNs()).toBe(5e6);
  });
});
