import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRng } from '../../src/core/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import {
  FrameChecker,
  FrameGenerator,
  TEST_ETHERTYPE,
  TEST_FRAME_MIN,
  buildTestFrame,
  crc32,
  parseTestFrame,
} from '../../src/net/index.js';

const A = Uint8Array.of(2, 0, 0, 0, 0, 1);
const B = Uint8Array.of(2, 0, 0, 0, 0, 2);

describe('crc32', () => {
  it('is the IEEE/zlib CRC-32 (check value of "123456789" is 0xCBF43926)', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('can be continued over pieces', () => {
    const d = new TextEncoder().encode('The quick brown fox jumps over the lazy dog');
    expect(crc32(d)).toBe(0x414fa339);
    expect(crc32(d, 10, d.length, crc32(d, 0, 10))).toBe(0x414fa339);
  });
});

describe('test frames', () => {
  it('lays out the header as documented (big-endian fields after ethertype 0x88B5)', () => {
    const f = buildTestFrame(A, B, 0x0102, 0x03040506, 64, 0x0000_0007_0000_0008);
    expect([...f.subarray(0, 14)]).toEqual([...A, ...B, 0x88, 0xb5]);
    expect([...f.subarray(14, 38)]).toEqual([
      0x54, 0x4c, 0x50, 0x57, // "TLPW"
      0x01, 0x02, // stream
      0x01, 0x00, // version 1, reserved
      0x03, 0x04, 0x05, 0x06, // seq
      0x00, 0x16, // payload length 64 - 42 = 22
      0x00, 0x00, // reserved
      0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, // time
    ]);
    const crc = crc32(Uint8Array.from([...f.subarray(14, 38), ...f.subarray(42)]));
    expect(new DataView(f.buffer).getUint32(38)).toBe(crc);
    expect(parseTestFrame(f)).toEqual({ stream: 0x0102, seq: 0x03040506, timeNs: 0x7_0000_0008, payloadLength: 22 });
    expect(TEST_FRAME_MIN).toBe(42);
    expect(TEST_ETHERTYPE).toBe(0x88b5);
  });

  it('generates numbered frames of the sizes asked for, stamped with the clock', () => {
    const clock = new VirtualClock();
    const rng = new SeededRng(1);
    const gen = new FrameGenerator({ dst: A, src: B, size: { min: 60, max: 1514 }, rng, clock, stream: 4 });
    const sizes = new Set<number>();
    for (let i = 0; i < 500; i++) {
      clock.run({ untilNs: i * 1000 });
      const f = gen.next();
      sizes.add(f.length);
      expect(f.length).toBeGreaterThanOrEqual(60);
      expect(f.length).toBeLessThanOrEqual(1514);
      const info = parseTestFrame(f);
      expect(info).toEqual({ stream: 4, seq: i, timeNs: i * 1000, payloadLength: f.length - 42 });
    }
    expect(sizes.size).toBeGreaterThan(300);
    expect(() => new FrameGenerator({ dst: A, src: B, size: 41 })).toThrow(/42/);
    expect(() => new FrameGenerator({ dst: A, src: B, size: { min: 60, max: 70 } })).toThrow(/rng/);
  });

  it('detects any single flipped bit after the MACs as corruption', () => {
    fc.assert(
      fc.property(fc.integer({ min: 42, max: 300 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (size, pos, bit) => {
        const f = buildTestFrame(A, B, 0, 5, size, 0);
        const at = 12 + (pos % (size - 12));
        f[at]! ^= 1 << bit;
        const r = parseTestFrame(f);
        expect('error' in r).toBe(true);
      }),
    );
  });

  it('ignores the MACs (a loopback swaps them) and accepts Ethernet padding up to 60 bytes only', () => {
    const f = buildTestFrame(A, B, 0, 1, 50, 0);
    f.set(B, 0);
    f.set(A, 6);
    expect('error' in parseTestFrame(f)).toBe(false);
    const padded = new Uint8Array(60);
    padded.set(f);
    expect('error' in parseTestFrame(padded)).toBe(false);
    const long = buildTestFrame(A, B, 0, 1, 100, 0);
    const longer = new Uint8Array(101);
    longer.set(long);
    expect(parseTestFrame(longer)).toMatchObject({ error: 'corrupted' });
    expect(parseTestFrame(long.subarray(0, 99))).toMatchObject({ error: 'corrupted' });
  });
});

describe('FrameChecker', () => {
  const frameN = (seq: number, stream = 0, t = 0) => buildTestFrame(A, B, stream, seq, 80, t);

  it('classifies ok, duplicate, out-of-order, lost, corrupted and foreign', () => {
    const c = new FrameChecker();
    expect(c.check(frameN(0))).toBe('ok');
    expect(c.check(frameN(1))).toBe('ok');
    expect(c.check(frameN(1))).toBe('duplicate');
    expect(c.check(frameN(4))).toBe('ok'); // 2 and 3 now missing
    expect(c.missingCount).toBe(2);
    expect(c.check(frameN(2))).toBe('out-of-order');
    expect(c.check(frameN(2))).toBe('duplicate');
    const bad = frameN(5);
    bad[60]! ^= 0xff;
    expect(c.check(bad)).toBe('corrupted');
    expect(c.lastCorruption).toMatch(/CRC/);
    expect(c.check(frameN(6, 9))).toBe('foreign'); // another stream
    const arp = new Uint8Array(60);
    arp[12] = 0x08;
    arp[13] = 0x06;
    expect(c.check(arp)).toBe('foreign');
    expect(c.check(frameN(7))).toBe('ok'); // 5 and 6 missing too
    const s = c.finish(10); // 8 and 9 never came
    expect(s).toMatchObject({ received: 10, ok: 4, duplicate: 2, outOfOrder: 1, corrupted: 1, foreign: 2, lost: 5 });
    // 3, 5, 6 missing in the middle; 8, 9 at the tail
    expect(s.errors).toBe(1 + 2 + 1 + 5);
  });

  it('counts a gap wider than the reorder window as lost as it goes', () => {
    const c = new FrameChecker({ reorderWindow: 10 });
    c.check(frameN(0));
    c.check(frameN(100));
    expect(c.lost).toBe(89);
    expect(c.missingCount).toBe(10);
    expect(c.check(frameN(95))).toBe('out-of-order');
    expect(c.check(frameN(50))).toBe('duplicate'); // too late: already counted lost
    expect(c.finish().lost).toBe(98);
  });

  it('measures round-trip latency from the send time in the frame', () => {
    const clock = new VirtualClock();
    const c = new FrameChecker({ clock });
    // sent at 0, received at 1000·k ns
    for (let k = 1; k <= 100; k++) {
      clock.run({ untilNs: k * 1000 });
      c.check(frameN(k - 1, 0, 0));
    }
    const s = c.finish();
    expect(s.latencyNs.count).toBe(100);
    expect(s.latencyNs.min).toBe(1000);
    expect(s.latencyNs.p50).toBe(50_000);
    expect(s.latencyNs.p99).toBe(99_000);
    expect(s.latencyNs.max).toBe(100_000);
    expect(s.latencyNs.mean).toBe(50_500);
    expect(new FrameChecker().finish().latencyNs.count).toBe(0);
  });
});
