/**
 * Writes sent a stretch at a time: Link.sendMemWrites places the whole MPS blocks of a write that
 * the credits allow and the batch holds together (BatchWriter.reserveItems/commitItems,
 * encodeMemWriteHeadersInto, TxCredits.countClass/consumeClassN). What must hold: the same TLPs
 * in the same items as one by one (each MWr what memWriteTlp builds, from the spec-built golden
 * encoder), the same credits consumed, and as many bytes sent as the one-by-one gate would let go.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ITEM, RxCredits, TxCredits, dataCreditsFor, type CreditAdvertisement, type ScaleFactor } from '../../src/link/index.js';
import { BatchWriter } from '../../src/link/framing.js';
import { encodeMemWriteHeaderInto, encodeMemWriteHeadersInto, memWriteTlp, type MemWriteFields } from '../../src/tlp/index.js';
import { arbMemWriteFields } from '../tlp/arbitraries.js';
import { goldenEncode } from '../tlp/golden-builder.js';
import { bringUp, linkPair } from './helpers.js';

const FOUR_GIB = 0x1_0000_0000;
const CLASS_P = 0;

describe('TxCredits.countClass', () => {
  it('counts exactly the TLPs that canSendClass and consumeClass would let through one by one', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ScaleFactor>(1, 4, 16),
        fc.constantFrom<ScaleFactor>(1, 4, 16),
        fc.integer({ min: 0, max: 127 }),
        fc.integer({ min: 0, max: 2047 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 0, max: 64 }).map((dw) => dw * 16),
        fc.integer({ min: 0, max: 300 }),
        (hs, ds, ph, pd, preSent, bytes, most) => {
          const adv: CreditAdvertisement = {
            credits: { PH: Math.max(1, ph) * hs, PD: Math.max(1, pd) * ds, NPH: 0, NPD: 0, CplH: 0, CplD: 0 },
            scale: { PH: hs, PD: ds, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
          };
          const one = new TxCredits(adv);
          const many = new TxCredits(adv);
          // Some traffic first, with the limits raised by what was consumed whenever the gate
          // says no (as the receiver's updates do), so that the counters are anywhere, wrapped too.
          let consumedH = 0;
          let consumedD = 0;
          for (let i = 0; i < preSent; i++) {
            if (!one.canSendClass(CLASS_P, 64)) {
              const grant = (t: 'PH' | 'PD', initial: number, consumed: number, scale: number): void => {
                const field = (initial + Math.floor(consumed / scale) * scale) / scale;
                for (const c of [one, many]) c.update(t, field);
              };
              grant('PH', adv.credits.PH, consumedH, hs);
              grant('PD', adv.credits.PD, consumedD, ds);
              if (!one.canSendClass(CLASS_P, 64)) break;
            }
            one.consumeClass(CLASS_P, 64);
            many.consumeClass(CLASS_P, 64);
            consumedH += 1;
            consumedD += dataCreditsFor(64);
          }
          let byOne = 0;
          while (byOne < most && one.canSendClass(CLASS_P, bytes)) {
            one.consumeClass(CLASS_P, bytes);
            byOne++;
          }
          const k = many.countClass(CLASS_P, bytes, most);
          expect(k).toBe(byOne);
          many.consumeClassN(CLASS_P, bytes, k);
          expect(many.available('PH')).toBe(one.available('PH'));
          expect(many.available('PD')).toBe(one.available('PD'));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('is unbounded by infinite credits', () => {
    const adv: CreditAdvertisement = {
      credits: { PH: 0, PD: 0, NPH: 0, NPD: 0, CplH: 0, CplD: 0 },
      scale: { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
    };
    expect(new TxCredits(adv).countClass(CLASS_P, 256, 1000)).toBe(1000);
    expect(dataCreditsFor(256)).toBe(16);
  });
});

describe('RxCredits.roomOf and receiveClassN', () => {
  it('TLPs that fit in roomOf, taken together, leave the counters as receiveClass one by one; the first that does not fit overruns', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ScaleFactor>(1, 4, 16),
        fc.integer({ min: 1, max: 127 }),
        fc.integer({ min: 16, max: 2047 }),
        fc.array(fc.integer({ min: 1, max: 64 }).map((dw) => dw * 4), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 0, max: 3000 }),
        (scale, ph, pd, sizes, preReceived) => {
          const adv: CreditAdvertisement = {
            credits: { PH: ph * scale, PD: pd * scale, NPH: 0, NPD: 0, CplH: 0, CplD: 0 },
            scale: { PH: scale, PD: scale, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
          };
          const one = new RxCredits(adv);
          const many = new RxCredits(adv);
          // Traffic first, released and updated, so that the counters are anywhere (wrapped too).
          for (let i = 0; i < preReceived; i++) {
            for (const r of [one, many]) {
              expect(r.receiveClass(CLASS_P, 16)).toBeUndefined();
              r.release('P', 16);
              r.takeUpdate();
            }
          }
          let heads = 0;
          let data = 0;
          const roomH = many.roomOf(0);
          const roomD = many.roomOf(1);
          for (const bytes of sizes) {
            const fits = heads + 1 <= roomH && data + dataCreditsFor(bytes) <= roomD;
            const overrun = one.receiveClass(CLASS_P, bytes);
            expect(overrun === undefined).toBe(fits);
            if (!fits) break;
            heads++;
            data += dataCreditsFor(bytes);
          }
          if (heads > 0) expect(many.receiveClassN(CLASS_P, heads, data)).toBeUndefined();
          expect(many.heldCredits('PH')).toBe(heads);
          expect(many.heldCredits('PD')).toBe(data);
          expect(many.roomOf(0)).toBe(roomH - heads);
          expect(many.roomOf(1)).toBe(roomD - data);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('encodeMemWriteHeadersInto', () => {
  it('writes the headers encodeMemWriteHeaderInto writes for each write, and nothing between them', () => {
    fc.assert(
      fc.property(
        arbMemWriteFields,
        fc.constantFrom(4, 64, 128, 256, 512, 4096),
        fc.constantFrom(0x10_0000, 0xffff_0000, 0x1_0000_0000, 0x1_2345_0000, 2 ** 52),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 3 }),
        (f, length, base, count, gap) => {
          const hdr = base >= FOUR_GIB ? 16 : 12;
          const stride = hdr + length + gap * 4;
          const got = new Uint8Array(16 + count * stride).fill(0xee);
          const want = new Uint8Array(got.length).fill(0xee);
          expect(encodeMemWriteHeadersInto(got, 8, stride, f, base, length, count)).toBe(hdr);
          for (let i = 0; i < count; i++) encodeMemWriteHeaderInto(want, 8 + i * stride, f, base + i * length, length);
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses writes that change header form at 4 GiB, cross 4 KB or do not fit', () => {
    const f: MemWriteFields = { requesterId: 1, tc: 0, ro: false, ns: false, ido: false, th: false };
    const out = new Uint8Array(8192);
    expect(() => encodeMemWriteHeadersInto(out, 0, 300, f, FOUR_GIB - 256, 256, 2)).toThrow(/header form/);
    expect(() => encodeMemWriteHeadersInto(out, 0, 300, f, 0x1000 - 128, 256, 2)).toThrow(/4-KB/);
    expect(() => encodeMemWriteHeadersInto(out, 0, 300, f, 0x2000, 256, 40)).toThrow(/buffer/);
  });
});

describe('BatchWriter.reserveItems', () => {
  it('places and commits items exactly as reserveItem and commitItem one by one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 3 }), (count, body, before) => {
        const one = new BatchWriter(1);
        const many = new BatchWriter(1);
        for (const w of [one, many]) for (let i = 0; i < before; i++) w.appendItem(ITEM.TLP, new Uint8Array(12).fill(i));
        for (let i = 0; i < count; i++) {
          const o = one.reserveItem(body);
          one.buffer.fill(i & 0xff, o, o + body);
          one.commitItem(ITEM.TLP, body);
        }
        const first = many.reserveItems(count, body);
        for (let i = 0; i < count; i++) many.buffer.fill(i & 0xff, first + i * (4 + body), first + i * (4 + body) + body);
        many.commitItems(count, ITEM.TLP, body);
        expect(many.itemCount).toBe(one.itemCount);
        expect(many.finish()).toEqual(one.finish());
      }),
      { numRuns: 200 },
    );
  });
});

describe('Link.sendMemWrites a stretch at a time', () => {
  it('sends the TLPs memWriteTlp makes for each MPS block, as many as the credits allow, and the same after updates', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4095 }).map((dw) => dw * 4),
        fc.integer({ min: 1, max: 6000 }).map((dw) => dw * 4),
        fc.constantFrom(128, 256, 512),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 200 }),
        fc.constantFrom(0x20_0000, FOUR_GIB - 0x2000, FOUR_GIB + 0x1000),
        (lead, length, mps, ph, pd, base) => {
          // The receiver's posted window: ph headers, pd × 16 bytes (unscaled counters).
          const p = linkPair({}, { credits: { PH: ph, PD: Math.max(pd, mps / 16) }, scales: { PH: 1, PD: 1 }, maxPayloadSize: mps });
          bringUp(p);
          const address = base + lead;
          const src = new Uint8Array(length + 8).map((_, i) => (i * 13 + 5) & 0xff);
          const f: MemWriteFields = { requesterId: 0x0100, tc: 2, ro: true, ns: false, ido: true, th: false };
          const got: Uint8Array[] = [];
          p.b.onTlp = (t) => {
            got.push(goldenEncode(t));
            p.b.releaseCredits('P', t.data!.length);
          };
          // What the gate lets go one by one, on a fresh pair of credit counters.
          let sent = 0;
          let total = 0;
          for (;;) {
            const n = p.a.sendMemWrites(f, address + total, src, 4 + total, length - total, mps);
            sent++;
            total += n;
            if (total === length || sent > 200) break;
            p.clock.run(); // deliver, release, update: then the rest
          }
          p.clock.run();
          expect(total).toBe(length);
          // Exactly memWriteTlp's TLPs for each MPS block, in order.
          const want: Uint8Array[] = [];
          for (let a = address; a < address + length; ) {
            const e = Math.min(address + length, a - (a % mps) + mps);
            want.push(goldenEncode(memWriteTlp({ ...f, address: a, data: src.slice(4 + a - address, 4 + e - address) })));
            a = e;
          }
          expect(got).toEqual(want);
          expect(p.b.creditsHeld('PH')).toBe(0);
          expect(p.a.counters.get(base + lead >= FOUR_GIB ? 'tlp.sent.MWr64' : 'tlp.sent.MWr') ?? 0).toBeGreaterThan(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('stops once a flush leaves the transport congested: no more than the batch that congested it', () => {
    const p = linkPair({ batchBytes: 16392 }, {}, { highWaterBytes: 1024, latencyNs: 10_000 });
    bringUp(p);
    const f: MemWriteFields = { requesterId: 0x0100, tc: 0, ro: false, ns: false, ido: false, th: false };
    const src = new Uint8Array(256 * 1024).fill(5);
    const sent = p.a.sendMemWrites(f, 0x20_0000, src, 0, src.length, 256);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(16392);
    expect(p.a.counters.get('stalls.transport')).toBe(1);
  });
});
