/**
 * The requester's completion timers (one clock timer for all outstanding requests, oldest
 * first): every request that is answered in time completes, every one that is not times out at
 * exactly its send time plus the timeout, whatever the interleaving of sends, answers and reuse
 * of tags.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TlpwireError, type Clock, type TimerHandle } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { CompletionView, completionTlp, encodeTlp, parseCompletionData, type MemReadFields, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { Requester, completionsFor, cplTimeoutNs, type EnqueueOptions } from '../../src/transaction/index.js';

const TIMEOUT = { range: 0b0010 } as const; // 1 ms
const T = cplTimeoutNs(TIMEOUT)!;

describe('completion timers', () => {
  it('time out exactly the requests answered too late, at their send time plus the timeout', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 400_000 }), delay: fc.oneof(fc.integer({ min: 1, max: T - 1 }), fc.integer({ min: T + 1, max: 2 * T })) }), { minLength: 1, maxLength: 60 }),
        async (reads) => {
          const clock = new VirtualClock();
          const sent: { tlp: MemTlp; at: number }[] = [];
          const out = {
            enqueue(tlp: Tlp, o?: EnqueueOptions): void {
              sent.push({ tlp: tlp as MemTlp, at: clock.nowNs() });
              o?.onSent?.();
            },
          };
          const req = new Requester(out, {
            clock,
            config: { requesterId: 0x100, maxPayloadSize: 256, maxReadRequestSize: 512, rcb: 64, cplTimeout: TIMEOUT, tag10Bit: false, maxOutstandingTags: 8 },
          });
          const outcome: { ok: boolean; at: number; index: number }[] = [];
          let t = 0;
          for (const [i, r] of reads.entries()) {
            t += r.gap;
            clock.setTimer(t - clock.nowNs(), () => {
              req.memRead(0x1000 + i * 512, 512).then(
                () => outcome.push({ ok: true, at: clock.nowNs(), index: i }),
                (e: unknown) => {
                  expect(e).toBeInstanceOf(TlpwireError);
                  expect((e as TlpwireError).code).toBe('ERR_CPL_TIMEOUT');
                  outcome.push({ ok: false, at: clock.nowNs(), index: i });
                },
              );
            });
          }
          // Answer every request `delay` after it was sent (the delay of the read it belongs to).
          const answered = new Set<MemTlp>();
          let guard = 0;
          while ((clock.pending > 0 || sent.some((s) => !answered.has(s.tlp))) && guard++ < 100_000) {
            for (const s of sent) {
              if (answered.has(s.tlp)) continue;
              answered.add(s.tlp);
              const readIndex = (s.tlp.addressLo - 0x1000) / 512;
              const delay = reads[readIndex]!.delay;
              clock.setTimer(s.at + delay - clock.nowNs(), () => {
                for (const c of completionsFor(s.tlp, new Uint8Array(512), { completerId: 0, rcb: 64, mps: 256 })) req.handleCompletion(c);
              });
            }
            if (!clock.step()) break;
            for (let k = 0; k < 4; k++) await Promise.resolve();
          }
          for (let k = 0; k < 8; k++) await Promise.resolve();
          expect(outcome.length).toBe(reads.length);
          const timedOut = outcome.filter((o) => !o.ok);
          expect(timedOut.length).toBe(reads.filter((r) => r.delay > T).length);
          // With 8 tags some reads waited: the timeout runs from when their MRd went out.
          const sentAt = (i: number): number => sent.find((x) => x.tlp.addressLo === 0x1000 + i * 512)!.at;
          for (const o of timedOut) expect(o.at - sentAt(o.index)).toBe(T);
          expect(outcome.filter((o) => !o.ok).map((o) => o.index).sort((x, y) => x - y)).toEqual(
            reads.flatMap((r, i) => (r.delay > T ? [i] : [])),
          );
          expect(req.stats().tagsInUse).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});

/** A clock that counts its readings; time moves only when the test says it does. */
class CountingClock implements Clock {
  reads = 0;
  private t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  nowNs(): number {
    this.reads++;
    return this.t;
  }
  /** The time, without counting a reading (for the test's own records). */
  peek(): number {
    return this.t;
  }
  advance(ns: number): void {
    this.t += ns;
  }
  setTimer(delayNs: number, fn: () => void): TimerHandle {
    const timer = { at: this.t + delayNs, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  defer(fn: () => void): void {
    this.setTimer(0, fn);
  }
  /** Runs the timers, earliest first, until none is left. */
  run(): void {
    for (;;) {
      this.timers = this.timers.filter((x) => x.live);
      if (this.timers.length === 0) return;
      const next = this.timers.reduce((a, b) => (b.at < a.at ? b : a));
      next.live = false;
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
  }
}

describe('completion timers started by one issue loop', () => {
  it('read the clock once for the loop, and no request times out before its send time plus the timeout', () => {
    const clock = new CountingClock();
    const sentAt = new Map<number, number>();
    const out = {
      enqueue(tlp: Tlp, o?: EnqueueOptions): void {
        clock.advance(1000); // time passes as each MRd goes out
        sentAt.set((tlp as MemTlp).tag, clock.peek());
        o?.onSent?.();
      },
    };
    const req = new Requester(out, {
      clock,
      config: { requesterId: 0x100, maxPayloadSize: 256, maxReadRequestSize: 512, rcb: 64, cplTimeout: TIMEOUT, tag10Bit: false, maxOutstandingTags: 64 },
    });
    const firedAt = new Map<number, number>();
    req.onCompletionError = (e) => {
      if (e.kind === 'timeout') firedAt.set(e.tag, clock.peek());
    };
    const read = req.memRead(0x1000, 64 * 512).catch((e: unknown) => e);
    expect(clock.reads).toBe(1); // for 64 MRds
    expect(sentAt.size).toBe(64);
    clock.run();
    expect(firedAt.size).toBe(64);
    for (const [tag, at] of sentAt) {
      expect(firedAt.get(tag)! - at).toBeGreaterThanOrEqual(T);
      // Late by no more than the loop took (64 µs of this clock).
      expect(firedAt.get(tag)! - at).toBeLessThanOrEqual(T + 64_000);
    }
    return read.then((e) => expect((e as TlpwireError).code).toBe('ERR_CPL_TIMEOUT'));
  });
});

describe('requests for tags freed during a received batch (deferIssue)', () => {
  it('go out together when the batch is done, their timers started with one clock reading', () => {
    const clock = new CountingClock();
    const sent: { tag: number; address: number }[] = [];
    const out = {
      enqueue(): void {
        throw new Error('the fast path takes every read here');
      },
      sendMemRead(_f: MemReadFields, tag: number, address: number): boolean {
        sent.push({ tag, address });
        return true;
      },
    };
    const req = new Requester(out, {
      clock,
      config: { requesterId: 0x100, maxPayloadSize: 256, maxReadRequestSize: 512, rcb: 64, cplTimeout: TIMEOUT, tag10Bit: false, maxOutstandingTags: 4 },
      deferIssue: true,
    });
    const read = req.memRead(0x1000, 16 * 512);
    expect(sent.length).toBe(4); // the tags there are
    // A batch's completions answer all four requests ...
    const view = new CompletionView();
    const readsBefore = clock.reads;
    for (const s of sent.splice(0)) {
      for (const half of [0, 256]) {
        const a = s.address + half;
        const bytes = encodeTlp(completionTlp({ completerId: 0, requesterId: 0x100, tag: s.tag, byteCount: 512 - half, lowerAddress: a & 0x7f, data: new Uint8Array(256) }));
        expect(parseCompletionData(bytes, 0, bytes.length, view)).toBe(true);
        expect(req.handleCompletionData(bytes, view)).toBe(true);
      }
    }
    // ... and no new request leaves until the batch is done,
    expect(sent.length).toBe(0);
    req.issueDeferred();
    // then four, in one loop: one clock reading for their timers.
    expect(sent.map((s) => s.address)).toEqual([0x1800, 0x1a00, 0x1c00, 0x1e00]);
    expect(clock.reads - readsBefore).toBe(1);
    req.abortAll(new TlpwireError('ERR_LINK_DOWN', 'test over'));
    return read.catch((e: unknown) => expect((e as TlpwireError).code).toBe('ERR_LINK_DOWN'));
  });
});
