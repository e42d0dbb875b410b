/**
 * MemReadRun: consecutive MRd/MRd64 of one buffer that read one contiguous range in equal pieces
 * with the same header but the tag. extend() is the per-TLP shortcut the link takes for the next
 * read of a run; it must add exactly what parseMemRead + add() would add, and nothing else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MEM_READ_RUN_MAX, MemReadRun, MemReadView, encodeTlp, memReadTlp, parseMemRead, type MemTlp } from '../../src/tlp/index.js';

const FOUR_GIB = 0x1_0000_0000;

/** Everything a run holds, tags included, for comparing two runs. */
function runState(r: MemReadRun): unknown {
  const n = r.count;
  return {
    n,
    end: r.end,
    address: r.address,
    readLength: r.readLength,
    wide: r.wide,
    requesterId: r.requesterId,
    tc: r.tc,
    ro: r.ro,
    ns: r.ns,
    ido: r.ido,
    dw0: r.dw0,
    dw1: r.dw1,
    ph: r.ph,
    bufferLength: r.bytes.length,
    tags: [...r.tags.subarray(0, n)],
    bodies: [...r.bodyOffsets.subarray(0, n)],
    lengths: [...r.bodyLengths.subarray(0, n)],
  };
}

/** The items back to back in one buffer, as a received batch holds them. */
function oneBuffer(items: readonly Uint8Array[]): { buf: Uint8Array; offsets: number[] } {
  const buf = new Uint8Array(items.reduce((n, b) => n + b.length + 4, 0));
  const offsets: number[] = [];
  let o = 0;
  for (const b of items) {
    o += 4; // room for an item header, as in a batch: the TLPs are not at offset 0
    buf.set(b, o);
    offsets.push(o);
    o += b.length;
  }
  return { buf, offsets };
}

function patchU32(b: Uint8Array, at: number, value: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, value >>> 0);
}

/**
 * What a run means, checked TLP by TLP from its bytes: each parses, has every byte enabled, the
 * run's fields and Length, its tag, and starts where the previous one ended.
 */
function expectRunHolds(r: MemReadRun): void {
  const v = new MemReadView();
  let shared = '';
  for (let k = 0; k < r.count; k++) {
    expect(parseMemRead(r.bytes, r.bodyOffsets[k]!, r.bodyLengths[k]!, v)).toBe(true);
    expect(v.firstBe).toBe(0xf);
    expect(v.lastBe).toBe(v.lengthDw === 1 ? 0 : 0xf);
    expect(v.addressHi * FOUR_GIB + v.addressLo).toBe(r.address + k * r.readLength);
    expect(v.lengthDw * 4).toBe(r.readLength);
    expect([v.wide, v.requesterId, v.tc, v.ro, v.ns, v.ido, v.ph]).toEqual([r.wide, r.requesterId, r.tc, r.ro, r.ns, r.ido, r.ph]);
    // AT and LN are in the run's DW0 (no fields of their own): the same for all.
    if (k === 0) shared = `${v.at} ${v.ln}`;
    expect(`${v.at} ${v.ln}`).toBe(shared);
    expect(v.tag).toBe(r.tags[k]);
  }
}

describe('MemReadRun.extend', () => {
  it('adds exactly what parseMemRead and add() would add, leaving the run as they leave it', () => {
    // Reads built by the codec, mostly continuing one another; each step may change one thing
    // (for good: requester, TC, RO, PH, length; for that read only: a gap, partial byte enables,
    // one header bit flipped, an item 4 bytes longer or shorter than its header).
    const stepArb = fc.record({
      change: fc.constantFrom('none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'gap', 'requester', 'tc', 'ro', 'ph', 'length', 'partial', 'flip', 'size'),
      dws: fc.constantFrom(1, 1, 2, 3, 16, 64, 96, 128, 128, 1024),
      gap: fc.constantFrom(4, 8, -4, 4096),
      requesterId: fc.constantFrom(0x0100, 0x0208),
      tag: fc.integer({ min: 0, max: 1023 }),
      // Leave out the first byte, or the last.
      partialFirst: fc.boolean(),
      tc: fc.constantFrom(0, 3),
      ro: fc.boolean(),
      ph: fc.constantFrom(0, 1, 2),
      flipByte: fc.integer({ min: 0, max: 15 }),
      flipBit: fc.integer({ min: 0, max: 7 }),
      // A read that would cross 4 KiB: built as it is (its address patched in by hand) or moved to the next page.
      crossAsIs: fc.boolean(),
    });
    const starts = fc.constantFrom(0x10_0000, 0x10_0f00, 0xffff_f000, 0xffff_fe00, 0x1_2345_6000, 0xffff_ffff_f000, 2 ** 53 - 0x10_0000);
    let extended = 0;
    let refusedByExtend = 0;
    let crossings = 0;
    fc.assert(
      fc.property(starts, fc.integer({ min: 0, max: 9 }), fc.array(stepArb, { minLength: 1, maxLength: 40 }), (start, firstDws, steps) => {
        const items: Uint8Array[] = [];
        let address = start;
        let dws = [1, 1, 2, 3, 16, 64, 96, 128, 128, 1024][firstDws]!;
        let requesterId = 0x0100;
        let tc = 0;
        let ro = false;
        let ph = 0;
        for (const st of steps) {
          if (st.change === 'length') dws = st.dws;
          if (st.change === 'requester') requesterId = st.requesterId;
          if (st.change === 'tc') tc = st.tc;
          if (st.change === 'ro') ro = st.ro;
          if (st.change === 'ph') ph = st.ph;
          if (st.change === 'gap') address = Math.max(0, address + st.gap);
          const bytes = dws * 4;
          // The codec builds no read that crosses 4 KiB: such a read is built at the start of its
          // page and its address patched in by hand, or it moves to the next page.
          if (address + 8192 > 2 ** 53) address = start;
          const crossing = (address % 4096) + bytes > 4096;
          const patchTo = crossing && st.crossAsIs ? address : -1;
          const at = crossing ? address - (address % 4096) + (st.crossAsIs ? 0 : 4096) : address;
          const o = { requesterId, tag: st.tag, tc, ro };
          let t: MemTlp;
          if (st.change === 'partial' && bytes > 1) {
            t = st.partialFirst ? memReadTlp({ ...o, address: at + 1, byteLength: bytes - 1 }) : memReadTlp({ ...o, address: at, byteLength: bytes - 1 });
          } else {
            t = memReadTlp({ ...o, address: at, byteLength: bytes });
          }
          // PH bits with TH clear (reserved there): parseMemRead reads them, so a run must agree on them.
          t.ph = ph;
          const b = encodeTlp(t);
          if (patchTo >= 0) {
            patchU32(b, b.length - 4, ((patchTo % FOUR_GIB) | ph) >>> 0);
            crossings++;
          } else address = at;
          if (st.change === 'flip' && st.flipByte < b.length) b[st.flipByte]! ^= 1 << st.flipBit;
          if (st.change === 'size') {
            // Shorter, or longer by a copy of its last DW (so that a reader of "the last DW" is fooled).
            if (st.partialFirst) items.push(b.subarray(0, b.length - 4));
            else {
              const longer = new Uint8Array(b.length + 4);
              longer.set(b);
              longer.set(b.subarray(b.length - 4), b.length);
              items.push(longer);
            }
          } else items.push(b);
          address += bytes;
        }
        const { buf, offsets } = oneBuffer(items);
        const viaExtend = new MemReadRun();
        const viaParse = new MemReadRun();
        const v = new MemReadView();
        for (let i = 0; i < items.length; i++) {
          const off = offsets[i]!;
          const len = items[i]!.length;
          const ref = parseMemRead(buf, off, len, v) && viaParse.add(buf, off, len, v);
          const before = viaExtend.count;
          const got = before > 0 ? viaExtend.extend(buf, off, len) : parseMemRead(buf, off, len, v) && viaExtend.add(buf, off, len, v);
          expect(got).toBe(ref);
          if (before > 0) {
            if (got) extended++;
            else refusedByExtend++;
          }
          if (!ref) {
            // The state a refusal leaves is the one before it.
            expect(runState(viaExtend)).toEqual(runState(viaParse));
            // The link then starts a new run with this TLP; both do the same.
            viaParse.clear();
            viaExtend.clear();
            const again = parseMemRead(buf, off, len, v) && viaParse.add(buf, off, len, v);
            expect(parseMemRead(buf, off, len, v) && viaExtend.add(buf, off, len, v)).toBe(again);
          }
          expect(runState(viaExtend)).toEqual(runState(viaParse));
          expectRunHolds(viaExtend);
          // The tag recorded is the TLP's own (10 bits: T9, T8 in DW0 and the tag byte of DW1).
          if (got && parseMemRead(buf, off, len, v)) expect(viaExtend.tags[viaExtend.count - 1]).toBe(v.tag);
        }
      }),
      { numRuns: 400 },
    );
    // The property exercised both answers of extend, not only the first add of each run.
    expect(extended).toBeGreaterThan(400);
    expect(refusedByExtend).toBeGreaterThan(200);
    expect(crossings).toBeGreaterThan(10);
  });

  it('a run keeps the 10-bit tags and the fields the reads share', () => {
    const tags = [0x000, 0x3ff, 0x100, 0x2ab, 0x0ff];
    const items = tags.map((tag, i) => encodeTlp(memReadTlp({ requesterId: 0x0a08, tag, address: 0x1_0000_2000 + i * 512, byteLength: 512, tc: 2, ns: true })));
    const { buf, offsets } = oneBuffer(items);
    const run = new MemReadRun();
    const v = new MemReadView();
    expect(parseMemRead(buf, offsets[0]!, 16, v) && run.add(buf, offsets[0]!, 16, v)).toBe(true);
    for (let i = 1; i < items.length; i++) expect(run.extend(buf, offsets[i]!, 16)).toBe(true);
    expect(run.count).toBe(5);
    expect([...run.tags.subarray(0, 5)]).toEqual(tags);
    expect(run.wide).toBe(true);
    expect(run.address).toBe(0x1_0000_2000);
    expect(run.readLength).toBe(512);
    expect(run.end).toBe(0x1_0000_2000 + 5 * 512);
    expect([run.requesterId, run.tc, run.ns, run.ro, run.ido]).toEqual([0x0a08, 2, true, false, false]);
    expect([...run.bodyOffsets.subarray(0, 5)]).toEqual(offsets);
    expect([...run.bodyLengths.subarray(0, 5)]).toEqual([16, 16, 16, 16, 16]);
    run.clear();
    expect(run.count).toBe(0);
    expect(run.bytes.length).toBe(0);
  });
});

describe('MemReadRun.extend refuses', () => {
  it('a read that continues the run but crosses a 4 KB boundary, as parseMemRead does (MRd and MRd64)', () => {
    for (const base of [0x10_0000, 0x2_0010_0000]) {
      const wide = base >= FOUR_GIB;
      // Reads of 384 bytes from +0x980: the fifth, at +0xf80, would end at +0x1100. The codec
      // refuses to build it, so a valid 384-byte read's address DW is patched by hand.
      const run4 = [0x980, 0xb00, 0xc80, 0xe00].map((o, i) => encodeTlp(memReadTlp({ requesterId: 0x0100, tag: i, address: base + o, byteLength: 384 })));
      const crossing = encodeTlp(memReadTlp({ requesterId: 0x0100, tag: 4, address: base, byteLength: 384 }));
      patchU32(crossing, wide ? 12 : 8, (base + 0xf80) % FOUR_GIB);
      const { buf, offsets } = oneBuffer([...run4, crossing]);
      const hdr = crossing.length;
      const v = new MemReadView();
      expect(parseMemRead(buf, offsets[4]!, hdr, v)).toBe(false);
      const run = new MemReadRun();
      expect(parseMemRead(buf, offsets[0]!, hdr, v) && run.add(buf, offsets[0]!, hdr, v)).toBe(true);
      for (let i = 1; i < 4; i++) expect(run.extend(buf, offsets[i]!, hdr)).toBe(true);
      expect(run.end).toBe(base + 0xf80);
      const before = runState(run);
      expect(run.extend(buf, offsets[4]!, hdr)).toBe(false);
      expect(runState(run)).toEqual(before);
      // Only the address makes it cross: the same bytes with the address DW of +0x980 are a valid read.
      patchU32(buf, offsets[4]! + hdr - 4, (base + 0x980) % FOUR_GIB);
      expect(parseMemRead(buf, offsets[4]!, hdr, v)).toBe(true);
    }
  });

  it('a read of another buffer, even one with the same bytes', () => {
    const items = [0, 1].map((i) => encodeTlp(memReadTlp({ requesterId: 0x0100, tag: i, address: 0x4000 + i * 256, byteLength: 256 })));
    const a = oneBuffer(items);
    const b = oneBuffer(items);
    const v = new MemReadView();
    const run = new MemReadRun();
    expect(parseMemRead(a.buf, a.offsets[0]!, 12, v) && run.add(a.buf, a.offsets[0]!, 12, v)).toBe(true);
    expect(run.extend(b.buf, b.offsets[1]!, 12)).toBe(false);
    expect(parseMemRead(b.buf, b.offsets[1]!, 12, v)).toBe(true);
    expect(run.add(b.buf, b.offsets[1]!, 12, v)).toBe(false);
    expect(run.count).toBe(1);
    expect(run.bytes).toBe(a.buf);
    // The same read in the run's own buffer is taken.
    expect(run.extend(a.buf, a.offsets[1]!, 12)).toBe(true);
    expect(run.count).toBe(2);
  });

  it(`more than MEM_READ_RUN_MAX (${MEM_READ_RUN_MAX}) reads`, () => {
    const n = MEM_READ_RUN_MAX + 1;
    const items: Uint8Array[] = [];
    for (let i = 0; i < n; i++) items.push(encodeTlp(memReadTlp({ requesterId: 0x0100, tag: i & 0x3ff, address: 0x10_0000 + i * 4, byteLength: 4 })));
    const { buf, offsets } = oneBuffer(items);
    const v = new MemReadView();
    const run = new MemReadRun();
    expect(parseMemRead(buf, offsets[0]!, 12, v) && run.add(buf, offsets[0]!, 12, v)).toBe(true);
    for (let i = 1; i < MEM_READ_RUN_MAX; i++) expect(run.extend(buf, offsets[i]!, 12)).toBe(true);
    expect(run.count).toBe(MEM_READ_RUN_MAX);
    expect(run.end).toBe(0x10_0000 + MEM_READ_RUN_MAX * 4);
    const last = offsets[MEM_READ_RUN_MAX]!;
    expect(run.extend(buf, last, 12)).toBe(false);
    expect(parseMemRead(buf, last, 12, v)).toBe(true);
    expect(run.add(buf, last, 12, v)).toBe(false);
    expect(run.count).toBe(MEM_READ_RUN_MAX);
    expect(run.tags.length).toBe(MEM_READ_RUN_MAX);
    // A fresh run takes it.
    run.clear();
    expect(run.add(buf, last, 12, v)).toBe(true);
    expect(run.tags[0]).toBe(MEM_READ_RUN_MAX & 0x3ff);
  });
});
