import { describe, expect, it } from 'vitest';
import {
  atomicTlp,
  cfgReadTlp,
  cfgWriteTlp,
  completionTlp,
  decodeTlp,
  dwSpan,
  encodeTlp,
  ioReadTlp,
  ioWriteTlp,
  memReadTlp,
  memWriteTlp,
  messageTlp,
} from '../../src/tlp/index.js';
import { goldenEncode } from './golden-builder.js';

describe('dwSpan', () => {
  it('computes DW-aligned address, length and byte enables', () => {
    expect(dwSpan(0x1000, 4)).toEqual({ dwAddress: 0x1000, lengthDw: 1, firstBe: 0xf, lastBe: 0 });
    expect(dwSpan(0x1001, 2)).toEqual({ dwAddress: 0x1000, lengthDw: 1, firstBe: 0b0110, lastBe: 0 });
    expect(dwSpan(0x1003, 5)).toEqual({ dwAddress: 0x1000, lengthDw: 2, firstBe: 0b1000, lastBe: 0b1111 });
    expect(dwSpan(0x1002, 9)).toEqual({ dwAddress: 0x1000, lengthDw: 3, firstBe: 0b1100, lastBe: 0b0111 });
    expect(dwSpan(0x1000, 0)).toEqual({ dwAddress: 0x1000, lengthDw: 1, firstBe: 0, lastBe: 0 });
    expect(dwSpan(2 ** 40 + 7, 1)).toEqual({ dwAddress: 2 ** 40 + 4, lengthDw: 1, firstBe: 0b1000, lastBe: 0 });
  });

  it('rejects bad addresses and lengths', () => {
    expect(() => dwSpan(-4, 4)).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
    expect(() => dwSpan(2 ** 53, 4)).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
    expect(() => dwSpan(0, -1)).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
  });
});

describe('builders', () => {
  it('memReadTlp picks MRd below 4 GiB and MRd64 at or above, and can lock', () => {
    const lo = memReadTlp({ requesterId: 0x100, tag: 5, address: 0xffff_f000, byteLength: 256 });
    expect(lo).toMatchObject({ kind: 'MRd', lengthDw: 64, addressHi: 0, addressLo: 0xffff_f000, firstBe: 0xf, lastBe: 0xf, tc: 0, td: false });
    const hi = memReadTlp({ requesterId: 0x100, tag: 5, address: 0x1_0000_0000, byteLength: 4, tc: 2, ro: true });
    expect(hi).toMatchObject({ kind: 'MRd64', lengthDw: 1, addressHi: 1, addressLo: 0, tc: 2, ro: true });
    expect(memReadTlp({ requesterId: 0, tag: 0, address: 0x10, byteLength: 4, locked: true }).kind).toBe('MRdLk');
    expect(memReadTlp({ requesterId: 0, tag: 0, address: 2 ** 33, byteLength: 4, locked: true }).kind).toBe('MRdLk64');
    expect(memReadTlp({ requesterId: 0, tag: 0, address: 0x10, byteLength: 0 })).toMatchObject({ lengthDw: 1, firstBe: 0 });
    expect(encodeTlp(lo)).toEqual(goldenEncode(lo));
  });

  it('memReadTlp refuses a read that crosses 4 KB', () => {
    expect(() => memReadTlp({ requesterId: 0, tag: 0, address: 0xff0, byteLength: 32 })).toThrow(expect.objectContaining({ code: 'ERR_TLP_4K_CROSSING' }));
  });

  it('memWriteTlp uses aligned data as is and pads unaligned data', () => {
    const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const aligned = memWriteTlp({ requesterId: 1, address: 0x2000, data });
    expect(aligned.data).toBe(data);
    expect(aligned).toMatchObject({ kind: 'MWr', lengthDw: 2, firstBe: 0xf, lastBe: 0xf, tag: 0 });
    const odd = memWriteTlp({ requesterId: 1, address: 0x2_0000_2001, data: new Uint8Array([9, 8, 7]) });
    expect(odd).toMatchObject({ kind: 'MWr64', lengthDw: 1, firstBe: 0b1110, lastBe: 0, addressHi: 2, addressLo: 0x2000 });
    expect(Array.from(odd.data ?? [])).toEqual([0, 9, 8, 7]);
    expect(decodeTlp(encodeTlp(odd))).toEqual(odd);
  });

  it('completionTlp makes Cpl/CplD/CplLk/CplDLk with sensible defaults', () => {
    expect(completionTlp({ completerId: 1, requesterId: 2, tag: 3 })).toMatchObject({ kind: 'Cpl', status: 'SC', byteCount: 4, lengthDw: 0, lowerAddress: 0 });
    expect(completionTlp({ completerId: 1, requesterId: 2, tag: 3, status: 'UR' })).toMatchObject({ kind: 'Cpl', status: 'UR' });
    const d = completionTlp({ completerId: 1, requesterId: 2, tag: 0x301, data: new Uint8Array(64), byteCount: 256, lowerAddress: 0x40 });
    expect(d).toMatchObject({ kind: 'CplD', lengthDw: 16, byteCount: 256, lowerAddress: 0x40, tag: 0x301 });
    expect(completionTlp({ completerId: 1, requesterId: 2, tag: 3, locked: true }).kind).toBe('CplLk');
    expect(completionTlp({ completerId: 1, requesterId: 2, tag: 3, locked: true, data: new Uint8Array(4) }).kind).toBe('CplDLk');
    expect(encodeTlp(d)).toEqual(goldenEncode(d));
    expect(() => completionTlp({ completerId: 1, requesterId: 2, tag: 3, data: new Uint8Array(3) })).toThrow(expect.objectContaining({ code: 'ERR_TLP_LENGTH' }));
  });

  it('cfgReadTlp/cfgWriteTlp build Type 0 by default and Type 1 on request', () => {
    const rd = cfgReadTlp({ requesterId: 0, tag: 1, bus: 1, device: 2, function: 3, register: 0x100 });
    expect(rd).toMatchObject({ kind: 'CfgRd0', lengthDw: 1, firstBe: 0xf, lastBe: 0, register: 0x100 });
    const wr = cfgWriteTlp({ configType: 1, requesterId: 0, tag: 2, bus: 3, device: 0, function: 0, register: 4, firstBe: 0b0011, data: new Uint8Array([0x06, 0x04, 0, 0]) });
    expect(wr).toMatchObject({ kind: 'CfgWr1', firstBe: 0b0011 });
    expect(encodeTlp(wr)).toEqual(goldenEncode(wr));
  });

  it('ioReadTlp/ioWriteTlp stay within one DW', () => {
    expect(ioReadTlp({ requesterId: 0, tag: 0, address: 0x61, byteLength: 1 })).toMatchObject({ kind: 'IORd', addressLo: 0x60, firstBe: 0b0010 });
    const wr = ioWriteTlp({ requesterId: 0, tag: 0, address: 0x62, byteLength: 2, data: new Uint8Array([0xaa, 0xbb]) });
    expect(wr).toMatchObject({ kind: 'IOWr', firstBe: 0b1100 });
    expect(Array.from(wr.data ?? [])).toEqual([0, 0, 0xaa, 0xbb]);
    expect(() => ioReadTlp({ requesterId: 0, tag: 0, address: 0x63, byteLength: 2 })).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
  });

  it('messageTlp builds Msg with Length 0, or MsgD', () => {
    expect(messageTlp({ requesterId: 0x100, messageCode: 0x20, routing: 4 })).toMatchObject({ kind: 'Msg', lengthDw: 0, routing: 4 });
    const d = messageTlp({ requesterId: 0x100, messageCode: 0x7f, routing: 2, headerDw2: 0x01000001, data: new Uint8Array(8) });
    expect(d).toMatchObject({ kind: 'MsgD', lengthDw: 2, headerDw2: 0x01000001 });
    expect(encodeTlp(d)).toEqual(goldenEncode(d));
    expect(() => messageTlp({ requesterId: 0, messageCode: 0x20, routing: 4, tc: 1 })).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
  });

  it('atomicTlp picks the 4DW form at or above 4 GiB and checks alignment', () => {
    expect(atomicTlp({ op: 'FetchAdd', requesterId: 1, tag: 1, address: 0x100, data: new Uint8Array(8) })).toMatchObject({ kind: 'FetchAdd', lengthDw: 2 });
    expect(atomicTlp({ op: 'Swap', requesterId: 1, tag: 1, address: 2 ** 32, data: new Uint8Array(4) }).kind).toBe('Swap64');
    expect(atomicTlp({ op: 'CAS', requesterId: 1, tag: 1, address: 2 ** 34 + 16, data: new Uint8Array(32) }).kind).toBe('CAS64');
    expect(() => atomicTlp({ op: 'CAS', requesterId: 1, tag: 1, address: 0x108, data: new Uint8Array(32) })).toThrow(expect.objectContaining({ code: 'ERR_TLP_FIELD' }));
  });
});
