/**
 * `npm run bench`: how fast is tlpwire compared with a raw socket, on this machine, now?
 *
 *   1. the baseline: 256-byte records between two Node processes over a plain TCP socket,
 *      many per write (bench/raw-socket.ts), run before, between and after the DMA runs, each
 *      measured as the DMA is: a warm-up pass, then the median of the timed passes;
 *   2. the TLP codec: encode+decode per second for a mix of kinds, in this process; and the CPU
 *      cost per MiB of DMA with both sides in this process (bench/in-process.ts), which holds
 *      steady where the two-process figures swing;
 *   3. DMA writes and 4. DMA reads between two processes: this process is the root complex
 *      (host RAM), a child process the endpoint (bench/dma-peer.ts) doing DMA through its
 *      requester, with MPS 256 and MRRS 512, over tcp:// and ws://.
 *
 * Throughput is payload bytes per second; each DMA figure is also given as a ratio to the
 * baseline's median, which is what the targets are about (write ≥ 0.6, read ≥ 0.4, over tcp).
 * The figures are printed, never asserted: the process fails only if something crashed.
 *
 * Every process, this one and the peers, runs with BENCH_NODE_FLAGS (bench/dist.ts); `npm run
 * bench` passes them to this one:
 *
 *   node --single-threaded-gc --import tsx bench/run.ts [--mib N] [--reps N] [--only raw,codec,inproc,tcp,ws]
 *
 * TLPWIRE_BENCH_PROFILE=DIR writes a CPU profile of each DMA peer process there.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadDist, missingBenchFlags, peerNodeArgs, type CoreModule, type RolesModule } from './dist.js';
import { BASE, CHUNK, patternChunk, stampChunk, type PeerEvent } from './dma-pattern.js';
import { measureCodec, type CodecResult } from './codec.js';
import { measureInProcess, type InProcessResult } from './in-process.js';
import { measureRawSocket } from './raw-socket.js';

const TARGET = { write: 0.6, read: 0.4 } as const;
const MiB = 1024 * 1024;

interface Options {
  mib: number;
  reps: number;
  only: Set<string> | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { mib: 256, reps: 3, only: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--mib' && v !== undefined) o.mib = Number(argv[++i]);
    else if (a === '--reps' && v !== undefined) o.reps = Number(argv[++i]);
    else if (a === '--only' && v !== undefined) o.only = new Set(argv[++i]!.split(','));
    else {
      process.stderr.write(`usage: tsx bench/run.ts [--mib N] [--reps N] [--only raw,codec,inproc,tcp,ws]\n`);
      process.exit(2);
    }
  }
  if (!(Number.isInteger(o.mib) && o.mib >= 1 && Number.isInteger(o.reps) && o.reps >= 1)) {
    process.stderr.write('--mib and --reps take positive integers\n');
    process.exit(2);
  }
  return o;
}

interface DmaPass {
  bytesPerSecond: number;
  /** CPU time per MiB moved, in µs: the root complex (this process) and the endpoint. */
  rcCpuUsPerMiB: number;
  epCpuUsPerMiB: number;
}

interface DmaResult {
  write: DmaPass[];
  read: DmaPass[];
  counters: Record<string, number>;
}

/** One DMA run: a root complex here, the endpoint in a child process, `reps` timed passes each way. */
async function measureDma(scheme: 'tcp' | 'ws', bytes: number, reps: number): Promise<DmaResult> {
  const { RootComplex, RealClock } = await loadDist<RolesModule>('roles/index.js');
  const rc = new RootComplex({ clock: new RealClock(), memoryBytes: BASE + bytes + CHUNK });
  const url = await rc.listen(scheme === 'tcp' ? 'tcp://127.0.0.1:0' : 'ws://127.0.0.1:0');
  const prof = process.env['TLPWIRE_BENCH_PROFILE'];
  const profArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const peer = fileURLToPath(new URL('./dma-peer.ts', import.meta.url));
  const child = spawn(process.execPath, [...peerNodeArgs(profArgs), peer, url, String(bytes), String(reps)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const result: DmaResult = { write: [], read: [], counters: {} };
  let rcCpu0 = process.cpuUsage();
  let failure: string | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    let e: PeerEvent;
    try {
      e = JSON.parse(line) as PeerEvent;
    } catch {
      continue; // not ours
    }
    if (e.event === 'start') rcCpu0 = process.cpuUsage();
    else if (e.event === 'end') {
      const c = process.cpuUsage(rcCpu0);
      const mib = e.bytes / MiB;
      result[e.phase].push({
        bytesPerSecond: e.bytes / (e.ns / 1e9),
        rcCpuUsPerMiB: (c.user + c.system) / mib,
        epCpuUsPerMiB: e.cpuUs / mib,
      });
    } else if (e.event === 'done') result.counters = e.counters;
    else if (e.event === 'error') failure = e.message;
  }
  const code = await exited;
  try {
    if (failure !== undefined || code !== 0) throw new Error(`DMA peer over ${scheme} failed: ${failure ?? `exit code ${code}`}`);
    // What the timed writes left in host RAM must be exactly the pattern, chunk by chunk.
    const want = patternChunk(0);
    for (let i = 0; i < bytes / CHUNK; i++) {
      stampChunk(want, i);
      if (Buffer.compare(rc.ram.readBytes(BASE + i * CHUNK, CHUNK), want) !== 0) {
        throw new Error(`DMA over ${scheme}: host RAM chunk ${i} differs from what the endpoint wrote`);
      }
    }
  } finally {
    await rc.close();
  }
  return result;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const mbs = (bps: number): string => (bps / 1e6).toFixed(0);
const pad = (s: string | number, n: number): string => String(s).padStart(n);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

function printInProcess(r: InProcessResult): void {
  const x = (us: number): string => `${pad(us.toFixed(0), 6)} µs/MiB  ${pad((us / r.copyBaseline).toFixed(1), 5)}×`;
  console.log('\nDMA in one process (the sockets replaced by a hand-off; best of 3 passes; × = per a bare copy of 256-byte records into RAM)');
  console.log(`  bare copy (the baseline)         ${pad(r.copyBaseline.toFixed(0), 6)} µs/MiB`);
  console.log(`  write: both sides, CPU           ${x(r.writeCpu)}`);
  console.log(`         root complex receiving    ${x(r.writeRcRx)}`);
  console.log(`  read:  both sides, CPU           ${x(r.readCpu)}`);
  console.log(`         root complex receiving    ${x(r.readRcRx)}   (answering the reads: the completions are sent from here)`);
  console.log(`         endpoint receiving        ${x(r.readEpRx)}`);
}

function printCodec(r: CodecResult): void {
  console.log('\nTLP codec, in process: encodeTlpInto (validating) into a batch buffer, then decodeTlp; best of 5 windows');
  console.log('  kind                      M TLP/s   ns each');
  for (const k of r.kinds) console.log(`  ${k.name.padEnd(24)} ${pad((k.perSecond / 1e6).toFixed(2), 8)}  ${pad((1e9 / k.perSecond).toFixed(0), 8)}`);
  console.log(`  ${'mix of the above'.padEnd(24)} ${pad((r.mixPerSecond / 1e6).toFixed(2), 8)}  ${pad((1e9 / r.mixPerSecond).toFixed(0), 8)}`);
  const e = r.withEcrc;
  console.log(`  ${e.name.padEnd(24)} ${pad((e.perSecond / 1e6).toFixed(2), 8)}  ${pad((1e9 / e.perSecond).toFixed(0), 8)}   (not in the mix)`);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const run = (what: string): boolean => o.only === undefined || o.only.has(what);
  const bytes = o.mib * MiB;
  const t0 = Date.now();
  console.log(`tlpwire bench: node ${process.version}, ${cpus().length} CPUs, load average ${load()} (1/5/15 min)`);
  console.log(`DMA: MPS 256 B, MRRS 512 B, ${o.mib} MiB per pass, median of ${o.reps} timed passes after a warm-up pass`);
  const { bulkCopy } = await loadDist<CoreModule>('core/index.js');
  console.log(`bulk copies: ${bulkCopy().detail} (TLPWIRE_BULK_COPY=js compares)`);
  const missing = missingBenchFlags();
  if (missing.length > 0) {
    console.log(`note: this process (the root complex and the baseline's sink) lacks ${missing.join(' ')}; run it with npm run bench to measure as documented`);
  }

  const raws: number[] = [];
  const rawPasses: number[][] = [];
  const rawCold: number[] = [];
  const raw = async (): Promise<void> => {
    if (run('raw')) {
      const r = await measureRawSocket(bytes, o.reps);
      raws.push(r.bytesPerSecond);
      rawPasses.push(r.passRates);
      rawCold.push(r.coldRate);
    }
  };
  await raw();
  if (run('codec')) printCodec(await measureCodec());
  if (run('inproc')) printInProcess(await measureInProcess(Math.min(o.mib, 64)));
  const dma: { scheme: 'tcp' | 'ws'; r: DmaResult }[] = [];
  const failures: string[] = [];
  for (const scheme of ['tcp', 'ws'] as const) {
    if (!run(scheme)) continue;
    try {
      dma.push({ scheme, r: await measureDma(scheme, bytes, o.reps) });
    } catch (e) {
      // A crash is reported (and fails the bench at the end), but the other rows still run.
      failures.push(e instanceof Error ? e.message : String(e));
    }
    await raw();
  }
  if (raws.length === 1) await raw();

  const base = raws.length > 0 ? median(raws) : NaN;
  const cold = rawCold.length > 0 ? median(rawCold) : NaN;
  if (raws.length > 0) {
    console.log(`\nraw socket baseline (256-byte records, 256 per 64 KiB write, two processes): ${mbs(base)} MB/s`);
    console.log(`  runs (median of each run's timed passes): ${raws.map(mbs).join(', ')} MB/s; the median is the baseline`);
    console.log(`  passes: ${rawPasses.map((p) => p.map(mbs).join(' ')).join(' | ')} MB/s`);
    console.log(`  warm-up passes (fresh process and connection): ${rawCold.map(mbs).join(', ')} MB/s, median ${mbs(cold)}; the ratios use the timed passes, as the DMA's do`);
  }
  if (dma.length > 0) {
    console.log('\nDMA between two processes (payload bytes; CPU = µs of CPU time per MiB moved)');
    console.log('  transport  direction     MB/s   × raw   target   rc CPU   ep CPU   passes (MB/s)');
    for (const { scheme, r } of dma) {
      for (const dir of ['write', 'read'] as const) {
        const passes = r[dir];
        const bps = median(passes.map((p) => p.bytesPerSecond));
        const ratio = bps / base;
        console.log(
          `  ${scheme.padEnd(9)}  ${dir.padEnd(9)} ${pad(mbs(bps), 8)}  ${pad(ratio.toFixed(2), 6)}   ≥ ${TARGET[dir].toFixed(1)}  ` +
            `${pad(median(passes.map((p) => p.rcCpuUsPerMiB)).toFixed(0), 7)}  ${pad(median(passes.map((p) => p.epCpuUsPerMiB)).toFixed(0), 7)}   ` +
            passes.map((p) => mbs(p.bytesPerSecond)).join(' '),
        );
      }
    }
    const tcp = dma.find((d) => d.scheme === 'tcp') ?? dma[0]!; // the targets are about tcp; ws is the second row
    const verdict = (['write', 'read'] as const).map((dir) => {
      const ratio = median(tcp.r[dir].map((p) => p.bytesPerSecond)) / base;
      return `DMA ${dir} ${ratio.toFixed(2)} × raw (target ≥ ${TARGET[dir]}): ${ratio >= TARGET[dir] ? 'met' : 'NOT met'}`;
    });
    console.log(`\nverdict (${tcp.scheme}): ${verdict.join('; ')}`);
    const coldRatios = (['write', 'read'] as const).map((dir) => `${dir} ${(median(tcp.r[dir].map((p) => p.bytesPerSecond)) / cold).toFixed(2)}`);
    console.log(`against the warm-up passes' median instead (${mbs(cold)} MB/s): ${coldRatios.join(', ')}`);
  }
  for (const f of failures) console.log(`FAILED: ${f}`);
  console.log(`load average now ${load()}; bench took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (failures.length > 0) process.exitCode = 1;
}

await main();
