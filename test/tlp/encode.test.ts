import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { computeTlpEcrc, decodeTlp, encodeTlp, encodeTlpInto, encodedLength, validateTlp, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { goldenEcrcValue, goldenEncode } from './golden-builder.js';

const bits = { tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: false, ep: false, at: 0 };
const mwr: MemTlp = { kind: 'MWr', ...bits, lengthDw: 1, requesterId: 0x100, tag: 0, firstBe: 0xf, lastBe: 0, addressHi: 0, addressLo: 0x2000, ph: 0, data: new Uint8Array([1, 2, 3, 4]) };

/** Runs `encodeTlp` on an object that breaks the type (as a JS caller could). */
function encodeLoose(obj: Record<string, unknown>): Uint8Array {
  return encodeTlp(obj as unknown as Tlp);
}

function expectFieldError(obj: Record<string, unknown>, code: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    encodeLoose(obj);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(TlpwireError);
  expect((caught as TlpwireError).code).toBe(code);
  expect((caught as TlpwireError).message).toMatch(pattern);
}

describe('encodeTlp: invalid objects throw typed errors naming the field', () => {
  it('rejects unknown kinds and out-of-range or mistyped fields', () => {
    expectFieldError({ ...mwr, kind: 'MWrite' }, 'ERR_TLP_FIELD', /unknown TLP kind/);
    expectFieldError({ ...mwr, tc: 8 }, 'ERR_TLP_FIELD', /tc/);
    expectFieldError({ ...mwr, tc: 1.5 }, 'ERR_TLP_FIELD', /tc/);
    expectFieldError({ ...mwr, at: -1 }, 'ERR_TLP_FIELD', /at/);
    expectFieldError({ ...mwr, ep: 1 }, 'ERR_TLP_FIELD', /ep/);
    expectFieldError({ ...mwr, tag: 1024 }, 'ERR_TLP_FIELD', /tag/);
    expectFieldError({ ...mwr, requesterId: 0x10000 }, 'ERR_TLP_FIELD', /requesterId/);
    expectFieldError({ ...mwr, firstBe: 16 }, 'ERR_TLP_FIELD', /firstBe/);
    expectFieldError({ ...mwr, addressLo: 0x2002 }, 'ERR_TLP_FIELD', /addressLo/);
    expectFieldError({ ...mwr, addressLo: 2 ** 32 }, 'ERR_TLP_FIELD', /addressLo/);
    expectFieldError({ ...mwr, ph: 4 }, 'ERR_TLP_FIELD', /ph/);
    expectFieldError({ ...mwr, addressHi: 1 }, 'ERR_TLP_FIELD', /64-bit kind/);
    expectFieldError({ ...mwr, lengthDw: 0, data: new Uint8Array(0) }, 'ERR_TLP_LENGTH', /lengthDw/);
    expectFieldError({ ...mwr, lengthDw: 1025 }, 'ERR_TLP_LENGTH', /lengthDw/);
    expectFieldError({ ...mwr, data: new Uint8Array(8) }, 'ERR_TLP_LENGTH', /data bytes/);
    expectFieldError({ ...mwr, data: undefined }, 'ERR_TLP_FIELD', /data/);
    expectFieldError({ ...mwr, kind: 'MRd' }, 'ERR_TLP_FIELD', /no data/);
    expectFieldError({ ...mwr, ecrc: 5 }, 'ERR_TLP_FIELD', /ecrc/);
  });

  it('rejects bad configuration, completion and message fields', () => {
    const cfg = { kind: 'CfgRd0', ...bits, lengthDw: 1, requesterId: 0, tag: 0, firstBe: 0xf, lastBe: 0, bus: 0, device: 0, function: 0, register: 0 };
    expectFieldError({ ...cfg, bus: 256 }, 'ERR_TLP_FIELD', /bus/);
    expectFieldError({ ...cfg, device: 32 }, 'ERR_TLP_FIELD', /device/);
    expectFieldError({ ...cfg, function: 8 }, 'ERR_TLP_FIELD', /function/);
    expectFieldError({ ...cfg, register: 1024 }, 'ERR_TLP_FIELD', /register/);
    expectFieldError({ ...cfg, reserved: 0x10 }, 'ERR_TLP_FIELD', /reserved/);
    const cpl = { kind: 'Cpl', ...bits, lengthDw: 0, completerId: 0, status: 'SC', bcm: false, byteCount: 4, requesterId: 0, tag: 0, lowerAddress: 0 };
    expectFieldError({ ...cpl, status: 'OK' }, 'ERR_TLP_FIELD', /status/);
    expectFieldError({ ...cpl, byteCount: 0 }, 'ERR_TLP_FIELD', /byteCount/);
    expectFieldError({ ...cpl, byteCount: 4097 }, 'ERR_TLP_FIELD', /byteCount/);
    expectFieldError({ ...cpl, lowerAddress: 128 }, 'ERR_TLP_FIELD', /lowerAddress/);
    expectFieldError({ ...cpl, lengthDw: 1024 }, 'ERR_TLP_FIELD', /lengthDw/);
    const msg = { kind: 'Msg', ...bits, lengthDw: 0, requesterId: 0, tag: 0, routing: 4, messageCode: 0x7f, headerDw2: 0, headerDw3: 0 };
    expectFieldError({ ...msg, routing: 8 }, 'ERR_TLP_FIELD', /routing/);
    expectFieldError({ ...msg, messageCode: 256 }, 'ERR_TLP_FIELD', /messageCode/);
    expectFieldError({ ...msg, headerDw2: -1 }, 'ERR_TLP_FIELD', /headerDw2/);
  });

  it('validateTlp accepts what encodes and reports the byte offset of the field', () => {
    expect(() => validateTlp(mwr)).not.toThrow();
    expect(() => validateTlp({ ...mwr, lastBe: 1 }, 100)).toThrow(expect.objectContaining({ code: 'ERR_TLP_BYTE_ENABLES', offset: 107 }));
  });
});

describe('encodeTlpInto', () => {
  it('writes at an offset, returns the byte count and leaves the rest of the buffer alone', () => {
    const buf = new Uint8Array(64).fill(0x77);
    const n = encodeTlpInto(mwr, buf, 10);
    expect(n).toBe(16);
    expect(buf.subarray(10, 26)).toEqual(goldenEncode(mwr));
    expect(buf.subarray(0, 10).every((b) => b === 0x77)).toBe(true);
    expect(buf.subarray(26).every((b) => b === 0x77)).toBe(true);
  });

  it('throws ERR_TLP_TRUNCATED (and writes nothing) when the buffer is too small', () => {
    const buf = new Uint8Array(20).fill(0x77);
    expect(() => encodeTlpInto(mwr, buf, 8)).toThrow(expect.objectContaining({ code: 'ERR_TLP_TRUNCATED' }));
    expect(buf.every((b) => b === 0x77)).toBe(true);
  });

  it('reports validation errors at their position in the output buffer', () => {
    expect(() => encodeTlpInto({ ...mwr, addressLo: 0xffc, lengthDw: 2, lastBe: 0xf, data: new Uint8Array(8) }, new Uint8Array(64), 32)).toThrow(
      expect.objectContaining({ code: 'ERR_TLP_4K_CROSSING', offset: 40 }),
    );
  });
});

describe('ECRC on encode', () => {
  it('computes the digest when td is set and ecrc is omitted', () => {
    const t: Tlp = { ...mwr, td: true };
    const bytes = encodeTlp(t);
    expect(bytes.length).toBe(encodedLength(t));
    expect(decodeTlp(bytes).ecrc).toBe(goldenEcrcValue(t));
    expect(computeTlpEcrc(mwr)).toBe(goldenEcrcValue(t));
  });

  it('writes a given ecrc verbatim, so a fault injector can send a bad digest', () => {
    const bytes = encodeTlp({ ...mwr, td: true, ecrc: 0x12345678 });
    expect(Array.from(bytes.subarray(-4))).toEqual([0x12, 0x34, 0x56, 0x78]);
    expect(() => decodeTlp(bytes)).toThrow(expect.objectContaining({ code: 'ERR_TLP_ECRC', offset: 16 }));
  });
});
