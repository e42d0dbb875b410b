import { describe, expect, it } from 'vitest';
import { isTlpwireError, NS_PER_MS } from '../../src/core/index.js';
import { MSG_CODE, MSG_ROUTING } from '../../src/spec/index.js';
import type { CplTlp, MemTlp, MsgTlp, Tlp } from '../../src/tlp/index.js';
import { cplTimeoutNs, type CompletionErrorEvent, type ConfigTarget } from '../../src/transaction/index.js';
import { EP_BASE, EP_ID, RC_ID, SinkTarget, makePair, patterned } from './harness.js';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return isTlpwireError(e) ? e.code : `other: ${String(e)}`;
  }
}

function isCpl(t: Tlp): t is CplTlp {
  return t.kind === 'Cpl' || t.kind === 'CplD';
}

describe('memory reads and writes over the fake link', () => {
  it('reads back what the completer holds, for unaligned addresses and odd lengths', async () => {
    const { rc, epRam, settle } = makePair();
    for (const [off, len] of [
      [0, 4],
      [1, 1],
      [3, 2],
      [5, 300],
      [4093, 7],
      [100, 5000],
      [0, 65536],
    ] as const) {
      const data = await settle(rc.requester.memRead(EP_BASE + off, len));
      expect(data).toEqual(epRam.bytes.subarray(off, off + len));
    }
  });

  it('writes land byte-exact, unaligned, across 4 KiB and MPS boundaries', async () => {
    const { rc, epRam, settle } = makePair();
    const before = epRam.bytes.slice();
    const data = patterned(9000, 3);
    await settle(rc.requester.memWrite(EP_BASE + 4001, data));
    // A read of the same range comes after the write (a read does not pass a posted write).
    const back = await settle(rc.requester.memRead(EP_BASE + 4000, 9002));
    expect(back[0]).toBe(before[4000]);
    expect(back.subarray(1, 9001)).toEqual(data);
    expect(back[9001]).toBe(before[13001]);
  });

  it('splits writes at MPS and reads at MRRS, never across 4 KiB', async () => {
    const { rc, settle, rcLink } = makePair({
      link: { record: true },
      rcConfig: { maxPayloadSize: 128, maxReadRequestSize: 256 },
      epConfig: { maxPayloadSize: 128 },
    });
    await settle(rc.requester.memWrite(EP_BASE + 60, new Uint8Array(1000)));
    await settle(rc.requester.memRead(EP_BASE + 4000, 1000));
    const writes = rcLink.sent.filter((t): t is MemTlp => t.kind === 'MWr');
    const reads = rcLink.sent.filter((t): t is MemTlp => t.kind === 'MRd');
    expect(writes.reduce((n, t) => n + t.lengthDw, 0)).toBe(Math.ceil((60 + 1000) / 4) - 15);
    for (const w of writes) {
      expect(w.lengthDw * 4).toBeLessThanOrEqual(128);
      const start = w.addressLo;
      expect(Math.floor(start / 4096)).toBe(Math.floor((start + w.lengthDw * 4 - 1) / 4096));
    }
    expect(reads.length).toBe(5); // 4000..4096, 4096..4352, ..4608, ..4864, ..5000
    for (const r of reads) {
      expect(r.lengthDw * 4).toBeLessThanOrEqual(256);
      expect(Math.floor(r.addressLo / 4096)).toBe(Math.floor((r.addressLo + r.lengthDw * 4 - 1) / 4096));
    }
  });

  it('uses MRd64 above 4 GiB', async () => {
    const { rc, ep, settle, rcLink } = makePair({ link: { record: true } });
    const high = new SinkTarget();
    ep.completer.addMemoryTarget({ claims: (a) => a >= 2 ** 33, read: (_a, n) => new Uint8Array(n).fill(0xab), write: () => high.write(0, new Uint8Array(0)) });
    const v = await settle(rc.requester.memRead(2 ** 33 + 8, 4));
    expect(v).toEqual(new Uint8Array([0xab, 0xab, 0xab, 0xab]));
    expect(rcLink.sent.some((t) => t.kind === 'MRd64')).toBe(true);
  });

  it('a zero-length read completes (flush) without touching the target', async () => {
    const { rc, epRam, settle } = makePair();
    const data = await settle(rc.requester.memRead(EP_BASE + 16, 0));
    expect(data.length).toBe(0);
    expect(epRam.reads).toBe(0);
  });

  it('pipelines a large read: about one round trip, not one per MRRS piece', async () => {
    const latency = 1000;
    const { rc, clock, settle } = makePair({ link: { latencyNs: latency, b: { credits: { NP: { hdr: 256, data: 256 } } } } });
    const t0 = clock.nowNs();
    const data = await settle(rc.requester.memRead(EP_BASE, 64 * 1024));
    expect(data.length).toBe(64 * 1024);
    // 128 pieces of 512 B: serial would be 128 round trips (256 µs).
    expect(clock.nowNs() - t0).toBeLessThanOrEqual(4 * latency);
  });

  it('cpuRead32 returns the little-endian DW, all ones on UR and on timeout', async () => {
    const { rc, epRam, epLink, settle } = makePair();
    const b = epRam.bytes;
    const expected = (b[8]! | (b[9]! << 8) | (b[10]! << 16) | (b[11]! << 24)) >>> 0;
    expect(await settle(rc.requester.cpuRead32(EP_BASE + 8))).toBe(expected);
    expect(await settle(rc.requester.cpuRead32(0x7000_0000))).toBe(0xffffffff);
    epLink.dropIf = (t) => isCpl(t);
    expect(await settle(rc.requester.cpuRead32(EP_BASE + 8))).toBe(0xffffffff);
    expect(await settle(rc.requester.cpuRead(EP_BASE + 8, 2))).toBe(0xffff);
  });
});

describe('completion errors', () => {
  it('UR for an unclaimed address, CA when the target throws', async () => {
    const { rc, ep, settle } = makePair();
    expect(await codeOf(settle(rc.requester.memRead(0x7000_0000, 16)))).toBe('ERR_CPL_UR');
    ep.completer.addMemoryTarget({
      claims: (a) => a >= 0x6000_0000 && a < 0x6000_1000,
      read: () => {
        throw new RangeError('device fell over');
      },
      write: () => {},
    });
    expect(await codeOf(settle(rc.requester.memRead(0x6000_0000, 16)))).toBe('ERR_CPL_CA');
    expect(rc.counters.get('cpl.status.UR')).toBe(1);
    expect(rc.counters.get('cpl.status.CA')).toBe(1);
    expect(ep.counters.get('completer.UR')).toBe(1);
    expect(ep.counters.get('completer.CA')).toBe(1);
    expect(rc.requester.stats().tagsInUse).toBe(0);
  });

  it('a posted write to an unclaimed address is dropped and counted, with no completion', async () => {
    const { rc, ep, settle, epLink } = makePair({ link: { record: true } });
    await settle(rc.requester.memWrite(0x7000_0000, new Uint8Array(8)));
    await settle(rc.requester.memRead(EP_BASE, 4)); // flush
    expect(ep.counters.get('completer.unclaimedWrite')).toBe(1);
    expect(epLink.sent.filter(isCpl).length).toBe(1); // only the read's
  });

  it('times out per Device Control 2 (range minimum) on the virtual clock, then reports the late completion', async () => {
    const { rc, clock, epLink, settle } = makePair({ link: { latencyNs: 1000 } });
    const events: CompletionErrorEvent[] = [];
    rc.onCompletionError = (e) => events.push(e);
    // Hold the completion back for 3 ms; the timeout is 1 ms (range 0b0010's minimum).
    const held: Tlp[] = [];
    epLink.dropIf = (t) => {
      if (isCpl(t)) {
        held.push(t);
        return true;
      }
      return false;
    };
    const t0 = clock.nowNs();
    expect(await codeOf(settle(rc.requester.memRead(EP_BASE, 64)))).toBe('ERR_CPL_TIMEOUT');
    expect(clock.nowNs() - t0).toBe(cplTimeoutNs({ range: 0b0010 }));
    expect(clock.nowNs() - t0).toBe(1 * NS_PER_MS);
    expect(rc.counters.get('cpl.timeout')).toBe(1);
    expect(events.map((e) => e.kind)).toEqual(['timeout']);
    expect(rc.requester.stats().tagsInUse).toBe(0);
    // The completion arrives late: an Unexpected Completion.
    expect(held.length).toBe(1);
    rc.requester.handleCompletion(held[0] as CplTlp);
    expect(rc.counters.get('cpl.unexpected')).toBe(1);
    expect(events[1]?.kind).toBe('unexpected');
    expect(events[1]?.reason).toMatch(/timed out/);
  });

  it('the timeout runs from transmission: a read waiting for credits is not late', async () => {
    const { rc, rcLink, clock, settle, epRam } = makePair();
    rcLink.setAvailable('NP', { hdr: 0, data: 0 });
    const p = rc.requester.memRead(EP_BASE, 8);
    clock.run({ untilNs: 5 * NS_PER_MS });
    rcLink.setAvailable('NP', { hdr: 1, data: 1 });
    expect(await settle(p)).toEqual(epRam.bytes.subarray(0, 8));
    expect(rc.counters.get('cpl.timeout')).toBe(0);
  });

  it('the timeout is cancelled by the completion', async () => {
    const { rc, clock, settle } = makePair();
    await settle(rc.requester.memRead(EP_BASE, 64));
    clock.run();
    expect(rc.counters.get('cpl.timeout')).toBe(0);
  });

  it('a completion with an unknown tag or another requester ID is unexpected', () => {
    const { rc } = makePair();
    const events: CompletionErrorEvent[] = [];
    rc.onCompletionError = (e) => events.push(e);
    const cpl: CplTlp = {
      kind: 'CplD', tc: 0, ido: false, ro: false, ns: false, ln: false, th: false, td: false, ep: false, at: 0,
      lengthDw: 1, completerId: EP_ID, status: 'SC', bcm: false, byteCount: 4, requesterId: RC_ID, tag: 17,
      lowerAddress: 0, data: new Uint8Array(4),
    };
    rc.requester.handleCompletion(cpl);
    rc.requester.handleCompletion({ ...cpl, requesterId: 0x0200 });
    expect(rc.counters.get('cpl.unexpected')).toBe(2);
    expect(events.map((e) => e.kind)).toEqual(['unexpected', 'unexpected']);
  });

  it('a wrong Byte Count or Lower Address is malformed: counted, reported, the read fails', async () => {
    for (const field of ['byteCount', 'lowerAddress'] as const) {
      const { rc, epLink, settle } = makePair();
      const events: CompletionErrorEvent[] = [];
      rc.onCompletionError = (e) => events.push(e);
      epLink.mutate = (t) => (isCpl(t) ? { ...t, [field]: t[field] === 8 ? 12 : 8 } : t);
      expect(await codeOf(settle(rc.requester.memRead(EP_BASE + 8, 32)))).toBe('ERR_CPL_MALFORMED');
      expect(rc.counters.get('cpl.malformed')).toBe(1);
      expect(events[0]?.kind).toBe('malformed');
      expect(events[0]?.reason).toMatch(field === 'byteCount' ? /Byte Count/ : /Lower Address/);
    }
  });

  it('a poisoned completion fails the read with ERR_CPL_POISONED', async () => {
    const { rc, epLink, settle } = makePair();
    epLink.mutate = (t) => (isCpl(t) ? { ...t, ep: true } : t);
    expect(await codeOf(settle(rc.requester.memRead(EP_BASE, 32)))).toBe('ERR_CPL_POISONED');
    expect(rc.counters.get('cpl.poisoned')).toBe(1);
  });
});

describe('tags', () => {
  it('uses 10-bit tags (256..1023) only when both sides support them', async () => {
    for (const [mine, theirs, tenBit] of [
      [true, true, true],
      [true, false, false],
      [false, true, false],
    ] as const) {
      const { rc, rcLink, settle } = makePair({
        link: { record: true, b: { caps: { tag10Bit: theirs } } },
        rcConfig: { tag10Bit: mine },
      });
      await settle(rc.requester.memRead(EP_BASE, 8192));
      const tags = rcLink.sent.filter((t) => t.kind === 'MRd').map((t) => t.tag);
      expect(tags.length).toBe(16);
      expect(rc.requester.stats().tag10Bit).toBe(tenBit);
      for (const tag of tags) {
        if (tenBit) {
          expect(tag).toBeGreaterThanOrEqual(256);
          expect(tag).toBeLessThanOrEqual(1023);
        } else expect(tag).toBeLessThan(256);
      }
    }
  });

  it('768 reads can be outstanding with 10-bit tags, 256 without', async () => {
    for (const [tenBit, expected] of [
      [true, 768],
      [false, 256],
    ] as const) {
      const { rc, settle } = makePair({
        link: { b: { caps: { tag10Bit: true }, credits: { NP: { hdr: Infinity, data: Infinity } } } },
        rcConfig: { tag10Bit: tenBit, maxReadRequestSize: 128 },
        epRamBytes: 1000 * 128,
      });
      const p = rc.requester.memRead(EP_BASE, 1000 * 128);
      await Promise.resolve();
      expect(rc.requester.stats().tagsInUse).toBe(expected);
      expect(rc.requester.stats().waitingForTags).toBe(1);
      await settle(p);
      expect(rc.requester.stats().tagsInUse).toBe(0);
    }
  });

  it('tag exhaustion waits rather than fails', async () => {
    const { rc, epRam, settle } = makePair({ rcConfig: { maxOutstandingTags: 2 } });
    const reads = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => rc.requester.memRead(EP_BASE + i * 100, 40));
    const cfg = rc.requester.cfgRead(EP_ID, 0).catch((e: unknown) => (isTlpwireError(e) ? e.code : 'x'));
    expect(rc.requester.stats().tagsInUse).toBe(2);
    const all = await settle(Promise.all(reads));
    for (let i = 0; i < 8; i++) expect(all[i]).toEqual(epRam.bytes.subarray(i * 100, i * 100 + 40));
    expect(await settle(cfg)).toBe('ERR_CPL_UR'); // no config target on the ep in this test
  });
});

describe('config, I/O and messages', () => {
  function configSpace(): ConfigTarget & { regs: Map<number, number> } {
    const regs = new Map<number, number>([[0, 0x10411af4]]);
    return {
      regs,
      configRead: (bdf, reg) => (bdf === EP_ID ? regs.get(reg) ?? 0 : undefined),
      configWrite: (bdf, reg, value, be) => {
        if (bdf !== EP_ID) return false;
        let v = regs.get(reg) ?? 0;
        for (let i = 0; i < 4; i++) {
          if ((be >> i) & 1) v = (v & ~(0xff << (8 * i))) | (value & (0xff << (8 * i)));
        }
        regs.set(reg, v >>> 0);
        return true;
      },
    };
  }

  it('cfgRead/cfgWrite with byte enables; UR for a missing function', async () => {
    const { rc, ep, settle } = makePair();
    const cs = configSpace();
    ep.completer.setConfigTarget(cs);
    expect(await settle(rc.requester.cfgRead(EP_ID, 0))).toBe(0x10411af4);
    await settle(rc.requester.cfgWrite(EP_ID, 4, 0xaabbccdd));
    await settle(rc.requester.cfgWrite(EP_ID, 4, 0x11223344, 0b0010));
    expect(await settle(rc.requester.cfgRead(EP_ID, 4))).toBe(0xaabb33dd);
    expect(await codeOf(settle(rc.requester.cfgRead(0x0200, 0)))).toBe('ERR_CPL_UR');
    expect(await codeOf(settle(rc.requester.cfgWrite(0x0200, 0, 1)))).toBe('ERR_CPL_UR');
  });

  it('a config write completion may pass posted writes (D2b), and the completer ID is the addressed function', async () => {
    const { rc, ep, settle, epLink } = makePair({ link: { record: true } });
    ep.completer.setConfigTarget(configSpace());
    await settle(rc.requester.cfgWrite(EP_ID, 1, 5));
    const cpl = epLink.sent.find(isCpl);
    expect(cpl?.completerId).toBe(EP_ID);
    expect(cpl?.kind).toBe('Cpl');
    expect(cpl?.byteCount).toBe(4);
  });

  it('I/O reads and writes of 1..4 bytes', async () => {
    const { rc, ep, settle } = makePair();
    const io = new Uint8Array(16);
    ep.completer.addIoTarget({
      claims: (a, n) => a >= 0x100 && a + n <= 0x110,
      read: (a, n) => io.slice(a - 0x100, a - 0x100 + n),
      write: (a, d, fbe) => {
        for (let i = 0; i < 4; i++) if ((fbe >> i) & 1) io[a - 0x100 + i] = d[i]!;
      },
    });
    await settle(rc.requester.ioWrite(0x105, new Uint8Array([0x12, 0x34])));
    expect(await settle(rc.requester.ioRead(0x105, 2))).toBe(0x3412);
    expect(await settle(rc.requester.ioRead(0x104, 4))).toBe(0x341200);
    expect(await codeOf(settle(rc.requester.ioRead(0x200, 1)))).toBe('ERR_CPL_UR');
  });

  it('messages reach the other side', async () => {
    const { rc, ep, settle } = makePair();
    const got: MsgTlp[] = [];
    rc.onMessage = (m) => got.push(m);
    await settle(ep.requester.sendMessage({ messageCode: MSG_CODE.ASSERT_INTA, routing: MSG_ROUTING.LOCAL }));
    await settle(ep.requester.memWrite(0, new Uint8Array(4))); // MSI-X is just a write
    await settle(ep.requester.memRead(0, 4));
    expect(got.map((m) => [m.messageCode, m.requesterId])).toEqual([[MSG_CODE.ASSERT_INTA, EP_ID]]);
  });
});

describe('backpressure', () => {
  it('256 MiB written in awaited 64 KiB chunks never queues more than one chunk', async () => {
    const { rc, ep, rcLink, settle } = makePair({
      link: { latencyNs: 500, b: { credits: { P: { hdr: 64, data: 64 * 256 } } } },
      rcConfig: { maxPayloadSize: 4096 },
      epConfig: { maxPayloadSize: 4096 },
    });
    const sink = new SinkTarget();
    ep.completer.addMemoryTarget(sink);
    const chunk = new Uint8Array(64 * 1024);
    const total = 256 * 1024 * 1024;
    const heapBefore = process.memoryUsage().heapUsed;
    const run = async (): Promise<void> => {
      for (let off = 0; off < total; off += chunk.length) await rc.requester.memWrite(0x4000_0000 + off, chunk);
    };
    await settle(run());
    await settle(rc.requester.memRead(0x4000_0000, 4)); // flush
    expect(sink.bytesWritten).toBe(total);
    expect(rc.queues.stats().highWater).toBeLessThanOrEqual(16);
    // 64 posted writes (the P header credits) plus the final read.
    expect(rcLink.maxInFlight).toBeLessThanOrEqual(64 + 1);
    // Loose: 256 MiB of retained payload would show; a few MiB of garbage would not.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
  });
});
