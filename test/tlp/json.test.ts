import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { bytesToHex, decodeTlp, encodeTlp, hexToBytes, tlpFromJson, tlpToJson, type Tlp } from '../../src/tlp/index.js';
import { goldenEcrcValue, hex } from './golden-builder.js';

function fromJsonError(obj: unknown): TlpwireError {
  try {
    tlpFromJson(obj);
  } catch (e) {
    expect(e).toBeInstanceOf(TlpwireError);
    return e as TlpwireError;
  }
  throw new Error('expected an error');
}

describe('tlpToJson', () => {
  it('prints the SPEC-FACTS MRd with exactly its fields, in header order', () => {
    const json = tlpToJson(decodeTlp(hex('0010004091633bff167124c8')));
    expect(json).toEqual({
      kind: 'MRd', fmt: 0, type: 0, tc: 1, ro: false, ns: false, ido: false, th: false, td: false, ep: false, at: 0,
      lengthDw: 64, requesterId: 37219, tag: 59, firstBe: 15, lastBe: 15, address: '0x167124c8', ph: 0,
    });
    expect(Object.keys(json)).toEqual(['kind', 'fmt', 'type', 'tc', 'ro', 'ns', 'ido', 'th', 'td', 'ep', 'at', 'lengthDw', 'requesterId', 'tag', 'firstBe', 'lastBe', 'address', 'ph']);
  });

  it('joins 64-bit addresses, prints data as hex, adds ln only when set, and ecrc with td', () => {
    const wire = encodeTlp({
      kind: 'MWr64', tc: 0, ido: false, ro: false, ns: false, ln: true, th: false, td: true, ep: false, at: 0,
      lengthDw: 1, requesterId: 1, tag: 0, firstBe: 0xf, lastBe: 0, addressHi: 0x1, addressLo: 0x20, ph: 0, data: hex('a0b1c2d3'),
    });
    const json = tlpToJson(decodeTlp(wire));
    expect(json).toMatchObject({ kind: 'MWr64', fmt: 3, type: 0, ln: true, address: '0x100000020', data: 'a0b1c2d3' });
    expect(typeof json.ecrc).toBe('number');
    expect(tlpToJson(decodeTlp(hex('0010004091633bff167124c8')))).not.toHaveProperty('ln');
  });

  it('prints messages with type including the routing, and completions with status names', () => {
    expect(tlpToJson(decodeTlp(hex('34000000 01000020 00000000 00000000')))).toEqual({
      kind: 'Msg', fmt: 1, type: 0x14, tc: 0, ro: false, ns: false, ido: false, th: false, td: false, ep: false, at: 0, lengthDw: 0,
      requesterId: 0x100, tag: 0, routing: 4, messageCode: 0x20, headerDw2: 0, headerDw3: 0,
    });
    expect(tlpToJson(decodeTlp(hex('0a000000 01002004 00000000')))).toMatchObject({ kind: 'Cpl', type: 10, status: 'UR', byteCount: 4, completerId: 0x100 });
  });

  it('computes the ecrc for a td TLP built without one', () => {
    const t: Tlp = { kind: 'IORd', tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: true, ep: false, at: 0, lengthDw: 1, requesterId: 0, tag: 0, firstBe: 1, lastBe: 0, addressHi: 0, addressLo: 0x60, ph: 0 };
    expect(tlpToJson(t).ecrc).toBe(goldenEcrcValue(t));
  });
});

describe('tlpFromJson', () => {
  it('fills defaults and infers lengthDw from data', () => {
    const t = tlpFromJson({ kind: 'MWr', requesterId: 256, address: '0x1000', data: 'deadbeef' });
    expect(t).toEqual({
      kind: 'MWr', tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: false, ep: false, at: 0,
      lengthDw: 1, requesterId: 256, tag: 0, firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x1000, ph: 0, data: hex('deadbeef'),
    });
    expect(tlpFromJson({ kind: 'MRd', address: 0x2000, lengthDw: 4 })).toMatchObject({ firstBe: 0xf, lastBe: 0xf, lengthDw: 4 });
    expect(tlpFromJson({ kind: 'CplD', data: '00112233 44556677' })).toMatchObject({ status: 'SC', byteCount: 8, lengthDw: 2 });
    expect(tlpFromJson({ kind: 'Cpl' })).toMatchObject({ status: 'SC', byteCount: 4, lengthDw: 0 });
    expect(tlpFromJson({ kind: 'Msg', type: 0x13, messageCode: 0x19 })).toMatchObject({ routing: 3 });
    expect(tlpFromJson({ kind: 'CAS', address: '0x100', data: '00'.repeat(16) })).toMatchObject({ lengthDw: 4, firstBe: 0, lastBe: 0 });
    expect(tlpFromJson({ kind: 'Cpl', status: 'RRS' })).toMatchObject({ status: 'CRS' });
  });

  it('accepts numbers as decimal or 0x strings, and 64-bit addresses as hex', () => {
    expect(tlpFromJson({ kind: 'MRd64', address: '0xffffffff00000010', tag: '0x3ff', requesterId: '42' })).toMatchObject({
      addressHi: 0xffffffff, addressLo: 0x10, tag: 0x3ff, requesterId: 42,
    });
  });

  it('names the field in every error', () => {
    expect(fromJsonError([]).message).toMatch(/object/);
    expect(fromJsonError({ kind: 'Mrd' }).message).toMatch(/'kind'/);
    expect(fromJsonError({ kind: 'MRd' }).message).toMatch(/'address'.*required/);
    expect(fromJsonError({ kind: 'MRd', address: '0x1002' }).message).toMatch(/'address'.*ph/);
    expect(fromJsonError({ kind: 'MRd', address: 'nope' }).message).toMatch(/'address'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, tag: 1024 }).message).toMatch(/'tag'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, td: 'yes' }).message).toMatch(/'td'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, bus: 1 }).message).toMatch(/'bus': is not a field of a MRd/);
    expect(fromJsonError({ kind: 'MRd', address: 0, data: '00000000' }).message).toMatch(/'data'/);
    expect(fromJsonError({ kind: 'MWr', address: 0 }).message).toMatch(/'data'/);
    expect(fromJsonError({ kind: 'MWr', address: 0, data: '001' }).message).toMatch(/'data'/);
    expect(fromJsonError({ kind: 'MWr', address: 0, data: '001122' }).message).toMatch(/'data'.*multiple of 4/);
    expect(fromJsonError({ kind: 'MWr', address: 0, data: '00112233', lengthDw: 2 }).message).toMatch(/'lengthDw'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, fmt: 1 }).message).toMatch(/'fmt'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, type: 1 }).message).toMatch(/'type'/);
    expect(fromJsonError({ kind: 'Msg', type: 0x12, routing: 4 }).message).toMatch(/'type'/);
    expect(fromJsonError({ kind: 'Cpl', status: 'OK' }).message).toMatch(/'status'/);
    expect(fromJsonError({ kind: 'MRd', address: 0, ecrc: 1 }).message).toMatch(/'ecrc'/);
  });

  it('passes spec validation errors through with their codes', () => {
    expect(fromJsonError({ kind: 'MRd', address: '0xffc', lengthDw: 2 }).code).toBe('ERR_TLP_4K_CROSSING');
    expect(fromJsonError({ kind: 'MRd', address: '0x100000000' }).message).toMatch(/64-bit/);
  });

  it('checks a given ecrc unless asked to recompute it', () => {
    const t = tlpFromJson({ kind: 'MRd', address: '0x1000', td: true });
    const ecrc = goldenEcrcValue(t);
    expect(tlpFromJson({ kind: 'MRd', address: '0x1000', td: true, ecrc })).toMatchObject({ ecrc });
    const err = fromJsonError({ kind: 'MRd', address: '0x1000', td: true, ecrc: ecrc ^ 1 });
    expect(err.code).toBe('ERR_TLP_ECRC');
    const fixed = tlpFromJson({ kind: 'MRd', address: '0x1000', td: true, ecrc: ecrc ^ 1 }, { recomputeEcrc: true });
    expect(fixed.ecrc).toBeUndefined();
    expect(decodeTlp(encodeTlp(fixed)).ecrc).toBe(ecrc);
  });
});

describe('hex helpers', () => {
  it('parse 0x prefixes and byte separators, and print lowercase', () => {
    expect(hexToBytes('0x00 10:00_40-91')).toEqual(hex('0010004091'));
    expect(hexToBytes('  ABcd ')).toEqual(hex('abcd'));
    expect(hexToBytes('')).toEqual(new Uint8Array(0));
    expect(bytesToHex(hex('00ff10ab'))).toBe('00ff10ab');
  });

  it('reject bad characters, separators inside a byte and odd digit counts', () => {
    expect(() => hexToBytes('00zz')).toThrow(/character 2/);
    expect(() => hexToBytes('0 0')).toThrow(/character 1/);
    expect(() => hexToBytes('abc')).toThrow(/odd/);
  });
});
