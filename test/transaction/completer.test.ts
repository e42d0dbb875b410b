import { describe, expect, it } from 'vitest';
import { DEFAULT_HEADER_BITS, MemWriteView, encodeTlp, memWriteTlp, parseMemWrite, type AtomicTlp, type CfgTlp, type CplTlp, type MemTlp, type Tlp } from '../../src/tlp/index.js';
import { Completer, forEachEnabledRun, type CompleterTarget, type EnqueueOptions } from '../../src/transaction/index.js';
import { RamTarget } from './harness.js';

interface Sent {
  tlp: CplTlp;
  options: EnqueueOptions | undefined;
}

function setup() {
  const sent: Sent[] = [];
  const completer = new Completer({ enqueue: (t: Tlp, o?: EnqueueOptions) => void sent.push({ tlp: t as CplTlp, options: o }) }, {
    completerId: 0x0100,
    rcb: 64,
    maxPayloadSize: 128,
  });
  const ram = new RamTarget(0x1000, new Uint8Array(0x1000));
  completer.addMemoryTarget(ram);
  let released = 0;
  const release = (): void => {
    released++;
  };
  return { sent, completer, ram, release, released: () => released };
}

function mem(kind: MemTlp['kind'], addressLo: number, lengthDw: number, firstBe: number, lastBe: number, data?: Uint8Array): MemTlp {
  const t: MemTlp = {
    kind, ...DEFAULT_HEADER_BITS, lengthDw, requesterId: 0, tag: 9, firstBe, lastBe, addressHi: 0, addressLo, ph: 0,
  };
  if (data !== undefined) t.data = data;
  return t;
}

describe('forEachEnabledRun', () => {
  it('turns byte enables into contiguous runs, holes included', () => {
    const runs: [number, number[]][] = [];
    const data = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    forEachEnabledRun(0x100, data, 0b1100, 0b0011, (a, b) => runs.push([a, [...b]]));
    expect(runs).toEqual([[0x102, [3, 4, 5, 6, 7, 8, 9, 10]]]);
    runs.length = 0;
    forEachEnabledRun(0x100, data.subarray(0, 4), 0b1011, 0, (a, b) => runs.push([a, [...b]]));
    expect(runs).toEqual([
      [0x100, [1, 2]],
      [0x103, [4]],
    ]);
  });
});

describe('Completer', () => {
  it('writes only the enabled bytes; a posted write releases its credits at once', () => {
    const { completer, ram, release, released, sent } = setup();
    completer.handleRequest(mem('MWr', 0x1010, 2, 0b1110, 0b0111, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])), release);
    expect([...ram.bytes.subarray(0x10, 0x18)]).toEqual([0, 2, 3, 4, 5, 6, 7, 0]);
    expect(released()).toBe(1);
    expect(sent).toEqual([]);
  });

  it('drops (and counts) posted writes nobody claims and poisoned ones', () => {
    const { completer, ram, release, released } = setup();
    completer.handleRequest(mem('MWr', 0x9000, 1, 0xf, 0, new Uint8Array(4)), release);
    completer.handleRequest({ ...mem('MWr', 0x1000, 1, 0xf, 0, Uint8Array.from([9, 9, 9, 9])), ep: true }, release);
    expect(completer.counters.get('completer.unclaimedWrite')).toBe(1);
    expect(completer.counters.get('completer.poisonedWrite')).toBe(1);
    expect(ram.bytes[0]).toBe(0);
    expect(released()).toBe(2);
  });

  it('releases a read request\'s credits only when its last completion has gone to the link', () => {
    const { completer, release, released, sent } = setup();
    completer.handleRequest(mem('MRd', 0x1000, 64, 0xf, 0xf), release);
    expect(sent.length).toBe(2); // 256 bytes at MPS 128
    expect(released()).toBe(0);
    expect(sent[0]!.options?.onSent).toBeUndefined();
    sent[1]!.options?.onSent?.();
    expect(released()).toBe(1);
  });

  it('answers UR for locked reads, AtomicOps, Type 1 config and missing config space', () => {
    const { completer, release, sent } = setup();
    completer.handleRequest(mem('MRdLk', 0x1000, 1, 0xf, 0), release);
    const atomic: AtomicTlp = {
      kind: 'FetchAdd', ...DEFAULT_HEADER_BITS, lengthDw: 1, requesterId: 0, tag: 1, firstBe: 0, lastBe: 0,
      addressHi: 0, addressLo: 0x1000, ph: 0, data: new Uint8Array(4),
    };
    completer.handleRequest(atomic, release);
    const cfg: CfgTlp = {
      kind: 'CfgRd1', ...DEFAULT_HEADER_BITS, lengthDw: 1, requesterId: 0, tag: 2, firstBe: 0xf, lastBe: 0,
      bus: 2, device: 0, function: 0, register: 0,
    };
    completer.handleRequest(cfg, release);
    completer.handleRequest({ ...cfg, kind: 'CfgRd0' }, release);
    expect(sent.map((s) => [s.tlp.kind, s.tlp.status])).toEqual([
      ['CplLk', 'UR'],
      ['Cpl', 'UR'],
      ['Cpl', 'UR'],
      ['Cpl', 'UR'],
    ]);
    // The config completion comes from the function addressed.
    expect(sent[3]!.tlp.completerId).toBe(0x0200);
  });

  it('marks config write completions so they may pass posted writes, and reports the ID capture', () => {
    const { completer, release, sent } = setup();
    const captured: number[] = [];
    completer.onConfigWrite0 = (bdf) => captured.push(bdf);
    completer.setConfigTarget({ configRead: () => 0, configWrite: () => true });
    const wr: CfgTlp = {
      kind: 'CfgWr0', ...DEFAULT_HEADER_BITS, lengthDw: 1, requesterId: 0, tag: 2, firstBe: 0xf, lastBe: 0,
      bus: 3, device: 1, function: 2, register: 4, data: new Uint8Array(4),
    };
    completer.handleRequest(wr, release);
    expect(sent[0]!.options?.ioCfgWriteCompletion).toBe(true);
    expect(captured).toEqual([(3 << 8) | (1 << 3) | 2]);
  });
});

describe('Completer.handleMemWrite (the link fast path)', () => {
  it("gives a target's write bytes of its own: the link's buffer is valid only during the call", () => {
    const kept: Uint8Array[] = [];
    const target: CompleterTarget = {
      claims: (a) => a >= 0x4000 && a < 0x5000,
      read: (_a, n) => new Uint8Array(n),
      write: (_a, data) => kept.push(data), // keeps it, as write may
    };
    const completer = new Completer({ enqueue: () => {} }, { completerId: 0x0100, rcb: 64, maxPayloadSize: 128 });
    completer.addMemoryTarget(target);
    const linkBuffer = encodeTlp(memWriteTlp({ requesterId: 0x0200, address: 0x4010, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }));
    const v = new MemWriteView();
    expect(parseMemWrite(linkBuffer, 0, linkBuffer.length, v)).toBe(true);
    expect(completer.handleMemWrite(linkBuffer, v)).toBe(true);
    linkBuffer.fill(0xee); // the link's next message
    expect([...kept[0]!]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});
