/**
 * TLP encode+decode rate, in process: each TLP is encoded with encodeTlpInto (the validating
 * encoder, as for TLPs from outside) into a 64 KiB batch buffer, as the link does, and decoded
 * back with decodeTlp, as a receiver does. Per kind, and for a round-robin mix of all of them.
 */
import { performance } from 'node:perf_hooks';
import type { Tlp } from '../src/tlp/index.js';
import { loadDist, type SpecModule, type TlpModule } from './dist.js';

export interface CodecResult {
  kinds: { name: string; perSecond: number }[];
  /** TLPs per second (encode + decode each) over the mix. */
  mixPerSecond: number;
  /** Not part of the mix. */
  withEcrc: { name: string; perSecond: number };
}

function payload(n: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 37 + 11) & 0xff);
}

async function codecMix(): Promise<{ name: string; tlp: Tlp }[]> {
  const { cfgReadTlp, cfgWriteTlp, completionTlp, memReadTlp, memWriteTlp, messageTlp, atomicTlp } = await loadDist<TlpModule>('tlp/index.js');
  const { MSG_CODE, MSG_ROUTING } = await loadDist<SpecModule>('spec/index.js');
  return [
    { name: 'MWr 256 B', tlp: memWriteTlp({ requesterId: 0x0100, address: 0x1234_5000, data: payload(256) }) },
    { name: 'MWr64 64 B', tlp: memWriteTlp({ requesterId: 0x0100, address: 0x2_0000_1040, data: payload(64) }) },
    { name: 'MRd 512 B', tlp: memReadTlp({ requesterId: 0x0100, tag: 300, address: 0x1234_5200, byteLength: 512 }) },
    { name: 'MRd64 4 B', tlp: memReadTlp({ requesterId: 0x0100, tag: 7, address: 0x2_0000_0010, byteLength: 4 }) },
    {
      name: 'CplD 256 B',
      tlp: completionTlp({ completerId: 0, requesterId: 0x0100, tag: 300, byteCount: 512, lowerAddress: 0, data: payload(256) }),
    },
    { name: 'Cpl (UR)', tlp: completionTlp({ completerId: 0, requesterId: 0x0100, tag: 9, status: 'UR', byteCount: 4 }) },
    { name: 'CfgRd0', tlp: cfgReadTlp({ requesterId: 0, tag: 1, bus: 1, device: 0, function: 0, register: 4 }) },
    { name: 'CfgWr0', tlp: cfgWriteTlp({ requesterId: 0, tag: 2, bus: 1, device: 0, function: 0, register: 1, data: payload(4) }) },
    { name: 'Msg (Assert_INTA)', tlp: messageTlp({ requesterId: 0x0100, messageCode: MSG_CODE.ASSERT_INTA, routing: MSG_ROUTING.LOCAL }) },
    { name: 'FetchAdd 4 B', tlp: atomicTlp({ op: 'FetchAdd', requesterId: 0x0100, tag: 3, address: 0x1000, data: payload(4) }) },
  ];
}

/**
 * Steps per second of `step`: the best of several short windows (after a warm-up), so that a
 * moment when another process had the CPU does not count against the codec.
 */
function rate(step: () => void, ms: number, windows = 5): number {
  for (let i = 0; i < 20_000; i++) step();
  let best = 0;
  for (let w = 0; w < windows; w++) {
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now - start < ms / windows) {
      for (let i = 0; i < 1000; i++) step();
      n += 1000;
      now = performance.now();
    }
    best = Math.max(best, (n / (now - start)) * 1000);
  }
  return best;
}

export async function measureCodec(msPerKind = 150): Promise<CodecResult> {
  const { decodeTlp, encodeTlpInto, memWriteTlp } = await loadDist<TlpModule>('tlp/index.js');
  const mix = await codecMix();
  const batch = new Uint8Array(64 * 1024);
  let at = 0;
  let sink = 0;
  const roundTrip = (tlp: Tlp): void => {
    if (at + 4200 > batch.length) at = 0;
    const n = encodeTlpInto(tlp, batch, at);
    sink += decodeTlp(batch, at, n).lengthDw;
    at += n;
  };
  const kinds = mix.map(({ name, tlp }) => ({ name, perSecond: rate(() => roundTrip(tlp), msPerKind) }));
  let k = 0;
  const mixPerSecond = rate(() => {
    roundTrip(mix[k]!.tlp);
    k = k + 1 === mix.length ? 0 : k + 1;
  }, msPerKind * 3);
  // Not in the mix: a digest is an option of any kind, and its CRC dominates everything else.
  const ecrc = memWriteTlp({ requesterId: 0x0100, address: 0x1234_5100, data: payload(256), td: true });
  const withEcrc = { name: 'MWr 256 B with ECRC', perSecond: rate(() => roundTrip(ecrc), msPerKind) };
  if (sink < 0) console.log(sink); // keeps the decodes from being optimised away
  return { kinds, mixPerSecond, withEcrc };
}
