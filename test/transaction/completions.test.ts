import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../src/core/index.js';
import { DEFAULT_HEADER_BITS, type CfgTlp, type CplTlp, type IoTlp, type MemTlp } from '../../src/tlp/index.js';
import { completionsFor, pieceEnd, readByteCount } from '../../src/transaction/index.js';

/** An MRd for [address, address + length), byte enables worked out by hand here, not by src. */
function mrd(address: number, length: number, extra: Partial<MemTlp> = {}): MemTlp {
  const dw = address - (address % 4);
  const endDw = Math.ceil((address + length) / 4) * 4;
  const lengthDw = (endDw - dw) / 4;
  const lead = address % 4;
  const tail = (address + length) % 4;
  let firstBe = [0xf, 0xe, 0xc, 0x8][lead]!;
  let lastBe = tail === 0 ? 0xf : [0, 0x1, 0x3, 0x7][tail]!;
  if (lengthDw === 1) {
    firstBe &= lastBe;
    lastBe = 0;
  }
  return {
    kind: 'MRd', ...DEFAULT_HEADER_BITS, lengthDw, requesterId: 0x0100, tag: 42, firstBe, lastBe,
    addressHi: 0, addressLo: dw, ph: 0, ...extra,
  };
}

function bytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
}

/** Bytes each part returns: its Byte Count minus the next part's (the last returns all it says). */
function partSizes(cpls: CplTlp[]): number[] {
  return cpls.map((c, i) => (i + 1 < cpls.length ? c.byteCount - cpls[i + 1]!.byteCount : c.byteCount));
}

function combos(request: MemTlp, data: Uint8Array, rcb: number, mps: number, runs: number): Set<string> {
  const rng = new SeededRng(1234);
  const seen = new Set<string>();
  for (let i = 0; i < runs; i++) seen.add(partSizes(completionsFor(request, data, { completerId: 0, rcb, mps, rng })).join(','));
  return seen;
}

describe('completionsFor: the spec examples (§2.3.1.1)', () => {
  it('192 bytes at 1_0000h with RCB 64: 192 | 128,64 | 64,128 | 64,64,64', () => {
    const req = mrd(0x10000, 0xc0);
    const data = bytes(0xc0);
    const largest = completionsFor(req, data, { completerId: 0, rcb: 64, mps: 256 });
    expect(partSizes(largest)).toEqual([192]);
    expect([...combos(req, data, 64, 256, 400)].sort()).toEqual(['128,64', '192', '64,128', '64,64,64'].sort());
  });

  it('256 bytes at 1_0020h with RCB 64: exactly the 16 splits at 64-byte boundaries', () => {
    const req = mrd(0x10020, 0x100);
    const data = bytes(0x100);
    const legal = [
      '256', '32,224', '32,64,160', '32,64,64,96', '32,64,64,64,32', '32,64,128,32', '32,128,96', '32,128,64,32',
      '32,192,32', '96,160', '96,128,32', '96,64,96', '96,64,64,32', '160,96', '160,64,32', '224,32',
    ];
    expect([...combos(req, data, 64, 512, 3000)].sort()).toEqual(legal.sort());
    // With RCB 128 only 1_0080h and 1_0100h are boundaries.
    expect([...combos(req, data, 128, 512, 400)].sort()).toEqual(['256', '96,160', '96,128,32', '224,32'].sort());
  });

  it('each part carries the bytes still to come and the low 7 bits of its first byte', () => {
    const req = mrd(0x10020, 0x100);
    const data = bytes(0x100);
    const cpls = completionsFor(req, data, { completerId: 0x0200, rcb: 64, mps: 128 });
    // MPS 128 forces a split: 96 (to 1_0080h), 128 (to 1_0100h), 32.
    expect(cpls.map((c) => [c.kind, c.byteCount, c.lowerAddress, c.lengthDw])).toEqual([
      ['CplD', 256, 0x20, 24],
      ['CplD', 160, 0x00, 32],
      ['CplD', 32, 0x00, 8],
    ]);
    for (const c of cpls) {
      expect(c.requesterId).toBe(0x0100);
      expect(c.tag).toBe(42);
      expect(c.completerId).toBe(0x0200);
      expect(c.status).toBe('SC');
    }
    expect(Uint8Array.from(cpls.flatMap((c) => [...c.data!]))).toEqual(data);
  });

  it('an unaligned read returns whole DWs with the data at its byte offset', () => {
    const req = mrd(0x1003, 10);
    const data = bytes(10);
    const [c, ...rest] = completionsFor(req, data, { completerId: 0, rcb: 64, mps: 128 });
    expect(rest).toEqual([]);
    expect([c!.byteCount, c!.lowerAddress, c!.lengthDw]).toEqual([10, 0x03, 4]);
    expect(c!.data!.subarray(3, 13)).toEqual(data);
  });

  it('never exceeds MPS and ends every part but the last on an RCB multiple (4 KiB read, MPS 128)', () => {
    const req = mrd(0x2004, 4092);
    const cpls = completionsFor(req, bytes(4092), { completerId: 0, rcb: 64, mps: 128, rng: new SeededRng(3) });
    let addr = 0x2004;
    for (const [i, c] of cpls.entries()) {
      expect(c.lengthDw * 4).toBeLessThanOrEqual(128);
      expect(c.lowerAddress).toBe(addr % 128);
      const n = i + 1 < cpls.length ? c.byteCount - cpls[i + 1]!.byteCount : c.byteCount;
      addr += n;
      if (i + 1 < cpls.length) expect(addr % 64).toBe(0);
    }
    expect(addr).toBe(0x2004 + 4092);
  });
});

describe('completionsFor: statuses and non-memory requests', () => {
  it('UR/CA for a memory read: one Cpl without data with the bytes owed', () => {
    const req = mrd(0x10020, 0x100);
    for (const status of ['UR', 'CA'] as const) {
      const [c, ...rest] = completionsFor(req, status, { completerId: 0, rcb: 64, mps: 128 });
      expect(rest).toEqual([]);
      expect([c!.kind, c!.status, c!.byteCount, c!.lowerAddress, c!.data]).toEqual(['Cpl', status, 256, 0x20, undefined]);
    }
  });

  it('configuration and I/O: Byte Count 4, Lower Address 0', () => {
    const cfg: CfgTlp = {
      kind: 'CfgRd0', ...DEFAULT_HEADER_BITS, lengthDw: 1, requesterId: 0, tag: 3, firstBe: 0xf, lastBe: 0,
      bus: 1, device: 0, function: 0, register: 0,
    };
    const [rd] = completionsFor(cfg, new Uint8Array([0xf4, 0x1a, 0x41, 0x10]), { completerId: 0x0100, rcb: 64, mps: 128 });
    expect([rd!.kind, rd!.byteCount, rd!.lowerAddress, rd!.lengthDw]).toEqual(['CplD', 4, 0, 1]);
    const [wr] = completionsFor({ ...cfg, kind: 'CfgWr0', data: new Uint8Array(4) }, 'SC', { completerId: 0x0100, rcb: 64, mps: 128 });
    expect([wr!.kind, wr!.status, wr!.byteCount, wr!.lowerAddress]).toEqual(['Cpl', 'SC', 4, 0]);
    const io: IoTlp = {
      kind: 'IORd', ...DEFAULT_HEADER_BITS, lengthDw: 1, requesterId: 0, tag: 4, firstBe: 0x2, lastBe: 0,
      addressHi: 0, addressLo: 0x104, ph: 0,
    };
    const [ioc] = completionsFor(io, 'UR', { completerId: 0, rcb: 64, mps: 128 });
    expect([ioc!.kind, ioc!.status, ioc!.byteCount, ioc!.lowerAddress]).toEqual(['Cpl', 'UR', 4, 0]);
  });

  it('a zero-length read completes with one DW and Byte Count 1', () => {
    const req = mrd(0x1000, 1, { firstBe: 0 });
    const [c] = completionsFor(req, new Uint8Array(0), { completerId: 0, rcb: 64, mps: 128 });
    expect([c!.kind, c!.byteCount, c!.lowerAddress, c!.lengthDw]).toEqual(['CplD', 1, 0, 1]);
  });

  it('a locked read completes with CplDLk / CplLk; RO and NS are copied, TC too', () => {
    const req = mrd(0x40, 8, { kind: 'MRdLk', ro: true, ns: true, tc: 3 });
    const [c] = completionsFor(req, bytes(8), { completerId: 0, rcb: 64, mps: 128 });
    expect([c!.kind, c!.ro, c!.ns, c!.tc, c!.ido]).toEqual(['CplDLk', true, true, 3, false]);
    const [u] = completionsFor(req, 'UR', { completerId: 0, rcb: 64, mps: 128 });
    expect(u!.kind).toBe('CplLk');
  });
});

describe('split arithmetic', () => {
  it('Byte Count from byte enables (§2.2.9 table), 1 DW and longer', () => {
    const oneDw: [number, number][] = [
      [0b1001, 4], [0b1111, 4], [0b1011, 4], [0b1101, 4], [0b0101, 3], [0b0111, 3], [0b1010, 3], [0b1110, 3],
      [0b0011, 2], [0b0110, 2], [0b1100, 2], [0b0001, 1], [0b0010, 1], [0b0100, 1], [0b1000, 1], [0b0000, 1],
    ];
    for (const [be, n] of oneDw) expect({ be, n: readByteCount(be, 0, 1) }).toEqual({ be, n });
    // Length 3 DW, First BE 1110b, Last BE 0011b: 12 − 1 − 2 bytes.
    expect(readByteCount(0b1110, 0b0011, 3)).toBe(9);
    expect(readByteCount(0b1000, 0b0001, 2)).toBe(2);
    expect(readByteCount(0xf, 0xf, 1024)).toBe(4096);
  });

  it('pieces are naturally aligned blocks', () => {
    expect(pieceEnd(0x1003, 0x5000, 512)).toBe(0x1200);
    expect(pieceEnd(0x1200, 0x1300, 512)).toBe(0x1300);
    expect(pieceEnd(2 ** 40 + 4095, 2 ** 41, 4096)).toBe(2 ** 40 + 4096);
  });
});
