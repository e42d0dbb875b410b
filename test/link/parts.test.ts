/**
 * Messages that arrive in pieces (a record split across socket reads): the record parser hands
 * the pieces over without joining them, and the link reads the batch where it lies, copying only
 * what a cut runs through. Both must give exactly what one whole message gives.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordParser, type Transport } from '../../src/link/index.js';
import type { Tlp } from '../../src/tlp/index.js';
import { bringUp, linkPair, mrd, mwr } from './helpers.js';

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
    let sent: Uint8Array | undefined;
    const send = p.ta.send.bind(p.ta);
    p.ta.send = (chunks, done) => {
      sent = Uint8Array.from(chunks[0]!);
      return send(chunks, done);
    };
    for (const t of tlps) p.a.sendTlp(t);
    p.a.flush();
    expect(sent).toBeDefined();
    const msg = sent!;
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

  it('refuses a batch without the header in pieces as it would whole', () => {
    const p = linkPair();
    bringUp(p);
    const tb = p.tb as Transport;
    tb.onMessageParts!([Uint8Array.of(0x54), Uint8Array.of(0x00, 1, 0, 1, 0, 0, 0)]);
    expect(p.b.state).toBe('down');
    expect(p.b.reason).toContain('batch header');
  });
});
