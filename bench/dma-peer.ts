/**
 * The endpoint process of the DMA benchmark (bench/run.ts starts it): connects to the root
 * complex at URL, moves `bytes` of DMA through Endpoint.dmaPort() WARM_UP_PASSES times each way untimed (it lets
 * the JIT settle and makes the root complex allocate the host RAM pages, which a real host has
 * anyway), says `ready`, and then runs one timed pass for each line on stdin: `write` or `read`
 * (the parent runs a pass of the raw baseline between them). It prints one JSON line per event
 * on stdout, so the parent can also sample its own CPU time around each timed pass, and its
 * counters when stdin closes.
 *
 *   node --import tsx bench/dma-peer.ts URL BYTES
 *
 * What is written: chunk i of 64 KiB is a fixed pseudo-random pattern (patternChunk) with i in
 * its first 4 bytes, so a chunk that lands in the wrong place is caught. The warm-up read checks
 * every byte; the timed reads check each chunk's index (the parent checks host RAM afterwards).
 */
import { createInterface } from 'node:readline';
import { loadDist, type RolesModule } from './dist.js';
import { BASE, CHUNK, WARM_UP_PASSES, patternChunk, stampChunk, stampOf, type PeerEvent } from './dma-pattern.js';

/** DMA calls kept in flight: enough to cover the credit window (writes) and every tag (reads). */
const WRITES_IN_FLIGHT = 16;
const READS_IN_FLIGHT = 8;

function emit(e: PeerEvent): void {
  process.stdout.write(`${JSON.stringify(e)}\n`);
}

async function main(): Promise<void> {
  const [url, bytesArg] = process.argv.slice(2);
  if (url === undefined || bytesArg === undefined) {
    process.stderr.write('usage: dma-peer URL BYTES\n');
    process.exit(2);
  }
  const bytes = Number(bytesArg);
  const chunks = Math.ceil(bytes / CHUNK);
  if (bytes % CHUNK !== 0) throw new RangeError(`BYTES must be a multiple of ${CHUNK}`);

  const { Endpoint, RealClock } = await loadDist<RolesModule>('roles/index.js');
  const clock = new RealClock();
  const ep = new Endpoint({ clock, transaction: { maxPayloadSize: 256, maxReadRequestSize: 512 } });
  const stack = await ep.connect(url);
  await stack.link.whenUp();
  emit({ event: 'up' });
  const dma = ep.dmaPort();
  const pattern = patternChunk(0);
  const buf = pattern.slice();

  // Writes go from buffers of the peer's own, as a DMA engine's do (zeroCopy: each stays unchanged
  // until its write's promise settles): one more than are in flight, so the one being stamped is
  // never being sent.
  const writeBuffers = Array.from({ length: WRITES_IN_FLIGHT + 1 }, () => pattern.slice());
  const writePass = async (): Promise<void> => {
    const pending: Promise<void>[] = [];
    for (let i = 0; i < chunks; i++) {
      const b = writeBuffers[i % writeBuffers.length]!;
      stampChunk(b, i);
      pending.push(Promise.resolve(dma.write(BASE + i * CHUNK, b, { zeroCopy: true })));
      if (pending.length >= WRITES_IN_FLIGHT) await pending.shift();
    }
    await Promise.all(pending);
  };
  // Reads land in buffers of the peer's own, reused as a DMA engine reuses its buffers: one more
  // than are in flight, so the one being checked is never being written. (A fresh 64 KiB buffer
  // per read costs the peer a V8 full collection every few dozen MiB.)
  const readBuffers = Array.from({ length: READS_IN_FLIGHT + 1 }, () => new Uint8Array(CHUNK));
  const readChunk = (n: number): Promise<Uint8Array> =>
    dma.readInto === undefined ? dma.read(BASE + n * CHUNK, CHUNK) : dma.readInto(BASE + n * CHUNK, readBuffers[n % readBuffers.length]!);
  const readPass = async (full: boolean): Promise<void> => {
    const pending: Promise<Uint8Array>[] = [];
    let next = 0;
    for (let i = 0; i < chunks; i++) {
      while (next < chunks && pending.length < READS_IN_FLIGHT) pending.push(readChunk(next++));
      const data = await pending.shift()!;
      if (stampOf(data) !== i) throw new Error(`read chunk ${i} carries index ${stampOf(data)}`);
      if (full) {
        stampChunk(buf, i);
        if (Buffer.compare(data, buf) !== 0) throw new Error(`read chunk ${i} differs from what was written`);
      }
    }
  };

  // Several untimed passes each way (WARM_UP_PASSES): after only one, the first timed pass still
  // ran at about half the speed of the later ones. The raw baseline gets as many.
  for (let k = 0; k < WARM_UP_PASSES; k++) {
    await writePass();
    await readPass(k === 0);
  }
  emit({ event: 'ready' });
  for await (const line of createInterface({ input: process.stdin })) {
    const phase = line.trim();
    if (phase !== 'write' && phase !== 'read') throw new Error(`dma-peer: unknown command ${JSON.stringify(line)}`);
    emit({ event: 'start', phase });
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    if (phase === 'write') await writePass();
    else await readPass(false);
    const ns = Number(process.hrtime.bigint() - t0);
    const c = process.cpuUsage(c0);
    emit({ event: 'end', phase, ns, cpuUs: c.user + c.system, bytes });
  }
  emit({ event: 'done', counters: stack.counters.snapshot() });
  await ep.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    emit({ event: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  },
);
