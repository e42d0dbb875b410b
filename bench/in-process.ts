/**
 * Question: how much CPU does tlpwire's own JavaScript spend per MiB of DMA, with the sockets
 * taken out? Between processes the figures swing by up to 2× from run to run (two busy
 * processes and the kernel share two cores); in one process, taking the best of a few passes,
 * they swing much less, so this is where a change to the DMA paths shows first.
 *
 * A root complex and an endpoint in this process, linked by a hand-off transport: each batch a
 * side sends is joined into a fresh buffer (as a socket read gives one), and delivered to the
 * other side on a later turn. Reported per MiB of payload, each the best of PASSES passes: the
 * CPU time of the whole process (both sides, the hand-off's joins included), and the time each
 * side spent handling what it received (the part that receive paths change).
 *
 * Baseline, in the same run: copying the same payload as 256-byte records out of 64 KiB batches
 * into RAM pages with set(subarray()): the least a receiver of MWr TLPs does per byte in
 * JavaScript.
 */
import type { Transport } from '../src/link/index.js';
import { loadDist, type LinkModule, type RolesModule } from './dist.js';
import { BASE, CHUNK } from './dma-pattern.js';

const MiB = 1024 * 1024;
/** DMA calls kept in flight. */
const IN_FLIGHT = 16;
const PASSES = 3;

export interface InProcessResult {
  /** µs of process CPU per MiB, both sides. */
  writeCpu: number;
  readCpu: number;
  /** µs per MiB each side spent handling received batches. */
  writeRcRx: number;
  writeEpRx: number;
  readRcRx: number;
  readEpRx: number;
  /** µs per MiB of the bare record copy. */
  copyBaseline: number;
}

/** Hands each sent batch, joined into one fresh buffer, to `deliver` on a later turn. */
class HandOff implements Transport {
  readonly remote = 'in-process';
  onMessage: (data: Uint8Array) => void = () => {};
  onDrain: () => void = () => {};
  onClose: (error?: Error) => void = () => {};
  readonly queue: Uint8Array[] = [];

  constructor(private readonly joinBytes: (parts: readonly Uint8Array[]) => Uint8Array) {}

  send(chunks: readonly Uint8Array[], done?: () => void): boolean {
    this.queue.push(this.joinBytes(chunks));
    done?.();
    return true;
  }

  close(): void {}
}

function copyBaseline(mib: number): number {
  const batch = new Uint8Array(256 * 272);
  const pages = Array.from({ length: 16 }, () => new Uint8Array(65536));
  const run = (): void => {
    for (let k = 0; k < mib * 16; k++) {
      const page = pages[k & 15]!;
      for (let i = 0; i < 256; i++) page.set(batch.subarray(i * 272 + 16, i * 272 + 272), i * 256);
    }
  };
  run();
  let best = Infinity;
  for (let p = 0; p < PASSES; p++) {
    const c0 = process.cpuUsage();
    run();
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / mib);
  }
  return best;
}

export async function measureInProcess(mib: number): Promise<InProcessResult> {
  const { Endpoint, RootComplex, RealClock } = await loadDist<RolesModule>('roles/index.js');
  const clock = new RealClock();
  const rc = new RootComplex({ clock, memoryBytes: BASE + mib * MiB + CHUNK });
  const ep = new Endpoint({ clock, transaction: { maxPayloadSize: 256, maxReadRequestSize: 512 } });
  // What each side sends waits in its transport's queue until the pump hands it over.
  const { joinBytes } = await loadDist<LinkModule>('link/index.js');
  const rcSide = new HandOff(joinBytes);
  const epSide = new HandOff(joinBytes);
  rc.attach(rcSide);
  ep.attach(epSide);
  let rcNs = 0;
  let epNs = 0;
  const pump = async (): Promise<void> => {
    await new Promise<void>((r) => setImmediate(r));
    const toRc = epSide.queue.splice(0);
    const toEp = rcSide.queue.splice(0);
    const t0 = performance.now();
    for (const m of toRc) rcSide.onMessage(m);
    const t1 = performance.now();
    for (const m of toEp) epSide.onMessage(m);
    rcNs += (t1 - t0) * 1e6;
    epNs += (performance.now() - t1) * 1e6;
  };
  for (let i = 0; i < 10 && ep.stack?.link.state !== 'up'; i++) await pump();
  const dma = ep.dmaPort();
  // Writes are zero-copy, as the two-process peer's are (this buffer never changes), and reads
  // land in reused buffers, one more than are in flight.
  const buf = new Uint8Array(CHUNK).fill(0x5a);
  const readBuffers = Array.from({ length: IN_FLIGHT + 1 }, () => new Uint8Array(CHUNK));
  const read = (i: number): Promise<Uint8Array> =>
    dma.readInto === undefined ? dma.read(BASE + i * CHUNK, CHUNK) : dma.readInto(BASE + i * CHUNK, readBuffers[i % readBuffers.length]!);
  const pass = async (phase: 'write' | 'read'): Promise<void> => {
    let done = false;
    const work = (async () => {
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < mib * 16; i++) {
        pending.push(Promise.resolve(phase === 'write' ? dma.write(BASE + i * CHUNK, buf, { zeroCopy: true }) : read(i)));
        if (pending.length >= IN_FLIGHT) await pending.shift();
      }
      await Promise.all(pending);
      done = true;
    })();
    while (!done) await pump();
    await work;
  };
  const timed = async (phase: 'write' | 'read'): Promise<{ cpu: number; rc: number; ep: number }> => {
    rcNs = 0;
    epNs = 0;
    const c0 = process.cpuUsage();
    await pass(phase);
    const c = process.cpuUsage(c0);
    return { cpu: (c.user + c.system) / mib, rc: rcNs / 1e3 / mib, ep: epNs / 1e3 / mib };
  };
  await pass('write'); // warm-up, and the reads read written memory
  await pass('read');
  const best = async (phase: 'write' | 'read'): Promise<{ cpu: number; rc: number; ep: number }> => {
    const b = { cpu: Infinity, rc: Infinity, ep: Infinity };
    for (let p = 0; p < PASSES; p++) {
      const t = await timed(phase);
      b.cpu = Math.min(b.cpu, t.cpu);
      b.rc = Math.min(b.rc, t.rc);
      b.ep = Math.min(b.ep, t.ep);
    }
    return b;
  };
  const w = await best('write');
  const r = await best('read');
  await ep.close();
  await rc.close();
  return {
    writeCpu: w.cpu,
    readCpu: r.cpu,
    writeRcRx: w.rc,
    writeEpRx: w.ep,
    readRcRx: r.rc,
    readEpRx: r.ep,
    copyBaseline: copyBaseline(mib),
  };
}
