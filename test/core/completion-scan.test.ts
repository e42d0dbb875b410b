/**
 * The native CplD scan (scanCompletions in native/tap/bulkcopy.c, typed in src/core/bulk-copy.ts)
 * against a byte-by-byte reference written here from the rules, on completions built from the
 * PCIe header layout by the independent golden builder (never src/tlp's encoders).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SCAN_TABLE_STRIDE, SCAN_TABLE_TAGS, loadNativeBulkCopy, type ScanCompletionsFn } from '../../src/core/index.js';
import type { CplStatus, CplTlp } from '../../src/tlp/index.js';
import { goldenEncode } from '../tlp/golden-builder.js';

const loaded = loadNativeBulkCopy();
const scan: ScanCompletionsFn | undefined = typeof loaded === 'string' ? undefined : loaded.scanCompletions;
const skipped =
  typeof loaded === 'string' ? ` — skipped: ${loaded}` : scan === undefined ? ' — skipped: the addon was built without scanCompletions (npm run build:native)' : '';

const TABLE_LENGTH = SCAN_TABLE_STRIDE * SCAN_TABLE_TAGS;
const ITEM_TLP = 0x01;

// ---------------------------------------------------------------------------------------------
// The reference: the rules of the brief, one byte at a time, with no shared code.

const reference: ScanCompletionsFn = (msg, off, end, table, dests, out, requesterId, mps, rcb) => {
  const room = Math.floor((out.length - 1) / 2);
  let taken = 0;
  let p = off;
  out[0] = 0;
  for (;;) {
    if (taken >= room) return p;
    // a. a whole TLP item with room for a 3-DW header
    if (p + 4 + 12 > end || msg[p] !== ITEM_TLP) return p;
    const len = msg[p + 2]! * 256 + msg[p + 3]!;
    const body = p + 4;
    if (body + len > end) return p;
    const byte = (i: number): number => msg[body + i]!;
    // b. Fmt 010 Type 01010
    if (byte(0) !== 0b010_01010) return p;
    // c. TD, EP
    if ((byte(2) & 0x80) !== 0 || (byte(2) & 0x40) !== 0) return p;
    // d. Length
    const lengthDw = (byte(2) & 3) * 256 + byte(3) || 1024;
    if (len !== 12 + 4 * lengthDw) return p;
    // e. DW1: Completer ID (bytes 4, 5), Status (byte 6 bits 7:5), BCM, Byte Count (12 bits)
    if (byte(6) >> 5 !== 0) return p;
    const byteCount = (byte(6) & 0x0f) * 256 + byte(7) || 4096;
    // f. DW2: Requester ID (bytes 8, 9), Tag[7:0] (byte 10), R and Lower Address (byte 11)
    if (byte(8) * 256 + byte(9) !== requesterId) return p;
    const tag = ((byte(1) >> 7) & 1) * 512 + ((byte(1) >> 3) & 1) * 256 + byte(10);
    const lowerAddress = byte(11) & 0x7f;
    // g.
    const at = tag * SCAN_TABLE_STRIDE;
    if (table[at] !== 1 || table[at + 1] !== ((byte(1) >> 4) & 7)) return p;
    // h.
    const next = table[at + 4]! >>> 0;
    const remaining = table[at + 5]!;
    const dataLength = 4 * lengthDw;
    if (byteCount !== remaining || lowerAddress !== next % 128 || dataLength > mps) return p;
    // i.
    const lead = next % 4;
    let n = dataLength - lead;
    if (n >= remaining) {
      if (lengthDw !== Math.ceil((lead + remaining) / 4)) return p;
      n = remaining;
    } else if ((next + n) % rcb !== 0) {
      return p;
    }
    // j.
    const dest = dests[table[at + 2]!];
    const destOffset = table[at + 3]!;
    if (!(dest instanceof Uint8Array) || destOffset < 0 || destOffset + n > dest.length) return p;
    // k.
    for (let i = 0; i < n; i++) dest[destOffset + i] = msg[body + 12 + lead + i]!;
    table[at + 3] = destOffset + n;
    table[at + 4] = (next + n) % 2 ** 32 | 0;
    table[at + 5] = remaining - n;
    if (table[at + 5] === 0) table[at] = 0;
    out[1 + 2 * taken] = tag;
    out[2 + 2 * taken] = n;
    taken++;
    out[0] = taken;
    p = body + len;
  }
};

// ---------------------------------------------------------------------------------------------
// Building completions and batches.

interface CplFields {
  tag: number;
  tc: number;
  requesterId: number;
  status: CplStatus;
  byteCount: number;
  lowerAddress: number;
  lengthDw: number;
  data: Uint8Array;
  /** Bits the scan must not care about. */
  completerId?: number;
  attrs?: number;
}

/** A CplD's wire bytes from the golden builder (Figure 2-79), with DW0's Fmt/Type as given. */
function cpld(f: CplFields): Uint8Array {
  const attrs = f.attrs ?? 0;
  const t: CplTlp = {
    kind: 'CplD',
    tc: f.tc,
    ido: (attrs & 1) !== 0,
    ro: (attrs & 2) !== 0,
    ns: (attrs & 4) !== 0,
    ln: (attrs & 8) !== 0,
    th: (attrs & 16) !== 0,
    td: false,
    ep: false,
    at: (attrs >> 5) & 3,
    lengthDw: f.lengthDw,
    completerId: f.completerId ?? 0x0100,
    status: f.status,
    bcm: (attrs & 128) !== 0,
    byteCount: f.byteCount,
    requesterId: f.requesterId,
    tag: f.tag,
    lowerAddress: f.lowerAddress,
    data: f.data,
  };
  return goldenEncode(t);
}

/** A tlpwire item: [type][flags][len BE16][body]. */
function item(type: number, body: Uint8Array, flags = 0): Uint8Array {
  const b = new Uint8Array(4 + body.length);
  b[0] = type;
  b[1] = flags;
  b[2] = body.length >> 8;
  b[3] = body.length & 0xff;
  b.set(body, 4);
  return b;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The byte a read's memory holds at an address: recognisable in the destination. */
const memByte = (tag: number, address: number): number => (address * 7 + tag * 13 + 1) & 0xff;

interface Read {
  tag: number;
  tc: number;
  destId: number;
  destOffset: number;
  address: number;
  size: number;
  armed: number;
}

/**
 * The completions a completer may send for `read` (§2.3.1.1): every one but the last ends at an
 * RCB boundary, none carries more than maxPayload bytes (counting the DW-aligned lead).
 * `picks` chooses among the legal split points; a `sloppy` completer also splits elsewhere.
 */
function completionsOf(
  read: Read,
  requesterId: number,
  rcb: number,
  maxPayload: number,
  picks: readonly number[],
  sloppy = false,
): { fields: CplFields; bytes: Uint8Array }[] {
  const out: { fields: CplFields; bytes: Uint8Array }[] = [];
  let cur = read.address;
  let left = read.size;
  let pick = 0;
  while (left > 0) {
    const lead = cur % 4;
    const lastLengthDw = Math.ceil((lead + left) / 4);
    const ends: number[] = [];
    if (lastLengthDw * 4 <= maxPayload) ends.push(cur + left);
    for (let b = (Math.floor(cur / rcb) + 1) * rcb; b < cur + left && b - (cur - lead) <= maxPayload; b += rcb) ends.push(b);
    if (ends.length === 0) ends.push(cur + left); // cannot happen with maxPayload >= rcb
    const choice = picks[pick++ % Math.max(1, picks.length)] ?? 0;
    let stop = ends[choice % ends.length]!;
    if (sloppy && choice % 2 === 1) stop = Math.min(cur + left, cur - lead + maxPayload, cur + 1 + ((choice * 37) % left));
    const n = stop - cur;
    const lengthDw = Math.ceil((lead + n) / 4);
    const data = new Uint8Array(lengthDw * 4);
    for (let i = 0; i < data.length; i++) data[i] = i >= lead && i < lead + n ? memByte(read.tag, cur - lead + i) : 0xa5;
    const fields: CplFields = {
      tag: read.tag,
      tc: read.tc,
      requesterId,
      status: 'SC',
      byteCount: left,
      lowerAddress: cur % 128,
      lengthDw,
      data,
    };
    out.push({ fields, bytes: cpld(fields) });
    cur += n;
    left -= n;
  }
  return out;
}

function tableOf(reads: readonly Read[], junk: readonly (readonly number[])[] = []): Int32Array {
  const t = new Int32Array(TABLE_LENGTH);
  // junk: [tag, armed, tc, destId, destOffset, next, remaining, unused]
  for (const j of junk) t.set(j.slice(1, 8), (j[0]! % SCAN_TABLE_TAGS) * SCAN_TABLE_STRIDE);
  for (const r of reads) t.set([r.armed, r.tc, r.destId, r.destOffset, r.address | 0, r.size, 0, 0], r.tag * SCAN_TABLE_STRIDE);
  return t;
}

const MUTATIONS = [
  'none',
  'status',
  'ep',
  'td',
  'lock',
  'requester',
  'tag',
  'tc',
  'byteCount',
  'lowerAddress',
  'lengthField',
  'itemLength',
  'dup',
  'extraDw',
  'reservedBits',
] as const;
type Mutation = (typeof MUTATIONS)[number];

/** One CplD item changed so that (usually) some rule no longer holds. */
function mutate(bytes: Uint8Array, how: Mutation, x: number): Uint8Array[] {
  const b = bytes.slice();
  const flip = 1 + (x % 255); // never 0
  switch (how) {
    case 'none':
      return [item(ITEM_TLP, b)];
    case 'dup':
      return [item(ITEM_TLP, b), item(ITEM_TLP, b)];
    case 'status':
      b[6] = (b[6]! & 0x1f) | ([1, 2, 4, 3, 7][x % 5]! << 5); // UR, CRS, CA, reserved
      return [item(ITEM_TLP, b)];
    case 'ep':
      b[2] = b[2]! | 0x40;
      return [item(ITEM_TLP, b)];
    case 'td': {
      b[2] = b[2]! | 0x80; // with a digest DW, as a real one would carry
      return [item(ITEM_TLP, concat([b, Uint8Array.of(1, 2, 3, 4)]))];
    }
    case 'lock':
      b[0] = 0b010_01011; // CplDLk
      return [item(ITEM_TLP, b)];
    case 'requester':
      b[8] = b[8]! ^ flip;
      return [item(ITEM_TLP, b)];
    case 'tag':
      if (x % 3 === 0) b[1] = b[1]! ^ 0x80; // T9
      else if (x % 3 === 1) b[1] = b[1]! ^ 0x08; // T8
      else b[10] = b[10]! ^ flip;
      return [item(ITEM_TLP, b)];
    case 'tc':
      b[1] = b[1]! ^ (1 + (x % 7)) << 4;
      return [item(ITEM_TLP, b)];
    case 'byteCount': {
      const bc = (((b[6]! & 0x0f) << 8) | b[7]!) ^ (1 + (x % 0xfff));
      b[6] = (b[6]! & 0xf0) | (bc >> 8);
      b[7] = bc & 0xff;
      return [item(ITEM_TLP, b)];
    }
    case 'lowerAddress':
      b[11] = (b[11]! & 0x80) | ((b[11]! ^ (1 + (x % 127))) & 0x7f);
      return [item(ITEM_TLP, b)];
    case 'lengthField': {
      const l = ((((b[2]! & 3) << 8) | b[3]!) + (x % 2 === 0 ? 1 : 1023)) & 0x3ff;
      b[2] = (b[2]! & 0xfc) | (l >> 8);
      b[3] = l & 0xff;
      return [item(ITEM_TLP, b)];
    }
    case 'reservedBits':
      // DW2 bit 7 (R), BCM and the Completer ID: none of them the scan's business, still taken
      b[11] = b[11]! | 0x80;
      b[6] = b[6]! | 0x10;
      b[4] = b[4]! ^ flip;
      return [item(ITEM_TLP, b)];
    case 'extraDw': {
      // one more DW of payload, the header's Length and the item saying so
      const l = ((((b[2]! & 3) << 8) | b[3]!) + 1) & 0x3ff;
      b[2] = (b[2]! & 0xfc) | (l >> 8);
      b[3] = l & 0xff;
      return [item(ITEM_TLP, concat([b, Uint8Array.of(0xee, 0xee, 0xee, 0xee)]))];
    }
    case 'itemLength':
      return [item(ITEM_TLP, x % 2 === 0 ? concat([b, Uint8Array.of(0, 0, 0, 0)]) : b.subarray(0, b.length - 4))];
  }
}

/** Equal bytes (quick), with vitest's element-by-element diff only when they differ. */
function expectSame(got: Uint8Array | Int32Array, want: Uint8Array | Int32Array, what: string): void {
  const a = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  const b = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
  if (!a.equals(b)) expect(got, what).toEqual(want);
  expect(got.constructor).toBe(want.constructor);
}

// ---------------------------------------------------------------------------------------------

describe('scanCompletions (native CplD fast path)', () => {
  it.skipIf(scan === undefined)(`takes the CplDs of outstanding reads and copies their payloads${skipped}`, () => {
    if (scan === undefined) return;
    const rid = 0x0200;
    const reads: Read[] = [
      { tag: 5, tc: 0, destId: 0, destOffset: 0, address: 0x1000, size: 512, armed: 1 }, // two CplDs split at 256
      { tag: 0x301, tc: 3, destId: 1, destOffset: 10, address: 0xfffffff0, size: 16, armed: 1 }, // one CplD, next wraps
      { tag: 0x2ff, tc: 7, destId: 1, destOffset: 100, address: 0x2003, size: 200, armed: 1 }, // lead 3, split at an RCB of 64
    ];
    const [a1, a2] = completionsOf(reads[0]!, rid, 256, 256, [0]);
    expect(a1!.fields.lengthDw).toBe(64);
    const [b1] = completionsOf(reads[1]!, rid, 64, 256, [0]);
    // lead 3: the first ends at 0x2040 (61 bytes, 16 DW), the rest (139 bytes) in one
    const [c1, c2] = completionsOf(reads[2]!, rid, 64, 256, [1, 0]);
    expect(c1!.fields.lengthDw).toBe(16);
    expect(c2!.fields.byteCount).toBe(139);
    const stray = item(ITEM_TLP, cpld({ ...a1!.fields, status: 'UR', lengthDw: 1, data: new Uint8Array(4) }));
    const msg = concat([Uint8Array.of(9, 9, 9), ...[a1, b1, c1, a2, c2].map((c) => item(ITEM_TLP, c!.bytes)), stray]);
    const table = tableOf(reads);
    const dests = [new Uint8Array(512), new Uint8Array(400)];
    const out = new Int32Array(1 + 2 * 16).fill(-7);
    const stop = scan(msg, 3, msg.length, table, dests, out, rid, 256, 64);
    expect(stop).toBe(msg.length - stray.length);
    expect([...out.subarray(0, 11)]).toEqual([5, 5, 256, 0x301, 16, 0x2ff, 61, 5, 256, 0x2ff, 139]);
    for (let i = 0; i < 512; i++) expect(dests[0]![i]).toBe(memByte(5, 0x1000 + i));
    for (let i = 0; i < 16; i++) expect(dests[1]![10 + i]).toBe(memByte(0x301, 0xfffffff0 + i));
    for (let i = 0; i < 200; i++) expect(dests[1]![100 + i]).toBe(memByte(0x2ff, 0x2003 + i));
    expect(dests[1]![99]).toBe(0);
    expect(dests[1]![300]).toBe(0);
    expect([...table.subarray(5 * 8, 5 * 8 + 6)]).toEqual([0, 0, 0, 512, 0x1200, 0]);
    expect([...table.subarray(0x301 * 8, 0x301 * 8 + 6)]).toEqual([0, 3, 1, 26, 0, 0]);
    expect([...table.subarray(0x2ff * 8, 0x2ff * 8 + 6)]).toEqual([0, 7, 1, 300, 0x2003 + 200, 0]);
    // nothing to take: `off` comes back and out[0] is 0
    expect(scan(msg, stop, msg.length, table, dests, out, rid, 256, 64)).toBe(stop);
    expect(out[0]).toBe(0);
  });

  it.skipIf(scan === undefined)(`agrees with a byte-by-byte reference on random batches${skipped}`, () => {
    if (scan === undefined) return;
    const readArb = fc.record({
      tc: fc.nat(7),
      destId: fc.oneof({ weight: 9, arbitrary: fc.nat(2) }, { weight: 1, arbitrary: fc.integer({ min: -2, max: 6 }) }),
      destOffset: fc.oneof({ weight: 9, arbitrary: fc.nat(600) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 1200 }) }),
      address: fc.oneof(
        fc.nat(0xffff).map((a) => a * 0x10000), // aligned
        fc.integer({ min: 0, max: 0xffffffff }), // anywhere, lead 0..3, may wrap
        fc.integer({ min: 0xfffffe00, max: 0xffffffff }),
      ),
      size: fc.oneof(
        { weight: 3, arbitrary: fc.constant(512) },
        { weight: 3, arbitrary: fc.integer({ min: 1, max: 64 }) },
        { weight: 3, arbitrary: fc.integer({ min: 1, max: 1100 }) },
        { weight: 1, arbitrary: fc.constant(4096) },
      ),
      armed: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(0, 2, -1) }),
      picks: fc.array(fc.nat(20), { minLength: 1, maxLength: 6 }),
    });
    const scenario = fc.record({
      requesterId: fc.nat(0xffff),
      mps: fc.constantFrom(128, 256, 512, 4096),
      rcb: fc.constantFrom(64, 128),
      /** the completer's max payload relative to ours: bigger means some payloads exceed mps */
      oversize: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(2) }),
      tags: fc.uniqueArray(fc.nat(SCAN_TABLE_TAGS - 1), { minLength: 1, maxLength: 6 }),
      reads: fc.array(readArb, { minLength: 6, maxLength: 6 }),
      junk: fc.array(fc.tuple(fc.nat(SCAN_TABLE_TAGS - 1), fc.constantFrom(0, 1), fc.nat(7), fc.nat(4), fc.nat(700), fc.integer(), fc.nat(5000), fc.integer()), { maxLength: 8 }),
      destSizes: fc.array(fc.oneof({ weight: 6, arbitrary: fc.constant(4700) }, { weight: 1, arbitrary: fc.nat(1400) }), { minLength: 3, maxLength: 4 }),
      sloppy: fc.nat(3).map((x) => x === 0),
      holeAt: fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(3) }),
      order: fc.array(fc.nat(1000), { maxLength: 64 }),
      mutations: fc.array(fc.tuple(fc.oneof({ weight: 12, arbitrary: fc.constant<Mutation>('none') }, { weight: 1, arbitrary: fc.constantFrom(...MUTATIONS) }), fc.nat(10_000)), {
        maxLength: 64,
      }),
      others: fc.array(fc.tuple(fc.nat(63), fc.integer({ min: 0, max: 255 }).filter((t) => t !== ITEM_TLP), fc.uint8Array({ maxLength: 40 })), { maxLength: 3 }),
      prefix: fc.uint8Array({ maxLength: 6 }),
      cut: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) }),
      outEntries: fc.oneof({ weight: 5, arbitrary: fc.constant(64) }, { weight: 2, arbitrary: fc.nat(8) }),
      outExtra: fc.nat(1),
    });
    let runsTaking = 0;
    let totalTaken = 0;
    fc.assert(
      fc.property(scenario, (s) => {
        const reads: Read[] = s.tags.map((tag, i) => ({ tag, ...s.reads[i]! }));
        const table = tableOf(reads, s.junk);
        // each read's completions, interleaved at random but in order within a read
        const queues = reads.map((r, i) => completionsOf(r, s.requesterId, s.rcb, s.mps * s.oversize, s.reads[i]!.picks, s.sloppy).map((c) => c.bytes));
        const cplds: Uint8Array[] = [];
        let o = 0;
        while (queues.some((q) => q.length > 0)) {
          const live = queues.filter((q) => q.length > 0);
          cplds.push(live[(s.order[o++ % Math.max(1, s.order.length)] ?? 0) % live.length]!.shift()!);
        }
        const items: Uint8Array[] = [];
        cplds.forEach((c, i) => {
          const [how, x] = s.mutations[i % Math.max(1, s.mutations.length)] ?? ['none', 0];
          items.push(...mutate(c, how, x));
        });
        for (const [at, type, body] of s.others) items.splice(Math.min(at, items.length), 0, item(type, body, at));
        const msg = concat([s.prefix, ...items]);
        const off = s.prefix.length;
        const end = Math.max(off, msg.length - s.cut);
        const dests: (Uint8Array | undefined)[] = s.destSizes.map((n, k) => Uint8Array.from({ length: n }, (_, i) => (i + k * 31) & 0xff));
        if (s.holeAt !== null && s.holeAt < dests.length) dests[s.holeAt] = undefined;
        const out = new Int32Array(1 + 2 * s.outEntries + s.outExtra).fill(-1);

        const copy = {
          msg: msg.slice(),
          table: table.slice(),
          dests: dests.map((d) => d?.slice()),
          out: out.slice(),
        };
        const got = scan(msg, off, end, table, dests, out, s.requesterId, s.mps, s.rcb);
        const want = reference(copy.msg, off, end, copy.table, copy.dests, copy.out, s.requesterId, s.mps, s.rcb);
        expect(got).toBe(want);
        expectSame(out, copy.out, 'out');
        expectSame(table, copy.table, 'table');
        expect(dests.length).toBe(copy.dests.length);
        dests.forEach((d, k) => (d === undefined ? expect(copy.dests[k]).toBeUndefined() : expectSame(d, copy.dests[k]!, `dests[${k}]`)));
        expectSame(msg, copy.msg, 'msg');
        if (out[0]! > 0) runsTaking++;
        totalTaken += out[0]!;
      }),
      { numRuns: 300 },
    );
    // the random batches must actually exercise taking, not only the refusals
    expect(runsTaking).toBeGreaterThan(100);
    expect(totalTaken).toBeGreaterThan(400);
  });

  it.skipIf(scan === undefined)(`stops at the first item out has no room for${skipped}`, () => {
    if (scan === undefined) return;
    const rid = 0x1234;
    const reads: Read[] = [0, 1, 2].map((k) => ({ tag: 40 + k, tc: 1, destId: 0, destOffset: 64 * k, address: 0x8000 + 0x1000 * k, size: 64, armed: 1 }));
    const items = reads.map((r) => item(ITEM_TLP, completionsOf(r, rid, 64, 128, [0])[0]!.bytes));
    const msg = concat(items);
    const third = items[0]!.length + items[1]!.length;
    for (const [outLength, stop, taken] of [
      [1, 0, 0],
      [2, 0, 0],
      [3, items[0]!.length, 1],
      [5, third, 2],
      [6, third, 2],
      [7, msg.length, 3],
    ] as const) {
      const table = tableOf(reads);
      const dest = new Uint8Array(192);
      const out = new Int32Array(outLength).fill(-1);
      expect(scan(msg, 0, msg.length, table, [dest], out, rid, 128, 64), `out.length ${outLength}`).toBe(stop);
      expect(out[0]).toBe(taken);
      for (let j = 0; j < taken; j++) expect([out[1 + 2 * j], out[2 + 2 * j]]).toEqual([40 + j, 64]);
      // untouched past the entries written
      for (let i = 1 + 2 * taken; i < outLength; i++) expect(out[i]).toBe(-1);
      // the tags not taken are still armed, their bytes not copied
      for (let k = taken; k < 3; k++) expect(table[(40 + k) * SCAN_TABLE_STRIDE]).toBe(1);
      expect(dest.subarray(64 * taken).every((b) => b === 0)).toBe(true);
    }
  });

  it.skipIf(scan === undefined)(`does not take a repeated completion for a finished read${skipped}`, () => {
    if (scan === undefined) return;
    const read: Read = { tag: 7, tc: 0, destId: 0, destOffset: 0, address: 0x100, size: 32, armed: 1 };
    const one = item(ITEM_TLP, completionsOf(read, 1, 64, 128, [0])[0]!.bytes);
    const msg = concat([one, one]);
    const table = tableOf([read]);
    const out = new Int32Array(9);
    expect(scan(msg, 0, msg.length, table, [new Uint8Array(64)], out, 1, 128, 64)).toBe(one.length);
    expect([...out.subarray(0, 3)]).toEqual([1, 7, 32]);
    expect(table[7 * SCAN_TABLE_STRIDE]).toBe(0);
  });

  it.skipIf(scan === undefined)(`throws on bad arguments and changes nothing${skipped}`, () => {
    if (scan === undefined) return;
    const rid = 3;
    const read: Read = { tag: 9, tc: 0, destId: 0, destOffset: 0, address: 0x40, size: 64, armed: 1 };
    const msg = item(ITEM_TLP, completionsOf(read, rid, 64, 128, [0])[0]!.bytes);
    const table = tableOf([read]);
    const dest = new Uint8Array(64);
    const out = new Int32Array(5).fill(-1);
    const before = { msg: msg.slice(), table: table.slice(), out: out.slice() };
    const L = msg.length;
    const asU8 = (x: unknown): Uint8Array => x as Uint8Array;
    const asI32 = (x: unknown): Int32Array => x as Int32Array;
    const bad: [string, () => number, typeof RangeError | typeof TypeError][] = [
      ['off past end', () => scan(msg, 5, 4, table, [dest], out, rid, 128, 64), RangeError],
      ['end past msg', () => scan(msg, 0, L + 1, table, [dest], out, rid, 128, 64), RangeError],
      ['negative off', () => scan(msg, -1, L, table, [dest], out, rid, 128, 64), RangeError],
      ['fractional end', () => scan(msg, 0, L - 0.5, table, [dest], out, rid, 128, 64), RangeError],
      ['short table', () => scan(msg, 0, L, new Int32Array(TABLE_LENGTH - 1), [dest], out, rid, 128, 64), RangeError],
      ['empty out', () => scan(msg, 0, L, table, [dest], new Int32Array(0), rid, 128, 64), RangeError],
      ['rcb 32', () => scan(msg, 0, L, table, [dest], out, rid, 128, 32), RangeError],
      ['rcb 256', () => scan(msg, 0, L, table, [dest], out, rid, 128, 256), RangeError],
      ['mps 64', () => scan(msg, 0, L, table, [dest], out, rid, 64, 64), RangeError],
      ['mps 8192', () => scan(msg, 0, L, table, [dest], out, rid, 8192, 64), RangeError],
      ['requesterId 65536', () => scan(msg, 0, L, table, [dest], out, 0x10000, 128, 64), RangeError],
      ['msg not a Uint8Array', () => scan(asU8(new Uint16Array(L)), 0, 0, table, [dest], out, rid, 128, 64), TypeError],
      ['msg a plain array', () => scan(asU8([...msg]), 0, L, table, [dest], out, rid, 128, 64), TypeError],
      ['table not an Int32Array', () => scan(msg, 0, L, asI32(new Uint32Array(TABLE_LENGTH)), [dest], out, rid, 128, 64), TypeError],
      ['out not an Int32Array', () => scan(msg, 0, L, table, [dest], asI32(new Float64Array(5)), rid, 128, 64), TypeError],
      ['dests not an array', () => scan(msg, 0, L, table, dest as unknown as Uint8Array[], out, rid, 128, 64), TypeError],
      ['too few arguments', () => (scan as unknown as (...a: unknown[]) => number)(msg, 0, L, table, [dest], out, rid, 128), TypeError],
    ];
    for (const [name, call, type] of bad) {
      expect(call, name).toThrow(type);
      expect(msg, name).toEqual(before.msg);
      expect(table, name).toEqual(before.table);
      expect(out, name).toEqual(before.out);
      expect(dest.every((b) => b === 0), name).toBe(true);
    }
    // and the same arguments, put right, take it
    expect(scan(msg, 0, L, table, [dest], out, rid, 128, 64)).toBe(L);
    expect(out[0]).toBe(1);
  });

  it.skipIf(scan === undefined)(`fetches each destination once, and takes nothing a dests getter could have spoilt${skipped}`, () => {
    if (scan === undefined) return;
    const rid = 3;
    const reads: Read[] = [
      { tag: 1, tc: 0, destId: 0, destOffset: 0, address: 0x40, size: 64, armed: 1 },
      { tag: 2, tc: 0, destId: 1, destOffset: 0, address: 0x80, size: 128, armed: 1 }, // two CplDs of 64
    ];
    const items = reads.flatMap((r) => completionsOf(r, rid, 64, 64, [1]).map((c) => item(ITEM_TLP, c.bytes)));
    expect(items.length).toBe(3);
    const detach = (b: ArrayBufferLike): void => void structuredClone(b, { transfer: [b as ArrayBuffer] });
    /** A fresh batch and table, with dests[0] a plain buffer and dests[1] the getter `get`. */
    const withGetter = (get: (s: { msg: Uint8Array; first: Uint8Array }) => Uint8Array): { msg: Uint8Array; table: Int32Array; first: Uint8Array; dests: Uint8Array[] } => {
      const msg = concat(items);
      const first = new Uint8Array(64);
      const dests: Uint8Array[] = [first];
      Object.defineProperty(dests, 1, { get: () => get({ msg, first }) });
      return { msg, table: tableOf(reads), first, dests };
    };

    // A harmless getter runs once per call, however many CplDs go to its buffer.
    {
      const msg = concat(items);
      const table = tableOf(reads);
      const second = new Uint8Array(128);
      const dests: Uint8Array[] = [new Uint8Array(64)];
      let calls = 0;
      Object.defineProperty(dests, 1, { get: () => (calls++, second) });
      const out = new Int32Array(7);
      expect(scan(msg, 0, msg.length, table, dests, out, rid, 128, 64)).toBe(msg.length);
      expect([...out]).toEqual([3, 1, 64, 2, 64, 2, 64]);
      expect(calls).toBe(1);
      for (let i = 0; i < 128; i++) expect(second[i]).toBe(memByte(2, 0x80 + i));
    }
    // The getter detaches msg's buffer: the destinations are fetched before anything is
    // taken, so nothing is, and nothing is read from the buffer that went.
    {
      const { msg, table, first, dests } = withGetter((g) => {
        detach(g.msg.buffer);
        return new Uint8Array(128);
      });
      const before = table.slice();
      const out = new Int32Array(7).fill(-1);
      expect(scan(msg, 0, 3 * items[0]!.length, table, dests, out, rid, 128, 64)).toBe(0);
      expect(out[0]).toBe(0);
      expect(table).toEqual(before);
      expect(first.every((b) => b === 0)).toBe(true);
    }
    // The getter detaches another destination: that one's CplD is not taken.
    {
      const { msg, table, dests } = withGetter((g) => {
        detach(g.first.buffer);
        return new Uint8Array(128);
      });
      const out = new Int32Array(7);
      expect(scan(msg, 0, msg.length, table, dests, out, rid, 128, 64)).toBe(0);
      expect(out[0]).toBe(0);
      expect(table[SCAN_TABLE_STRIDE]).toBe(1);
    }
    // A getter that throws: the scan stops at that destination's first CplD, without throwing.
    {
      const { msg, table, first, dests } = withGetter(() => {
        throw new RangeError('no');
      });
      const out = new Int32Array(7);
      expect(scan(msg, 0, msg.length, table, dests, out, rid, 128, 64)).toBe(items[0]!.length);
      expect([...out.subarray(0, 3)]).toEqual([1, 1, 64]);
      expect(first[63]).toBe(memByte(1, 0x40 + 63));
      expect(table[2 * SCAN_TABLE_STRIDE]).toBe(1);
    }
  });

  it.skipIf(scan === undefined)(`takes CplDs for destinations past the first 256, up to 16 of them a call${skipped}`, () => {
    if (scan === undefined) return;
    const rid = 0xbeef;
    const reads: Read[] = Array.from({ length: 17 }, (_, k) => ({ tag: 100 + k, tc: 2, destId: 256 + 2 * k, destOffset: 4, address: 0x3000 + 64 * k, size: 8, armed: 1 }));
    const items = reads.map((r) => item(ITEM_TLP, completionsOf(r, rid, 64, 128, [0])[0]!.bytes));
    const msg = concat(items);
    const table = tableOf(reads);
    const dests: (Uint8Array | undefined)[] = Array.from({ length: 300 }, () => new Uint8Array(12));
    const out = new Int32Array(1 + 2 * 32);
    const sixteen = items.slice(0, 16).reduce((a, b) => a + b.length, 0);
    expect(scan(msg, 0, msg.length, table, dests, out, rid, 128, 64)).toBe(sixteen);
    expect(out[0]).toBe(16);
    reads.slice(0, 16).forEach((r, k) => {
      expect([out[1 + 2 * k], out[2 + 2 * k]]).toEqual([r.tag, 8]);
      expect([...dests[r.destId]!.subarray(4, 12)]).toEqual(Array.from({ length: 8 }, (_, i) => memByte(r.tag, r.address + i)));
    });
    // the 17th in the next call
    expect(scan(msg, sixteen, msg.length, table, dests, out, rid, 128, 64)).toBe(msg.length);
    expect([...out.subarray(0, 3)]).toEqual([1, 116, 8]);
  });
});
