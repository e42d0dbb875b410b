import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  RxCredits,
  TxCredits,
  counterBits,
  dataCreditsFor,
  maxCredits,
  mayTransmit,
  rawTlpCredits,
  tlpCredits,
  type CreditAdvertisement,
  type ScaleFactor,
} from '../../src/link/index.js';
import { encodeTlp, type Tlp, type TlpClass } from '../../src/tlp/index.js';
import { ALL_KINDS, arbTlp, arbTlpOfKind } from '../tlp/arbitraries.js';

describe('credit arithmetic', () => {
  it('counter widths and maxima follow §3.4.2 (8/12 bits, +2 at scale 4, +4 at scale 16)', () => {
    expect([1, 4, 16].map((s) => counterBits(false, s as ScaleFactor))).toEqual([8, 10, 12]);
    expect([1, 4, 16].map((s) => counterBits(true, s as ScaleFactor))).toEqual([12, 14, 16]);
    expect([1, 4, 16].map((s) => maxCredits(false, s as ScaleFactor))).toEqual([127, 508, 2032]);
    expect([1, 4, 16].map((s) => maxCredits(true, s as ScaleFactor))).toEqual([2047, 8188, 32752]);
    expect([0, 1, 16, 17, 256, 4096].map(dataCreditsFor)).toEqual([0, 1, 1, 2, 16, 256]);
  });

  it('hand-checked gate cases around the wrap', () => {
    // 8-bit: limit wrapped to 2, consumed 250: 8 credits available
    expect(mayTransmit(2, 250, 8, 8)).toBe(true);
    expect(mayTransmit(2, 250, 9, 8)).toBe(false);
    // 12-bit: limit 5, consumed 4090: 11 available
    expect(mayTransmit(5, 4090, 11, 12)).toBe(true);
    expect(mayTransmit(5, 4090, 12, 12)).toBe(false);
    // nothing available
    expect(mayTransmit(100, 100, 1, 8)).toBe(false);
    expect(mayTransmit(100, 100, 0, 8)).toBe(true);
  });

  it('the modular gate equals "available ≥ needed" on unbounded counters, for every width', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(8, 10, 12, 14, 16),
        fc.nat({ max: 2 ** 40 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (bits, consumedU, fa, fn) => {
          const half = 2 ** (bits - 1);
          const avail = Math.floor(fa * half); // 0..2^(bits-1): what a legal window allows
          const needed = Math.min(half - 1, Math.floor(fn * half));
          const limitU = consumedU + avail;
          const m = 2 ** bits;
          return mayTransmit(limitU % m, consumedU % m, needed, bits) === avail >= needed;
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('TLP credits from wire bytes equal those from the TLP object', () => {
    fc.assert(
      fc.property(arbTlp, (t) => {
        const bytes = encodeTlp(t);
        expect(rawTlpCredits(bytes, 0, bytes.length)).toEqual(tlpCredits(t));
      }),
      { numRuns: 500 },
    );
  });

  it('bytes whose Fmt/Type is no kind tlpwire carries have no credits, and so do fewer than 4 bytes', () => {
    for (let b0 = 0; b0 < 256; b0++) {
      const known = decodesAsSomeKind(b0);
      const bytes = Uint8Array.of(b0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
      expect(rawTlpCredits(bytes, 0, bytes.length) !== undefined, `byte 0 = 0x${b0.toString(16)}`).toBe(known);
      expect(rawTlpCredits(bytes, 0, 3)).toBeUndefined();
    }
  });
});

/** Whether some TLP kind encodes to this byte 0 (Fmt/Type), as encodeTlp produces it. */
function decodesAsSomeKind(b0: number): boolean {
  const seen = (BYTE0_OF_KINDS ??= new Set(sampleOfEveryKind().map((t) => encodeTlp(t)[0]!)));
  return seen.has(b0);
}
let BYTE0_OF_KINDS: Set<number> | undefined;

/** Many TLPs of every kind (all routings of the messages among them), from a fixed seed. */
function sampleOfEveryKind(): Tlp[] {
  return ALL_KINDS.flatMap((k) => fc.sample(arbTlpOfKind(k), { numRuns: 300, seed: 7 }));
}

/**
 * A transmitter and a receiver joined by two FIFO channels, driven by random steps, checked
 * against unbounded integer bookkeeping. Long traces wrap the 8/10/12-bit header counters many
 * times and the data counters several times.
 */
describe('transmitter and receiver together', () => {
  // Each step repeats its operation `n` times, so a few thousand steps move a lot of traffic.
  type Op = 'send' | 'deliver' | 'release' | 'update' | 'deliverUpdate';
  interface Step {
    op: Op;
    n: number;
    bytes: number;
  }
  const arbStep: fc.Arbitrary<Step> = fc.record({
    op: fc.constantFrom<Op>('send', 'deliver', 'release', 'update', 'deliverUpdate'),
    n: fc.integer({ min: 1, max: 64 }),
    bytes: fc.integer({ min: 0, max: 256 }).map((dw) => dw * 4),
  });

  it('never overruns the receiver, never misjudges the window, and wraps cleanly', () => {
    let wrappedH = 0;
    let wrappedD = 0;
    fc.assert(
      fc.property(
        fc.constantFrom<ScaleFactor>(1, 4, 16),
        fc.constantFrom<ScaleFactor>(1, 4, 16),
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.array(arbStep, { minLength: 300, maxLength: 1500 }),
        (hs, ds, permilleH, permilleD, steps) => {
          const fh = permilleH / 1000;
          const fd = permilleD / 1000;
          // windows: multiples of the scale, large enough for one 1024-byte TLP plus a scale step
          const hMax = maxCredits(false, hs);
          const dMax = maxCredits(true, ds);
          const ph = Math.max(hs, Math.floor((fh * hMax) / hs) * hs);
          const pd = Math.max(Math.ceil((64 + ds) / ds) * ds, Math.floor((fd * dMax) / ds) * ds);
          const adv: CreditAdvertisement = {
            credits: { PH: ph, PD: pd, NPH: 0, NPD: 0, CplH: 0, CplD: 0 },
            scale: { PH: hs, PD: ds, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
          };
          const tx = new TxCredits(adv);
          const rx = new RxCredits(adv);
          const toRx: number[] = [];
          const held: number[] = [];
          const toTx: { u: NonNullable<ReturnType<RxCredits['takeUpdate']>>; relH: number; relD: number }[] = [];
          let relH = 0;
          let relD = 0;
          // unbounded model: what the transmitter knows it may still send
          let limH = ph;
          let limD = pd;
          let conH = 0;
          let conD = 0;
          let sentTotal = 0;
          const cls: TlpClass = 'P';
          for (const s of steps) {
            for (let k = 0; k < s.n; k++) {
              switch (s.op) {
                case 'send': {
                  const need = dataCreditsFor(s.bytes);
                  const model = limH - conH >= 1 && limD - conD >= need;
                  if (tx.canSend(cls, s.bytes) !== model) return false;
                  if (model) {
                    tx.consume(cls, s.bytes);
                    conH += 1;
                    conD += need;
                    toRx.push(s.bytes);
                    sentTotal++;
                  }
                  break;
                }
                case 'deliver': {
                  const b = toRx.shift();
                  if (b === undefined) break;
                  if (rx.receive(cls, b) !== undefined) return false; // overrun: must never happen
                  held.push(b);
                  break;
                }
                case 'release': {
                  const b = held.shift();
                  if (b !== undefined) {
                    rx.release(cls, b);
                    relH += 1;
                    relD += dataCreditsFor(b);
                  }
                  break;
                }
                case 'update': {
                  const u = rx.takeUpdate();
                  if (u !== undefined) toTx.push({ u, relH, relD });
                  break;
                }
                case 'deliverUpdate': {
                  const m = toTx.shift();
                  if (m === undefined) break;
                  const u = m.u;
                  if (u.PH !== undefined) {
                    const r = tx.update('PH', u.PH);
                    if (r !== 'raised' && r !== 'same') return false;
                  }
                  if (u.PD !== undefined) {
                    const r = tx.update('PD', u.PD);
                    if (r !== 'raised' && r !== 'same') return false;
                  }
                  // the model learns the limit the receiver meant: its unbounded freed credits,
                  // rounded down to the scale
                  limH = ph + Math.floor(m.relH / hs) * hs;
                  limD = pd + Math.floor(m.relD / ds) * ds;
                  break;
                }
              }
              if (rx.heldCredits('PH') > ph || rx.heldCredits('PD') > pd) return false;
              if (tx.available('PH') !== limH - conH || tx.available('PD') !== limD - conD) return false;
            }
          }
          if (conH >= 2 ** counterBits(false, hs)) wrappedH++;
          if (conD >= 2 ** counterBits(true, ds)) wrappedD++;
          return sentTotal > 0;
        },
      ),
      { numRuns: 60 },
    );
    // the traces did exercise the wrap of both counters
    expect(wrappedH).toBeGreaterThan(5);
    expect(wrappedD).toBeGreaterThan(5);
  });
});
