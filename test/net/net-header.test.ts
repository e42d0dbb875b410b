import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeededRng, isTlpwireError } from '../../src/core/index.js';
import {
  NET_HDR_SIZE,
  checkRxHeader,
  checkTxHeader,
  completeChecksum,
  decodeNetHeader,
  emptyNetHeader,
  encodeNetHeader,
  onesComplementSum,
  prepareChecksumOffload,
} from '../../src/net/index.js';
import { buildTcp4, buildTcp6, buildUdp4, buildUdp6, expectedL4Checksum, l4ChecksumOk, rfc1071 } from './net-packets.js';

describe('virtio_net_hdr', () => {
  // virtio 1.x §5.1.6: le fields; VERSION_1 → num_buffers always present, 12 bytes
  const golden = Uint8Array.from([
    0x01, // flags: NEEDS_CSUM
    0x00, // gso_type: NONE
    0x36, 0x00, // hdr_len 54
    0x00, 0x00, // gso_size 0
    0x22, 0x00, // csum_start 34
    0x10, 0x00, // csum_offset 16
    0x03, 0x00, // num_buffers 3
  ]);
  const fields = { flags: 1, gsoType: 0, hdrLen: 54, gsoSize: 0, csumStart: 34, csumOffset: 16, numBuffers: 3 };

  it('is 12 bytes', () => {
    expect(NET_HDR_SIZE).toBe(12);
  });

  it('encodes to the bytes written out from the spec', () => {
    const out = new Uint8Array(14).fill(0xee);
    encodeNetHeader(fields, out, 1);
    expect(out[0]).toBe(0xee);
    expect(out.subarray(1, 13)).toEqual(golden);
    expect(out[13]).toBe(0xee);
  });

  it('decodes the spec bytes, little-endian, at an offset, into a reused object', () => {
    const buf = new Uint8Array(20);
    buf.set(golden, 5);
    const h = emptyNetHeader();
    expect(decodeNetHeader(buf, 5, h)).toBe(h);
    expect(h).toEqual(fields);
    // byte order: 0x0201 is 513, not 258
    expect(decodeNetHeader(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02])).numBuffers).toBe(0x0201);
  });

  it('round-trips every field value', () => {
    fc.assert(
      fc.property(
        fc.record({
          flags: fc.integer({ min: 0, max: 255 }),
          gsoType: fc.integer({ min: 0, max: 255 }),
          hdrLen: fc.integer({ min: 0, max: 0xffff }),
          gsoSize: fc.integer({ min: 0, max: 0xffff }),
          csumStart: fc.integer({ min: 0, max: 0xffff }),
          csumOffset: fc.integer({ min: 0, max: 0xffff }),
          numBuffers: fc.integer({ min: 0, max: 0xffff }),
        }),
        (h) => {
          const b = new Uint8Array(12);
          encodeNetHeader(h, b);
          expect(decodeNetHeader(b)).toEqual(h);
        },
      ),
    );
  });

  it('refuses a truncated header with ERR_NET', () => {
    expect(() => decodeNetHeader(new Uint8Array(11))).toThrow(expect.toSatisfy((e: unknown) => isTlpwireError(e, 'ERR_NET')));
    expect(() => encodeNetHeader(fields, new Uint8Array(12), 1)).toThrow(/12 bytes/);
  });

  it('checks transmit headers as 5.1.6.2 asks', () => {
    const h = (o: Partial<typeof fields>) => ({ ...emptyNetHeader(), ...o });
    expect(checkTxHeader(h({}), 60, false)).toBeUndefined();
    expect(checkTxHeader(h({ numBuffers: 7, hdrLen: 99 }), 60, false)).toBeUndefined(); // ignored without GSO
    expect(checkTxHeader(h({ gsoType: 1 }), 60, true)).toMatch(/gso_type/);
    expect(checkTxHeader(h({ flags: 2 }), 60, true)).toMatch(/flags/); // DATA_VALID
    expect(checkTxHeader(h({ flags: 4 }), 60, true)).toMatch(/flags/); // RSC_INFO
    expect(checkTxHeader(h({ flags: 1, csumStart: 34, csumOffset: 6 }), 60, false)).toMatch(/without/);
    expect(checkTxHeader(h({ flags: 1, csumStart: 34, csumOffset: 6 }), 60, true)).toBeUndefined();
    expect(checkTxHeader(h({ flags: 1, csumStart: 34, csumOffset: 24 }), 60, true)).toBeUndefined(); // field ends at 60
    expect(checkTxHeader(h({ flags: 1, csumStart: 34, csumOffset: 25 }), 60, true)).toMatch(/outside/);
  });

  it('checks receive headers: checksum flags only with GUEST_CSUM', () => {
    const h = (o: Partial<typeof fields>) => ({ ...emptyNetHeader(), ...o });
    expect(checkRxHeader(h({ numBuffers: 1 }), 60, false)).toBeUndefined();
    expect(checkRxHeader(h({ flags: 2 }), 60, false)).toMatch(/GUEST_CSUM/);
    expect(checkRxHeader(h({ flags: 2 }), 60, true)).toBeUndefined();
    expect(checkRxHeader(h({ flags: 4 }), 60, true)).toMatch(/flags/);
    expect(checkRxHeader(h({ flags: 1, csumStart: 50, csumOffset: 9 }), 60, true)).toMatch(/outside/);
    expect(checkRxHeader(h({ gsoType: 3 }), 60, true)).toMatch(/gso_type/);
  });
});

describe('Internet checksum', () => {
  it('matches RFC 1071 §3 worked example (sum of 0001 f203 f4f5 f6f7 is 0xddf2)', () => {
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(onesComplementSum(b, 0, b.length)).toBe(0xddf2);
    // an odd trailing byte counts as the high byte of a word
    expect(onesComplementSum(Uint8Array.from([0x12, 0x34, 0x56]), 0, 3)).toBe(0x1234 + 0x5600);
  });

  it('agrees with an independent RFC 1071 implementation on random data', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (d) => {
        expect(~onesComplementSum(d, 0, d.length) & 0xffff).toBe(rfc1071([...d]));
      }),
    );
  });

  it('prepares a partial checksum that the device completes to the checksum computed independently', () => {
    const rng = new SeededRng(17);
    const builders = [buildUdp4, buildTcp4, buildUdp6, buildTcp6];
    for (let i = 0; i < 400; i++) {
      const build = builders[i % 4]!;
      const pkt = build(rng, rng.int(1400));
      const expected = expectedL4Checksum(pkt);
      const off = prepareChecksumOffload(pkt);
      expect(off).toBeDefined();
      const { csumStart, csumOffset } = off!;
      // the stack's share: the pseudo-header sum, not complemented, in the field
      const pseudoOnly = (pkt[csumStart + csumOffset]! << 8) | pkt[csumStart + csumOffset + 1]!;
      expect(pseudoOnly).not.toBe(expected);
      completeChecksum(pkt, csumStart, csumOffset);
      const got = (pkt[csumStart + csumOffset]! << 8) | pkt[csumStart + csumOffset + 1]!;
      expect(got).toBe(expected === 0 ? 0xffff : expected);
      expect(l4ChecksumOk(pkt)).toBe(true);
    }
  });

  it('finds the transport header: IPv4 with options, VLAN tag, IPv6; csum_start/csum_offset per protocol', () => {
    const rng = new SeededRng(3);
    const udp4 = buildUdp4(rng, 10);
    expect(prepareChecksumOffload(udp4)).toEqual({ csumStart: 34, csumOffset: 6 });
    expect(prepareChecksumOffload(buildTcp6(rng, 10))).toEqual({ csumStart: 54, csumOffset: 16 });
    // a VLAN tag moves everything by 4
    const tagged = new Uint8Array(udp4.length + 4);
    tagged.set(udp4.subarray(0, 12), 0);
    tagged.set([0x81, 0x00, 0x00, 0x05], 12);
    tagged.set(udp4.subarray(12), 16);
    expect(prepareChecksumOffload(tagged)).toEqual({ csumStart: 38, csumOffset: 6 });
    // not offloadable: ARP, an IPv4 fragment, ICMP
    const arp = new Uint8Array(60);
    arp[12] = 0x08;
    arp[13] = 0x06;
    expect(prepareChecksumOffload(arp)).toBeUndefined();
    const frag = buildUdp4(rng, 10);
    frag[20] = 0x20; // MF
    expect(prepareChecksumOffload(frag)).toBeUndefined();
    const icmp = buildUdp4(rng, 10);
    icmp[23] = 1;
    expect(prepareChecksumOffload(icmp)).toBeUndefined();
  });

  it('refuses to complete a checksum whose field lies outside the frame', () => {
    expect(() => completeChecksum(new Uint8Array(40), 34, 5)).toThrow(/outside/);
  });
});
