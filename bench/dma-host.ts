/**
 * The root complex process of the DMA benchmark (bench/run.ts starts it, and then the endpoint,
 * bench/dma-peer.ts): host RAM for `bytes` of DMA, listening on 127.0.0.1 over SCHEME. It is a
 * process of its own, as the baseline's two are, so that nothing the benchmark's own process has
 * done (the codec and in-process measurements, their garbage) weighs on it. Prints one JSON line
 * per event on stdout; takes one command per line on stdin:
 *
 *   start    starts measuring its CPU time (says `started`)
 *   end      says `cpu` with the CPU time since `start`, in µs
 *   check    checks that host RAM holds what the endpoint's timed writes wrote (says `checked`)
 *
 * and closes when stdin does.
 *
 *   node --import tsx bench/dma-host.ts tcp|ws BYTES
 */
import { createInterface } from 'node:readline';
import { loadDist, type RolesModule } from './dist.js';
import { BASE, CHUNK, patternChunk, stampChunk, type PeerEvent } from './dma-pattern.js';

function emit(e: PeerEvent): void {
  process.stdout.write(`${JSON.stringify(e)}\n`);
}

async function main(): Promise<void> {
  const [scheme, bytesArg] = process.argv.slice(2);
  if ((scheme !== 'tcp' && scheme !== 'ws') || bytesArg === undefined) {
    process.stderr.write('usage: dma-host tcp|ws BYTES\n');
    process.exit(2);
  }
  const bytes = Number(bytesArg);
  const { RootComplex, RealClock } = await loadDist<RolesModule>('roles/index.js');
  const rc = new RootComplex({ clock: new RealClock(), memoryBytes: BASE + bytes + CHUNK });
  emit({ event: 'listening', url: await rc.listen(`${scheme}://127.0.0.1:0`) });
  let cpu0 = process.cpuUsage();
  for await (const line of createInterface({ input: process.stdin })) {
    const command = line.trim();
    if (command === 'start') {
      cpu0 = process.cpuUsage();
      emit({ event: 'started' });
    } else if (command === 'end') {
      const c = process.cpuUsage(cpu0);
      emit({ event: 'cpu', cpuUs: c.user + c.system });
    } else if (command === 'check') {
      // What the timed writes left in host RAM must be exactly the pattern, chunk by chunk.
      const want = patternChunk(0);
      let problem: string | undefined;
      for (let i = 0; i < bytes / CHUNK && problem === undefined; i++) {
        stampChunk(want, i);
        if (Buffer.compare(rc.ram.readBytes(BASE + i * CHUNK, CHUNK), want) !== 0) problem = `host RAM chunk ${i} differs from what the endpoint wrote`;
      }
      emit(problem === undefined ? { event: 'checked' } : { event: 'checked', problem });
    } else {
      throw new Error(`dma-host: unknown command ${JSON.stringify(line)}`);
    }
  }
  await rc.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    emit({ event: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  },
);
