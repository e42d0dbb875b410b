/**
 * Messages that arrive in pieces (a record split across socket reads): the record parser hands
 * the pieces over without joining them, and the link reads the batch where it lies, copying only
 * what a cut runs through. Both must give exactly what one whole message gives.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordParser, type Transport } from '../../src/link/index.js';
import { memReadTlp, memWriteTlp, type Tlp } from '../../src/tlp/index.js';
import { bringUp, linkPair, mrd, mwr, type Pair } from './helpers.js';

function cuts(bytes: Uint8Array, at: readonly number[]): Uint8Array[] {
  const points = [...new Set(at.map((a) => a % (bytes.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

/** The one batch in which `p.a` sends `tlps` (it also goes on to `p.b`). */
function batchOf(p: Pair, tlps: readonly Tlp[]): Uint8Array {
  let sent: Uint8Array | undefined;
  const send = p.ta.send.bind(p.ta);
  p.ta.send = (chunks, done) => {
    sent = Uint8Array.from(chunks[0]!);
    return send(chunks, done);
  };
  for (const t of tlps) p.a.sendTlp(t);
  p.a.flush();
  expect(sent).toBeDefined();
  return sent!;
}

describe('RecordParser with onRecordParts', () => {
  it('delivers every record, whole or as its pieces in order, however the stream is cut', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (records, at) => {
        const stream: number[] = [];
        for (const r of records) stream.push(r.length >>> 24, (r.length >>> 16) & 0xff, (r.length >>> 8) & 0xff, r.length & 0xff, ...r);
        const got: number[][] = [];
        const parser = new RecordParser(
          1024,
          (r) => got.push([...r]),
          () => {},
          (parts) => {
            expect(parts.length).toBeGreaterThan(1);
            got.push(parts.flatMap((p) => [...p]));
          },
        );
        for (const chunk of cuts(Uint8Array.from(stream), at)) parser.push(chunk);
        expect(got).toEqual(records.map((r) => [...r]));
      }),
    );
  });
});

describe('Link.receiveParts', () => {
  it('receives a batch given in pieces exactly as the whole batch, for every cut', () => {
    const p = linkPair();
    bringUp(p);
    // One batch from a with TLPs of several sizes.
    const tlps: Tlp[] = [mwr(256, 1), mrd(512, 3), mwr(4, 2), mwr(64, 9), mrd(4, 4)];
    const msg = batchOf(p, tlps);
    const got: Tlp[] = [];
    p.b.onTlp = (t) => {
      got.push(t);
      p.b.releaseCredits(t.kind.startsWith('MWr') ? 'P' : 'NP', t.kind.startsWith('MWr') ? t.data!.length : 0);
    };
    const tb = p.tb as Transport;
    expect(tb.onMessageParts).toBeDefined();
    for (let cut = 1; cut < msg.length; cut += 3) {
      for (const second of [cut + 1, cut + 17, msg.length - 1]) {
        got.length = 0;
        tb.onMessageParts!(cuts(msg, second > cut && second < msg.length ? [cut, second] : [cut]));
        expect(got).toEqual(tlps);
      }
    }
    expect(p.b.state).toBe('up');
  });

  it('with run handlers, a batch of runs in pieces gives the events, credits and counts of the whole batch, for every cut', () => {
    const p = linkPair();
    bringUp(p);
    // Contiguous writes (one run), reads (a read run), writes again: a DMA's batch in short.
    const tlps: Tlp[] = [];
    for (let i = 0; i < 12; i++) tlps.push(memWriteTlp({ requesterId: 0x0100, address: 0x4_0000 + i * 64, data: new Uint8Array(64).fill(i) }));
    for (let i = 0; i < 6; i++) tlps.push(memReadTlp({ requesterId: 0x0100, tag: 300 + i, address: 0x8_0000 + i * 512, byteLength: 512 }));
    for (let i = 12; i < 20; i++) tlps.push(memWriteTlp({ requesterId: 0x0100, address: 0x4_0000 + i * 64, data: new Uint8Array(64).fill(i) }));
    const msg = batchOf(p, tlps);
    const events: string[] = [];
    p.b.onMemWriteRun = (run) => {
      for (let i = 0; i < run.count; i++) events.push(`w ${run.bytes[run.dataOffsets[i]!]!} ${run.dataLengths[i]!}`);
      return true;
    };
    p.b.onMemReadRun = (run) => {
      for (let i = 0; i < run.count; i++) {
        events.push(`r ${run.tags[i]!}`);
        p.b.releaseCredits('NP', 0);
      }
      return run.count;
    };
    p.b.onTlp = (t) => events.push(`tlp ${t.kind}`);
    const tb = p.tb as Transport;
    tb.onMessage(msg);
    const whole = [...events];
    expect(whole.filter((e) => e.startsWith('w')).length).toBe(20);
    expect(whole.filter((e) => e.startsWith('r')).length).toBe(6);
    expect(whole.filter((e) => e.startsWith('tlp'))).toEqual([]);
    for (let cut = 1; cut < msg.length; cut += 5) {
      for (const second of [cut + 1, cut + 70, msg.length - 1]) {
        events.length = 0;
        tb.onMessageParts!(cuts(msg, second > cut && second < msg.length ? [cut, second] : [cut]));
        expect(events).toEqual(whole);
      }
    }
    for (const t of ['PH', 'PD', 'NPH'] as const) expect(p.b.creditsHeld(t)).toBe(0);
    expect(p.b.state).toBe('up');
  });

  it('refuses a batch without the header in pieces as it would whole', () => {
    const p = linkPair();
    bringUp(p);
    const tb = p.tb as Transport;
    tb.onMessageParts!([Uint8Array.of(0x54), Uint8Array.of(0x00, 1, 0, 1, 0, 0, 0)]);
    expect(p.b.state).toBe('down');
    expect(p.b.reason).toContain('batch header');
  });
});
