/**
 * Question: how many MB/s of 256-byte MWr payload does a Link carry between two processes, per
 * transport and per posted-credit window, compared with a raw socket moving 256-byte records?
 *
 * The sink (this process) listens, advertises the window under test and releases credits as soon
 * as each TLP arrives; the source (a child process) sends MWr TLPs as fast as credits allow.
 * Payload bytes only are counted (not headers). The raw-socket baseline is bench/raw-socket.ts.
 *
 *   node --import tsx bench/link-throughput.ts [MiB per run, default 64]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Link, connectTransport, listenTransport, type CreditScales, type CreditValues } from '../src/link/index.js';
import { RealClock } from '../src/roles/real-runtime.js';
import { memWriteTlp } from '../src/tlp/index.js';
import { peerNodeArgs } from './dist.js';
import { RAW_PASS_UNIT, RawSocketPair } from './raw-socket.js';

const PAYLOAD = 256;

interface Window {
  name: string;
  credits: Partial<CreditValues>;
  scales: Partial<CreditScales>;
  scaled: boolean;
}

const WINDOWS: Window[] = [
  // unscaled maxima: 127 headers, 2047 data credits (32 KiB)
  { name: 'unscaled 32 KiB', credits: { PH: 127, PD: 2047 }, scales: { PH: 1, PD: 1 }, scaled: false },
  { name: 'scale 4, 128 KiB', credits: { PH: 508, PD: 8188 }, scales: { PH: 4, PD: 4 }, scaled: true },
  { name: 'scale 16, 512 KiB (default)', credits: { PH: 2032, PD: 32752 }, scales: { PH: 16, PD: 16 }, scaled: true },
];

async function runSink(scheme: 'tcp' | 'ws', w: Window, totalBytes: number): Promise<number> {
  const clock = new RealClock();
  const server = await listenTransport(scheme === 'tcp' ? 'tcp://127.0.0.1:0' : 'ws://127.0.0.1:0/');
  let received = 0;
  let t0 = 0n;
  const done = new Promise<bigint>((resolve) => {
    server.onConnection = (t) => {
      const link = new Link(t, { clock, role: 'ep', credits: w.credits, scales: w.scales, scaledFlowControl: w.scaled });
      link.onTlp = (tlp) => {
        if (t0 === 0n) t0 = process.hrtime.bigint();
        const n = tlp.data?.length ?? 0;
        received += n;
        link.releaseCredits('P', n);
        if (received >= totalBytes) resolve(process.hrtime.bigint());
      };
      link.start();
    };
  });
  // TLPWIRE_BENCH_PROFILE=DIR writes a CPU profile of each source process there.
  const prof = process.env['TLPWIRE_BENCH_PROFILE'];
  const profArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const child = spawn(process.execPath, [...peerNodeArgs(profArgs), fileURLToPath(import.meta.url), 'link-source', server.url, String(totalBytes)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const t1 = await done;
  // Closing the server ends the source's link, and the source exits by itself (writing its profile).
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await server.close();
  const timer = setTimeout(() => child.kill(), 5000);
  await exited;
  clearTimeout(timer);
  return received / (Number(t1 - t0) / 1e9);
}

async function runSource(url: string, totalBytes: number): Promise<void> {
  const clock = new RealClock();
  const link = new Link(await connectTransport(url), { clock, role: 'rc' });
  link.start();
  await link.whenUp();
  const data = new Uint8Array(PAYLOAD).fill(0xa5);
  // one TLP object, encoded again for every send: the per-TLP cost a real sender pays
  const tlp = memWriteTlp({ requesterId: 0x0100, address: 0x1000_0000, data });
  let sent = 0;
  const pump = (): void => {
    while (sent < totalBytes && link.hasCredits('P', PAYLOAD)) {
      link.sendTlp(tlp);
      sent += PAYLOAD;
    }
  };
  link.onCreditsAvailable = pump;
  pump();
  await link.whenDown();
}

function mb(bps: number): string {
  return (bps / 1e6).toFixed(0).padStart(6);
}

async function main(): Promise<void> {
  const mib = Number(process.argv[2] ?? 64);
  const total = mib * 1024 * 1024;
  if (!(Number.isInteger(mib) && mib >= 1 && total % RAW_PASS_UNIT === 0)) throw new RangeError('MiB per run: a positive integer');
  // The baseline: a warm-up pass, then the median of three.
  const pair = await RawSocketPair.start();
  const rates: number[] = [];
  try {
    for (let k = 0; k < 4; k++) rates.push(await pair.pass(total));
  } finally {
    pair.close();
  }
  const raw = { bytesPerSecond: rates.slice(1).sort((a, b) => a - b)[1]! };
  console.log(`256-byte payloads, ${mib} MiB per run, two processes on loopback`);
  console.log(`raw socket baseline (256-byte records, 64 KiB writes): ${mb(raw.bytesPerSecond)} MB/s`);
  console.log('transport  window                          MB/s   × raw');
  // TLPWIRE_BENCH_ONLY=tcp (or ws) runs one transport with the default window (for profiling).
  const only = process.env['TLPWIRE_BENCH_ONLY'];
  for (const scheme of ['tcp', 'ws'] as const) {
    if (only !== undefined && only !== scheme) continue;
    for (const w of only === undefined ? WINDOWS : WINDOWS.slice(-1)) {
      const bps = await runSink(scheme, w, total);
      console.log(`${scheme.padEnd(10)} ${w.name.padEnd(30)} ${mb(bps)}   ${(bps / raw.bytesPerSecond).toFixed(2)}`);
    }
  }
}

if (process.argv[2] === 'link-source') {
  await runSource(process.argv[3]!, Number(process.argv[4]));
} else {
  await main();
}
