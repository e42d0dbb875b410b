import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import { isTlpwireError, TlpwireError } from '../../src/core/index.js';
import { ITEM, Link, createMemoryTransportPair, tlpCredits } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { encodeTlp, memWriteTlp, type Tlp } from '../../src/tlp/index.js';
import { packControl } from '../../src/link/control.js';
import { batch, bringUp, cpld, helloObject, item, itemsOf, linkPair, mrd, mwr, pack, rawPeer } from './helpers.js';

describe('training handshake', () => {
  it('brings both sides up and exchanges capabilities', () => {
    const p = linkPair({ name: 'host', maxPayloadSize: 256 }, { tag10Bit: false, features: ['x-test'] });
    const statesA: string[] = [];
    p.a.onStateChange = (s) => statesA.push(s);
    expect(p.a.state).toBe('down');
    bringUp(p);
    expect(statesA).toEqual(['training', 'up']);
    expect(p.b.partner).toEqual({ maxPayloadSize: 256, tag10Bit: true, features: ['scaled-fc'], role: 'rc host' });
    expect(p.a.partner?.tag10Bit).toBe(false);
    expect(p.a.partner?.features).toContain('x-test');
    // scaled flow control active: the full default posted window is granted
    expect(p.a.creditsAvailable('PD')).toBe(32752);
    expect(p.a.creditsAvailable('CplD')).toBe(Infinity);
  });

  it('falls back to unscaled credits when one side does not offer scaled-fc', () => {
    const p = linkPair({}, { scaledFlowControl: false });
    bringUp(p);
    expect(p.a.creditsAvailable('PD')).toBe(2047);
    expect(p.a.creditsAvailable('PH')).toBe(127);
    expect(p.b.creditsAvailable('PD')).toBe(2047);
  });

  it('whenUp resolves; a late start after the partner hello still completes', async () => {
    const p = linkPair();
    p.b.start();
    p.clock.run({ untilNs: 1_000_000 });
    expect(p.a.state).toBe('down'); // a has b's hello but has not started
    const up = p.a.whenUp();
    p.a.start();
    p.clock.run({ untilNs: 2_000_000 });
    await expect(up).resolves.toBeUndefined();
    expect(p.b.state).toBe('up');
  });

  it('refuses a version mismatch with a clear reason on both sides', async () => {
    const p = linkPair({}, { protocolVersion: 2 });
    const reasons: string[] = [];
    p.a.onStateChange = (s, r) => {
      if (s === 'down') reasons.push(`a: ${r ?? ''}`);
    };
    p.b.onStateChange = (s, r) => {
      if (s === 'down') reasons.push(`b: ${r ?? ''}`);
    };
    const upA = p.a.whenUp();
    p.a.start();
    p.b.start();
    p.clock.run();
    expect(reasons).toContain('a: protocol version mismatch: local 1, remote 2');
    expect(reasons).toContain('b: protocol version mismatch: local 2, remote 1');
    await expect(upA).rejects.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_LINK_VERSION'));
    expect(p.logA.some((l) => l.level === 'error' && l.msg.includes('protocol version mismatch: local 1, remote 2'))).toBe(true);
    expect(p.logB.some((l) => l.level === 'error' && l.msg.includes('protocol version mismatch: local 2, remote 1'))).toBe(true);
  });

  it('sends an ERROR item before closing on a version mismatch', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(7, item(ITEM.HELLO, pack(helloObject({ version: 7, somethingNew: [1, 2] }))))]);
    r.clock.run();
    const last = r.received[r.received.length - 1]!;
    const items = itemsOf(last);
    expect(items[0]![0]).toBe(ITEM.ERROR);
    expect(unpack(items[0]![1])).toEqual({ code: 'ERR_LINK_VERSION', message: 'protocol version mismatch: local 1, remote 7' });
    expect(r.closed()).toBe(true);
    expect(r.link.state).toBe('down');
  });

  it('reports a partner that refuses us before its HELLO, in the partner\'s words', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.ERROR, pack({ code: 'ERR_LINK_AUTH', message: 'who are you?' })))]);
    r.clock.run({ untilNs: 1000 });
    expect(r.link.reason).toBe('partner: who are you?');
    expect(r.log.some((l) => l.level === 'error' && l.msg === 'partner reported an error: who are you?')).toBe(true);
  });

  it('times out a silent partner through the clock', () => {
    const r = rawPeer({ handshakeTimeoutNs: 2_000_000_000 });
    r.link.start();
    r.clock.run({ untilNs: 1_999_000_000 });
    expect(r.link.state).toBe('training');
    r.clock.run({ untilNs: 2_100_000_000 });
    expect(r.link.state).toBe('down');
    expect(r.link.reason).toBe('handshake timeout after 2000 ms');
    expect(r.closed()).toBe(true);
  });

  it('refuses bytes that are not tlpwire, logging the first bytes', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n')]);
    r.clock.run();
    expect(r.link.state).toBe('down');
    expect(r.link.reason).toBe('not a tlpwire peer (first bytes: 47 45 54 20 2f 20 48 54 …)');
    expect(r.log.some((l) => l.level === 'warn' && l.msg.includes('not a tlpwire peer'))).toBe(true);
    expect(r.closed()).toBe(true);
    expect(r.link.counters.get('errors.protocol')).toBe(1);
  });

  it('refuses a hello that names another protocol, a malformed hello, and a TLP before the hello', () => {
    const cases: [Uint8Array, string][] = [
      [batch(1, item(ITEM.HELLO, pack(helloObject({ protocol: 'other' })))), 'protocol error: handshake names protocol "other", not "tlpwire"'],
      [batch(1, item(ITEM.HELLO, pack(helloObject({ capabilities: { maxPayloadSize: 100, tag10Bit: true, features: [] } })))), 'maxPayloadSize 100'],
      [batch(1, item(ITEM.HELLO, new Uint8Array([0x82, 0xa1]))), 'undecodable MessagePack'],
      [batch(1, item(ITEM.TLP, encodeTlp(mwr(4)))), 'first item is type 0x01, expected HELLO'],
      [batch(1, item(ITEM.HELLO, pack(helloObject({ fc: { credits: { PH: 1000, PD: 1, NPH: 1, NPD: 1, CplH: 0, CplD: 0 }, scale: { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 } } })))), 'PH: 1000 credits exceed the maximum 127'],
    ];
    for (const [bytes, expected] of cases) {
      const r = rawPeer();
      r.link.start();
      r.raw.send([bytes]);
      r.clock.run();
      expect(r.link.state).toBe('down');
      expect(r.link.reason).toContain(expected);
      expect(r.closed()).toBe(true);
    }
  });

  it('reports the partner error message and the BYE reason', () => {
    const p = linkPair();
    bringUp(p);
    p.a.close('operator shutdown');
    p.clock.run();
    expect(p.a.state).toBe('down');
    expect(p.b.state).toBe('down');
    expect(p.b.reason).toBe('partner closed: operator shutdown');
    expect(p.a.reason).toBe('operator shutdown');
  });

  it('goes down when the transport breaks', () => {
    const p = linkPair();
    bringUp(p);
    p.ta.breakConnection(new TlpwireError('ERR_TRANSPORT', 'cable cut'));
    p.clock.run();
    expect(p.a.reason).toBe('transport error: cable cut');
    expect(p.b.state).toBe('down');
  });
});

describe('batching', () => {
  it('sends the TLPs of one turn in one transport message', () => {
    const p = linkPair();
    bringUp(p);
    const got: Tlp[] = [];
    p.b.onTlp = (t) => got.push(t);
    const before = p.a.counters.get('batches.sent');
    const sent: Tlp[] = [];
    for (let i = 0; i < 50; i++) {
      const t = i % 2 ? mwr(64, i) : mrd(16, i);
      sent.push(t);
      p.a.sendTlp(t);
    }
    p.clock.run();
    expect(p.a.counters.get('batches.sent') - before).toBe(1);
    expect(got).toEqual(sent);
    expect(p.a.counters.get('tlp.sent.MWr')).toBe(25);
    expect(p.b.counters.get('tlp.received.MRd')).toBe(25);
  });

  it('flushes early before a batch would pass 64 KiB', () => {
    const p = linkPair();
    bringUp(p);
    const sizes: number[] = [];
    const orig = p.ta.send.bind(p.ta);
    p.ta.send = (chunks) => {
      sizes.push(chunks.reduce((n, c) => n + c.length, 0));
      return orig(chunks);
    };
    let n = 0;
    p.b.onTlp = (t) => {
      n++;
      const c = tlpCredits(t);
      p.b.releaseCredits(c.cls, c.dataBytes);
    };
    for (let i = 0; i < 100; i++) p.a.sendTlp(mwr(1024)); // ~104 KiB in one turn
    p.clock.run();
    expect(n).toBe(100);
    expect(sizes.length).toBe(2);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(64 * 1024);
  });

  it('the wire bytes of a batch are the header, then type/flags/length/TLP per item', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    expect(r.link.state).toBe('up');
    const t1 = mwr(8, 0x11);
    const t2 = mrd(4);
    r.link.sendTlp(t1);
    r.link.sendTlp(t2);
    r.clock.run();
    const last = r.received[r.received.length - 1]!;
    expect([...last]).toEqual([...batch(1, item(ITEM.TLP, encodeTlp(t1)), item(ITEM.TLP, encodeTlp(t2)))]);
  });
});

describe('flow control', () => {
  it('a slow receiver slows the sender and bounds every queue', () => {
    const credits = { PH: 64, PD: 1024 }; // 16 KiB of posted data
    const p = linkPair({}, { credits, scales: { PH: 1, PD: 1 } }, { latencyNs: 50_000 });
    bringUp(p);
    const total = 2000;
    let sent = 0;
    let received = 0;
    let maxHeld = 0;
    const backlog: Tlp[] = [];
    const pump = (): void => {
      while (sent < total && p.a.hasCredits('P', 256)) {
        p.a.sendTlp(mwr(256, sent & 0xff));
        sent++;
      }
    };
    p.a.onCreditsAvailable = pump;
    p.b.onTlp = (t) => {
      backlog.push(t);
      maxHeld = Math.max(maxHeld, p.b.creditsHeld('PD'));
    };
    // the receiver frees one TLP every 10 µs: far slower than the sender could go
    const consume = (): void => {
      const t = backlog.shift();
      if (t !== undefined) {
        received++;
        const c = tlpCredits(t);
        p.b.releaseCredits(c.cls, c.dataBytes);
      }
      if (received < total) p.clock.setTimer(10_000, consume);
    };
    p.clock.setTimer(10_000, consume);
    pump();
    p.clock.runUntil(() => received === total, 5_000_000);
    expect(received).toBe(total);
    // never more in the receiver than it advertised
    expect(maxHeld).toBeLessThanOrEqual(1024);
    expect(backlog.length).toBe(0);
    // the transport never held more than the window (plus headers and UpdateFC items)
    expect(p.ta.maxInFlight).toBeLessThan(1024 * 16 + 64 * 40);
    expect(p.a.counters.get('stalls.credits')).toBeGreaterThan(0);
    // credits came back in coalesced UpdateFCs, far fewer than one per TLP
    const updates = p.b.counters.get('fc.updates.sent');
    expect(updates).toBeGreaterThan(0);
    expect(updates).toBeLessThan(total / 4);
    // the run takes about total × 10 µs: the receiver's pace, not the sender's
    expect(p.clock.nowNs()).toBeGreaterThan(total * 10_000);
  });

  it('UpdateFC is coalesced to one per turn when a consumer releases everything at once', () => {
    const p = linkPair();
    bringUp(p);
    p.b.onTlp = (t) => {
      const c = tlpCredits(t);
      p.b.releaseCredits(c.cls, c.dataBytes);
    };
    for (let i = 0; i < 200; i++) p.a.sendTlp(mwr(128));
    p.clock.run();
    expect(p.b.counters.get('fc.updates.sent')).toBe(1);
    expect(p.a.creditsAvailable('PD')).toBe(32752); // 1600 data credits: a multiple of 16
    // 200 headers at scale 16: 192 can be advertised, 8 wait for the next 16-credit step
    expect(p.a.creditsAvailable('PH')).toBe(2032 - 8);
  });

  it('scale 16: freed credits are advertised in whole steps of 16', () => {
    const p = linkPair();
    bringUp(p);
    const held: Tlp[] = [];
    p.b.onTlp = (t) => held.push(t);
    for (let i = 0; i < 16; i++) p.a.sendTlp(mwr(64));
    p.clock.run();
    expect(p.a.creditsAvailable('PH')).toBe(2032 - 16);
    const release = (t: Tlp): void => {
      const c = tlpCredits(t);
      p.b.releaseCredits(c.cls, c.dataBytes);
    };
    release(held[0]!);
    p.clock.run();
    // one header and four data credits are free, but an UpdateFC can only say multiples of 16
    expect(p.b.counters.get('fc.updates.sent')).toBe(0);
    expect(p.a.creditsAvailable('PH')).toBe(2032 - 16);
    for (const t of held.slice(1)) release(t);
    p.clock.run();
    expect(p.b.counters.get('fc.updates.sent')).toBe(1);
    expect(p.a.creditsAvailable('PH')).toBe(2032);
    expect(p.a.creditsAvailable('PD')).toBe(32752);
  });

  it('a small release comes back within the update delay', () => {
    const p = linkPair({}, { scaledFlowControl: false, fcUpdateDelayNs: 200_000 });
    bringUp(p);
    let held: Tlp | undefined;
    p.b.onTlp = (t) => {
      held = t;
    };
    p.a.sendTlp(mwr(64));
    p.clock.run();
    expect(p.a.creditsAvailable('PH')).toBe(126);
    expect(p.a.creditsAvailable('PD')).toBe(2047 - 4);
    const c = tlpCredits(held!);
    let back = -1;
    p.a.onCreditsAvailable = () => {
      back = p.clock.nowNs();
    };
    const t0 = p.clock.nowNs();
    p.b.releaseCredits(c.cls, c.dataBytes);
    p.clock.run();
    expect(p.a.creditsAvailable('PH')).toBe(127);
    expect(p.a.creditsAvailable('PD')).toBe(2047);
    expect(back - t0).toBe(200_000);
  });

  it('sendTlp without credits throws ERR_LINK_NO_CREDITS and queues nothing', () => {
    const p = linkPair({}, { credits: { NPH: 16 }, scales: { NPH: 1 } });
    bringUp(p);
    for (let i = 0; i < 16; i++) p.a.sendTlp(mrd(4, i));
    expect(p.a.hasCredits('NP', 0)).toBe(false);
    expect(() => p.a.sendTlp(mrd(4, 99))).toThrow(expect.objectContaining({ code: 'ERR_LINK_NO_CREDITS' }) as TlpwireError);
    let n = 0;
    p.b.onTlp = () => n++;
    p.clock.run();
    expect(n).toBe(16);
  });

  it('infinite completion credits never stall', () => {
    const p = linkPair();
    bringUp(p);
    for (let i = 0; i < 3000; i++) {
      expect(p.a.hasCredits('Cpl', 256)).toBe(true);
      p.a.sendTlp(cpld(256, i & 0xff));
    }
    let n = 0;
    p.b.onTlp = () => n++;
    p.clock.run();
    expect(n).toBe(3000);
    expect(p.a.counters.get('stalls.credits')).toBe(0);
  });

  it('transport backpressure: hasCredits is false above the high-water mark until drain', () => {
    const p = linkPair({}, {}, { highWaterBytes: 128 * 1024 });
    bringUp(p);
    let i = 0;
    while (p.a.hasCredits('Cpl', 1024)) p.a.sendTlp(cpld(1024, i++ & 0xff));
    // stopped at the first batch that took the transport past 128 KiB, not at a credit limit
    expect(i).toBeGreaterThan(100);
    expect(i).toBeLessThan(200);
    expect(p.a.counters.get('stalls.transport')).toBe(1);
    let resumed = 0;
    p.a.onCreditsAvailable = () => resumed++;
    p.clock.run();
    expect(resumed).toBe(1);
    expect(p.a.hasCredits('Cpl', 1024)).toBe(true);
  });

  it('a partner that sends beyond its credits is a protocol error', () => {
    const r = rawPeer({ credits: { PH: 4, PD: 64 }, scales: { PH: 1, PD: 1 }, maxPayloadSize: 128 });
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    expect(r.link.state).toBe('up');
    const items = [];
    for (let i = 0; i < 5; i++) items.push(item(ITEM.TLP, encodeTlp(mwr(16))));
    r.raw.send([batch(1, ...items)]);
    r.clock.run();
    expect(r.link.state).toBe('down');
    expect(r.link.reason).toBe('protocol error: partner sent beyond its PH credits');
    expect(r.link.counters.get('errors.protocol')).toBe(1);
    const last = itemsOf(r.received[r.received.length - 1]!);
    expect(last[0]![0]).toBe(ITEM.ERROR);
  });

  it('an UpdateFC granting more than half the counter range is a protocol error', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    // limit 32 → field 200: 200 − 0 > 128 outstanding on an 8-bit counter
    r.raw.send([batch(1, item(ITEM.UPDATE_FC, pack({ PH: 200 })))]);
    r.clock.run();
    expect(r.link.reason).toContain('flow control protocol error');
  });

  it('onCreditsAvailable fires when an UpdateFC raises a limit', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    let fired = 0;
    r.link.onCreditsAvailable = () => fired++;
    for (let i = 0; i < 32; i++) r.link.sendTlp(mrd(4, i));
    expect(r.link.hasCredits('NP', 0)).toBe(false);
    r.raw.send([batch(1, item(ITEM.UPDATE_FC, pack({ NPH: 40 })))]);
    r.clock.run();
    expect(fired).toBe(1);
    expect(r.link.creditsAvailable('NPH')).toBe(8);
    expect(r.link.hasCredits('NP', 0)).toBe(true);
  });
});

describe('malformed TLPs and unknown items', () => {
  it('drops a malformed TLP, counts it, reports it, returns its credits and stays up', () => {
    const r = rawPeer({ malformedLogEvery: 10, scaledFlowControl: false });
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    const good = encodeTlp(mwr(16));
    const bad = good.slice();
    bad[3] = 9; // Length says 9 DW, the item carries 4
    const reports: [string, number][] = [];
    r.link.onMalformedTlp = (e, bytes) => reports.push([e.code, bytes.length]);
    let got = 0;
    r.link.onTlp = () => got++;
    const items = [];
    for (let i = 0; i < 25; i++) items.push(item(ITEM.TLP, bad));
    items.push(item(ITEM.TLP, good));
    items.push(item(ITEM.TLP, new Uint8Array([0xff, 0, 0, 0]))); // not a TLP kind at all
    r.raw.send([batch(1, ...items)]);
    r.clock.run({ untilNs: 1_000_000 });
    expect(r.link.state).toBe('up');
    expect(got).toBe(1);
    expect(reports.length).toBe(26);
    expect(reports[0]).toEqual(['ERR_TLP_LENGTH', good.length]);
    expect(reports[25]![0]).toBe('ERR_TLP_RESERVED');
    expect(r.link.counters.get('tlp.malformed')).toBe(26);
    // logged once per 10: the 1st, 11th and 21st
    expect(r.log.filter((l) => l.msg.startsWith('malformed TLP dropped')).length).toBe(3);
    // the 25 dropped TLPs' credits were returned (the good one is still held by the consumer)
    expect(r.link.creditsHeld('PH')).toBe(1);
    const fc = r.received.flatMap(itemsOf).filter(([t]) => t === ITEM.UPDATE_FC);
    expect(fc.length).toBe(1);
    expect(unpack(fc[0]![1])).toEqual({ PH: 127 + 25, PD: 2047 + 25 }); // our unscaled window + the freed
  });

  it('a partner that sends beyond its credits inside a run of writes: the writes before are done, then a protocol error', () => {
    const r = rawPeer({ credits: { PH: 4, PD: 64 }, scales: { PH: 1, PD: 1 }, maxPayloadSize: 128 });
    const done: number[] = [];
    r.link.onMemWriteRun = (run) => {
      for (let i = 0; i < run.count; i++) done.push(run.bytes[run.dataOffsets[i]!]!);
      return true;
    };
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    // Five contiguous writes of 16 bytes: one run, the fifth beyond the 4 PH credits.
    const items = [];
    for (let i = 0; i < 5; i++) items.push(item(ITEM.TLP, encodeTlp(memWriteTlp({ requesterId: 0x0100, address: 0x9000 + i * 16, data: new Uint8Array(16).fill(i + 1) }))));
    r.raw.send([batch(1, ...items)]);
    r.clock.run();
    expect(done).toEqual([1, 2, 3, 4]);
    expect(r.link.state).toBe('down');
    expect(r.link.reason).toBe('protocol error: partner sent beyond its PH credits');
  });

  it('a write beyond our Max_Payload_Size inside a run of writes is dropped alone; the writes around it are done', () => {
    const r = rawPeer({ maxPayloadSize: 128 });
    const done: string[] = [];
    r.link.onMemWriteRun = (run) => {
      for (let i = 0; i < run.count; i++) done.push(`${run.bytes[run.dataOffsets[i]!]!}:${run.dataLengths[i]!}`);
      return true;
    };
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    const errs: string[] = [];
    r.link.onMalformedTlp = (e) => errs.push(e.message);
    // 64, 64, 256 (too large), 64 bytes, each where the previous ended.
    const sizes = [64, 64, 256, 64];
    const items = [];
    let a = 0x9000;
    for (const [i, n] of sizes.entries()) {
      items.push(item(ITEM.TLP, encodeTlp(memWriteTlp({ requesterId: 0x0100, address: a, data: new Uint8Array(n).fill(i + 1) }))));
      a += n;
    }
    r.raw.send([batch(1, ...items)]);
    r.clock.run({ untilNs: 1_000_000 });
    expect(errs).toEqual(['MWr payload of 256 bytes exceeds Max_Payload_Size 128']);
    expect(done).toEqual(['1:64', '2:64', '4:64']);
    expect(r.link.state).toBe('up');
  });

  it('a stream of CplD: each one the fast handler takes, declines (then decoded for onTlp), throws on, or finds too large, handled as alone', () => {
    const r = rawPeer({ maxPayloadSize: 128 });
    const fast: number[] = [];
    const slow: number[] = [];
    r.link.onCompletionData = (_bytes, v) => {
      if (v.tag === 3) return false; // declined: onTlp gets it decoded
      if (v.tag === 5) throw new Error('consumer bug');
      fast.push(v.tag);
      r.link.releaseCredits('Cpl', v.dataLength);
      return true;
    };
    r.link.onTlp = (t) => {
      if (t.kind === 'CplD') slow.push(t.tag);
      r.link.releaseCredits('Cpl', t.data?.length ?? 0);
    };
    const errs: string[] = [];
    r.link.onMalformedTlp = (e) => errs.push(e.message);
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    // Tags 1..8 in one batch; tag 7 carries 256 bytes, beyond our MPS of 128.
    const items = [];
    for (let tag = 1; tag <= 8; tag++) items.push(item(ITEM.TLP, encodeTlp(cpld(tag === 7 ? 256 : 64, tag))));
    r.raw.send([batch(1, ...items)]);
    r.clock.run({ untilNs: 1_000_000 });
    expect(fast).toEqual([1, 2, 4, 6, 8]);
    expect(slow).toEqual([3]);
    expect(errs).toEqual(['CplD payload of 256 bytes exceeds Max_Payload_Size 128']);
    expect(r.link.counters.get('errors.consumer')).toBe(1);
    // Counted once each: the five taken, the thrown-on one, and the declined one (by onTlp's path).
    expect(r.link.counters.get('tlp.received.CplD')).toBe(7);
    expect(r.link.state).toBe('up');
  });

  it('a stream of CplD beyond finite completion credits is a protocol error after those within them', () => {
    const r = rawPeer({ credits: { CplH: 3, CplD: 64 }, scales: { CplH: 1, CplD: 1 }, maxPayloadSize: 128 });
    const fast: number[] = [];
    r.link.onCompletionData = (_bytes, v) => {
      fast.push(v.tag);
      return true; // (credits kept: the fourth is beyond the three headers)
    };
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    const items = [];
    for (let tag = 1; tag <= 5; tag++) items.push(item(ITEM.TLP, encodeTlp(cpld(16, tag))));
    r.raw.send([batch(1, ...items)]);
    r.clock.run();
    expect(fast).toEqual([1, 2, 3]);
    expect(r.link.state).toBe('down');
    expect(r.link.reason).toBe('protocol error: partner sent beyond its CplH credits');
  });

  it('drops a TLP whose payload exceeds our Max_Payload_Size', () => {
    const r = rawPeer({ maxPayloadSize: 128 });
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())))]);
    r.clock.run();
    const errs: string[] = [];
    r.link.onMalformedTlp = (e) => errs.push(e.message);
    r.raw.send([batch(1, item(ITEM.TLP, encodeTlp(mwr(256))))]);
    r.clock.run({ untilNs: 1_000_000 });
    expect(errs).toEqual(['MWr payload of 256 bytes exceeds Max_Payload_Size 128']);
    expect(r.link.state).toBe('up');
  });

  it('skips unknown ignorable items, refuses unknown mandatory ones', () => {
    const r = rawPeer();
    r.link.start();
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject())), item(0x90, new Uint8Array([1, 2, 3])))]);
    r.clock.run();
    expect(r.link.state).toBe('up');
    expect(r.link.counters.get('items.ignored')).toBe(1);
    r.raw.send([batch(1, item(ITEM.ACK, new Uint8Array([0, 1])))]);
    r.clock.run();
    expect(r.link.reason).toBe('protocol error: unknown item type 0x14 (reserved for a later version)');
  });

  it('refuses an item that runs past the end of the batch', () => {
    const r = rawPeer();
    r.link.start();
    const hello = batch(1, item(ITEM.HELLO, pack(helloObject())));
    r.raw.send([hello.subarray(0, hello.length - 1)]);
    r.clock.run();
    expect(r.link.reason).toMatch(/^protocol error: item at byte 4 \(type 0x10\) claims \d+ bytes, only \d+ left in the batch$/);
  });

  it('a consumer that throws does not take the link down', () => {
    const p = linkPair();
    bringUp(p);
    let n = 0;
    p.b.onTlp = () => {
      n++;
      if (n === 1) throw new TlpwireError('ERR_INTERNAL', 'consumer bug');
    };
    p.a.sendTlp(mwr(4));
    p.a.sendTlp(mwr(4));
    p.clock.run();
    expect(n).toBe(2);
    expect(p.b.state).toBe('up');
    expect(p.b.counters.get('errors.consumer')).toBe(1);
  });
});

describe('misc', () => {
  it('sendTlp on a link that is not up throws ERR_LINK_DOWN', () => {
    const clock = new VirtualClock();
    const [t] = createMemoryTransportPair(clock);
    const l = new Link(t, { clock, role: 'rc' });
    expect(() => l.sendTlp(mwr(4))).toThrow(expect.objectContaining({ code: 'ERR_LINK_DOWN' }) as TlpwireError);
    expect(l.hasCredits('P', 4)).toBe(false);
  });

  it('rejects configurations that would deadlock or break the protocol', () => {
    const clock = new VirtualClock();
    const [t] = createMemoryTransportPair(clock);
    expect(() => new Link(t, { clock, role: 'rc', maxPayloadSize: 4096, credits: { PD: 64 }, scales: { PD: 1 } })).toThrow(/PD credits 64 at scale 1 cannot hold one 4096-byte payload \(256 needed\)/);
    expect(() => new Link(t, { clock, role: 'rc', maxPayloadSize: 300 })).toThrow(/maxPayloadSize 300/);
    expect(() => new Link(t, { clock, role: 'rc', batchBytes: 100 })).toThrow(/batchBytes/);
  });

  it('counters snapshot names what happened', () => {
    const p = linkPair();
    bringUp(p);
    p.a.sendTlp(mwr(8));
    p.clock.run();
    const s = p.a.counters.snapshot();
    expect(s['tlp.sent.MWr']).toBe(1);
    expect(s['batches.sent']).toBe(2); // hello + the TLP
    expect(s['bytes.sent']).toBeGreaterThan(0);
    expect(p.b.counters.snapshot()['tlp.received.MWr']).toBe(1);
  });
});

describe('docs/PROTOCOL.md worked example', () => {
  /** The hex bytes of the example block: leading 2-digit tokens of each line, comments dropped. */
  function exampleBytes(): Uint8Array {
    const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Worked example'));
    const block = section.slice(section.indexOf('```text') + 7, section.indexOf('```', section.indexOf('```text') + 7));
    const bytes: number[] = [];
    for (const line of block.split('\n')) {
      for (const tok of line.trim().split(/\s+/)) {
        if (!/^[0-9a-f]{2}$/.test(tok)) break;
        bytes.push(parseInt(tok, 16));
      }
    }
    return Uint8Array.from(bytes);
  }

  it('is what a Link receives and sends', () => {
    const example = exampleBytes();
    expect(example.length).toBe(33);
    const r = rawPeer();
    r.link.start();
    const fcObj = { credits: { PH: 32, PD: 64, NPH: 32, NPD: 32, CplH: 0, CplD: 0 }, scale: { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 } };
    r.raw.send([batch(1, item(ITEM.HELLO, pack(helloObject({ fc: fcObj }))))]);
    r.clock.run({ untilNs: 1000 });
    const got: Tlp[] = [];
    r.link.onTlp = (t) => got.push(t);
    r.raw.send([example]);
    r.clock.run({ untilNs: 2000 });
    expect(r.link.state).toBe('up');
    const tlp = memWriteTlp({ requesterId: 0x0100, address: 0x1000, data: Uint8Array.from([0xde, 0xad, 0xbe, 0xef]) });
    expect(got).toEqual([tlp]);
    expect(r.link.creditsAvailable('PD')).toBe(100);
    // and the sending side produces the same TLP item and UPDATE_FC body
    r.link.sendTlp(tlp);
    r.clock.run({ untilNs: 3000 });
    const sent = itemsOf(r.received[r.received.length - 1]!);
    expect([...item(sent[0]![0], sent[0]![1])]).toEqual([...example.subarray(4, 24)]);
    expect([...packControl({ PD: 100 })]).toEqual([...example.subarray(28)]);
  });
});

describe('credits released while a batch is received', () => {
  it('NP: are released as the reads are taken, come back to the partner, and a double release fails at the caller', () => {
    const p = linkPair();
    bringUp(p);
    let calls = 0;
    const errors: unknown[] = [];
    p.b.onMemRead = () => {
      calls++;
      p.b.releaseCredits('NP', 0);
      if (calls === 1) {
        try {
          p.b.releaseCredits('NP', 0); // one release too many
        } catch (e) {
          errors.push(e);
        }
      }
      held.push(p.b.creditsHeld('NPH'));
      return true;
    };
    const held: number[] = [];
    const before = p.a.creditsAvailable('NPH');
    const updates = p.a.counters.get('fc.updates.received') ?? 0;
    // One batch; 32 reads, so that the scaled NPH field (units of 16) moves.
    for (let tag = 1; tag <= 32; tag++) p.a.sendTlp(mrd(512, tag));
    p.clock.runUntil(() => calls === 32, 10_000);
    // RxCredits keeps the books: each read's credit is free again as soon as it is released.
    expect(held).toEqual(Array.from({ length: 32 }, () => 0));
    expect(errors.length).toBe(1);
    expect(isTlpwireError(errors[0]) && errors[0].code).toBe('ERR_INTERNAL');
    expect(p.b.creditsHeld('NPH')).toBe(0);
    // ... and the partner gets them back.
    p.clock.runUntil(() => p.a.creditsAvailable('NPH') === before, 10_000);
    expect(p.a.creditsAvailable('NPH')).toBe(before);
    // In one update for the batch.
    expect(p.a.counters.get('fc.updates.received')).toBe(updates + 1);
  });

  it('Cpl: likewise (released at once; they only balance the books: completions are infinite)', () => {
    const p = linkPair();
    bringUp(p);
    let calls = 0;
    const errors: unknown[] = [];
    const held: number[] = [];
    p.b.onCompletionData = (_bytes, v) => {
      calls++;
      p.b.releaseCredits('Cpl', v.dataLength);
      if (calls === 1) {
        try {
          p.b.releaseCredits('Cpl', v.dataLength);
        } catch (e) {
          errors.push(e);
        }
      }
      held.push(p.b.creditsHeld('CplH'));
      return true;
    };
    for (let tag = 1; tag <= 8; tag++) p.a.sendTlp(cpld(256, tag));
    p.clock.runUntil(() => calls === 8, 10_000);
    expect(held).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(errors.length).toBe(1);
    expect(isTlpwireError(errors[0]) && errors[0].code).toBe('ERR_INTERNAL');
    expect(p.b.creditsHeld('CplH')).toBe(0);
    expect(p.b.creditsHeld('CplD')).toBe(0);
  });
});
