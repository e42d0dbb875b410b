/**
 * A quick measurement, not a test: TLP encode+decode rate for a 256-byte MWr.
 * Run with `npx tsx test/tlp/codec-throughput.ts`.
 */
import { performance } from 'node:perf_hooks';
import { decodeTlp, encodeTlp, encodeTlpInto, memWriteTlp, type Tlp } from '../../src/tlp/index.js';

function rate(name: string, fn: () => void, ms = 1000): void {
  for (let i = 0; i < 20_000; i++) fn(); // warm up
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 1000; i++) fn();
    n += 1000;
    now = performance.now();
  }
  const perSec = (n / (now - start)) * 1000;
  console.log(`${name.padEnd(52)} ${(perSec / 1e6).toFixed(2)} M/s  (${(1e9 / perSec).toFixed(0)} ns each)`);
}

const payload = new Uint8Array(256).map((_, i) => i);
const plain = memWriteTlp({ requesterId: 0x0100, tag: 0, address: 0x1234_5000, data: payload });
const digest: Tlp = { ...plain, td: true };
const batch = new Uint8Array(64 * 1024);
let at = 0;
let sink = 0;

for (const [label, tlp] of [
  ['MWr 256 B', plain],
  ['MWr 256 B with ECRC', digest],
] as const) {
  rate(`${label}: encodeTlpInto (batch buffer) + decodeTlp`, () => {
    if (at + 300 > batch.length) at = 0;
    const n = encodeTlpInto(tlp, batch, at);
    const back = decodeTlp(batch, at, n);
    sink += back.lengthDw;
    at += n;
  });
  rate(`${label}: encodeTlp (new buffer) + decodeTlp`, () => {
    sink += decodeTlp(encodeTlp(tlp)).lengthDw;
  });
  const wire = encodeTlp(tlp);
  rate(`${label}: decodeTlp only`, () => {
    sink += decodeTlp(wire).lengthDw;
  });
  rate(`${label}: encodeTlpInto only`, () => {
    if (at + 300 > batch.length) at = 0;
    at += encodeTlpInto(tlp, batch, at);
  });
}
console.log(`(checksum ${sink})`);
