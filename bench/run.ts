/**
 * `npm run bench`: how fast is tlpwire compared with a raw socket, on this machine, now?
 *
 *   1. the baseline: 256-byte records between two Node processes over a plain TCP socket,
 *      many per write (bench/raw-socket.ts), one pair of processes up for the whole run, which
 *      moves a pass before the DMA rounds of each transport and after every round;
 *   2. the TLP codec: encode+decode per second for a mix of kinds, in this process; and the CPU
 *      cost per MiB of DMA with both sides in this process (bench/in-process.ts), which holds
 *      steady where the two-process figures swing;
 *   3. DMA writes and 4. DMA reads between two processes, each a child of this one, as the
 *      baseline's are: the root complex with host RAM (bench/dma-host.ts) and the endpoint
 *      (bench/dma-peer.ts) doing DMA through its requester, with MPS 256 and MRRS 512, over
 *      tcp:// and ws://.
 *
 * Throughput is payload bytes per second. Each DMA pass is also given as a ratio to the mean of
 * the baseline passes right before and after its round (the machine's speed swings by up to 2×
 * within seconds, so only a baseline measured next to a pass says what the pass was worth), and
 * the median of those ratios is what the targets are about (write ≥ 0.6, read ≥ 0.4, over tcp).
 * The figures are printed, never asserted: the process fails only if something crashed.
 *
 * Every process, this one and the peers, runs with BENCH_NODE_FLAGS (bench/dist.ts); `npm run
 * bench` passes them to this one:
 *
 *   node --single-threaded-gc --import tsx bench/run.ts [--mib N] [--reps N] [--only raw,codec,inproc,tcp,ws]
 *
 * TLPWIRE_BENCH_PROFILE=DIR writes a CPU profile of each DMA peer process there.
 */
import { cpus, loadavg } from 'node:os';
import { loadDist, missingBenchFlags, type CoreModule } from './dist.js';
import { WARM_UP_PASSES } from './dma-pattern.js';
import { measureCodec, type CodecResult } from './codec.js';
import { measureInProcess, type InProcessResult } from './in-process.js';
import { BenchChild } from './child.js';
import { RawSocketPair } from './raw-socket.js';

const TARGET = { write: 0.6, read: 0.4 } as const;
const MiB = 1024 * 1024;

interface Options {
  mib: number;
  reps: number;
  only: Set<string> | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { mib: 256, reps: 5, only: undefined };
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
  /** CPU time per MiB moved, in µs: the root complex and the endpoint, each measured in its own process. */
  rcCpuUsPerMiB: number;
  epCpuUsPerMiB: number;
  /** The raw baseline next to this pass: the mean of its passes right before and right after the round (NaN without one). */
  baseline: number;
}

interface DmaResult {
  write: DmaPass[];
  read: DmaPass[];
  counters: Record<string, number>;
}

/**
 * The root complex (bench/dma-host.ts) and the endpoint (bench/dma-peer.ts), each a child
 * process, up for a series of passes: the endpoint does its untimed warm-up first, then one
 * timed pass per `pass()`.
 */
class DmaPeer {
  private constructor(
    readonly scheme: 'tcp' | 'ws',
    private readonly host: BenchChild,
    private readonly ep: BenchChild,
  ) {}

  static async start(scheme: 'tcp' | 'ws', bytes: number): Promise<DmaPeer> {
    const host = BenchChild.spawn(`the DMA root complex over ${scheme}`, './dma-host.ts', [scheme, String(bytes)]);
    let ep: BenchChild | undefined;
    try {
      const { url } = await host.expect('listening');
      const prof = process.env['TLPWIRE_BENCH_PROFILE'];
      ep = BenchChild.spawn(`the DMA endpoint over ${scheme}`, './dma-peer.ts', [url, String(bytes)], prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []);
      await ep.expect('ready');
      return new DmaPeer(scheme, host, ep);
    } catch (e) {
      host.kill();
      ep?.kill();
      throw e;
    }
  }

  /** One timed pass; `baseline` is filled in by the caller once the raw pass after the round has run. */
  async pass(phase: 'write' | 'read'): Promise<DmaPass> {
    // The root complex's CPU time is counted from before the endpoint starts (its wait costs none).
    this.host.send('start');
    await this.host.expect('started');
    this.ep.send(phase);
    await this.ep.expect('start');
    const e = await this.ep.expect('end');
    this.host.send('end');
    const rc = await this.host.expect('cpu');
    const mib = e.bytes / MiB;
    return { bytesPerSecond: e.bytes / (e.ns / 1e9), rcCpuUsPerMiB: rc.cpuUs / mib, epCpuUsPerMiB: e.cpuUs / mib, baseline: NaN };
  }

  /** Ends both, checks what the timed writes left in host RAM, and returns the endpoint's counters. */
  async finish(): Promise<Record<string, number>> {
    try {
      const [done, code] = await Promise.all([this.ep.expect('done'), this.ep.end()]);
      if (code !== 0) throw new Error(`the DMA endpoint over ${this.scheme} failed: exit code ${code}`);
      this.host.send('check');
      const checked = await this.host.expect('checked');
      if (checked.problem !== undefined) throw new Error(`DMA over ${this.scheme}: ${checked.problem}`);
      const hostCode = await this.host.end();
      if (hostCode !== 0) throw new Error(`the DMA root complex over ${this.scheme} failed: exit code ${hostCode}`);
      return done.counters;
    } finally {
      this.close();
    }
  }

  close(): void {
    this.ep.kill();
    this.host.kill();
  }
}

/**
 * `reps` rounds over one scheme: a write pass and a read pass each, with a raw baseline pass
 * before the first round and after every round; each DMA pass is paired with the mean of the
 * baseline passes around its round.
 */
async function measureDma(scheme: 'tcp' | 'ws', bytes: number, reps: number, raw: RawSocketPair | undefined, rawPasses: number[]): Promise<DmaResult> {
  const peer = await DmaPeer.start(scheme, bytes);
  const result: DmaResult = { write: [], read: [], counters: {} };
  try {
    const rawPass = async (): Promise<number> => {
      if (raw === undefined) return NaN;
      const r = await raw.pass(bytes);
      rawPasses.push(r);
      return r;
    };
    let before = await rawPass();
    for (let rep = 0; rep < reps; rep++) {
      const w = await peer.pass('write');
      const r = await peer.pass('read');
      const after = await rawPass();
      w.baseline = r.baseline = (before + after) / 2;
      result.write.push(w);
      result.read.push(r);
      before = after;
    }
  } catch (e) {
    peer.close();
    throw e;
  }
  result.counters = await peer.finish();
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
  console.log(`DMA: MPS 256 B, MRRS 512 B, ${o.mib} MiB per pass, ${o.reps} rounds of a write and a read pass after ${WARM_UP_PASSES} warm-up passes of each`);
  const { bulkCopy } = await loadDist<CoreModule>('core/index.js');
  const copies = bulkCopy();
  const scan = copies.scanCompletions === undefined ? 'JavaScript' : 'native scan';
  const runs = copies.completionRun === undefined ? 'JavaScript' : 'native';
  console.log(`bulk copies: ${copies.detail}; endpoint's read completions: ${scan}; root complex's completion runs: ${runs} (TLPWIRE_BULK_COPY=js compares)`);
  const missing = missingBenchFlags();
  if (missing.length > 0) {
    console.log(`note: this process (the in-process and codec measurements) lacks ${missing.join(' ')}; run it with npm run bench to measure as documented`);
  }

  const raw = run('raw') ? await RawSocketPair.start() : undefined;
  const failures: string[] = [];
  const dma: { scheme: 'tcp' | 'ws'; r: DmaResult }[] = [];
  const rawPasses: number[] = [];
  let cold = NaN;
  try {
    if (raw !== undefined) {
      cold = await raw.pass(bytes);
      for (let k = 1; k < WARM_UP_PASSES; k++) await raw.pass(bytes);
    }
    if (run('codec')) printCodec(await measureCodec());
    if (run('inproc')) printInProcess(await measureInProcess(Math.min(o.mib, 64)));
    for (const scheme of ['tcp', 'ws'] as const) {
      if (!run(scheme)) continue;
      try {
        dma.push({ scheme, r: await measureDma(scheme, bytes, o.reps, raw, rawPasses) });
      } catch (e) {
        // A crash is reported (and fails the bench at the end), but the other rows still run.
        failures.push(e instanceof Error ? e.message : String(e));
      }
    }
    if (raw !== undefined && rawPasses.length === 0) rawPasses.push(await raw.pass(bytes));
  } finally {
    raw?.close();
  }

  const base = rawPasses.length > 0 ? median(rawPasses) : NaN;
  if (raw !== undefined) {
    console.log(`\nraw socket baseline (256-byte records, 256 per 64 KiB write, two processes): ${mbs(base)} MB/s, the median of its passes`);
    console.log(`  passes, one before the DMA rounds of each transport and one after each round: ${rawPasses.map(mbs).join(' ')} MB/s`);
    console.log(`  the first of its ${WARM_UP_PASSES} warm-up passes (a fresh process and connection): ${mbs(cold)} MB/s`);
  }
  if (dma.length > 0) {
    console.log('\nDMA between two processes (payload bytes; CPU = µs of CPU time per MiB moved; medians over the rounds)');
    console.log('  × raw: each pass against the mean of the baseline passes right before and after its round; the median of those ratios');
    console.log('  transport  direction     MB/s   × raw   target   rc CPU   ep CPU   passes (MB/s)     × raw per round');
    for (const { scheme, r } of dma) {
      for (const dir of ['write', 'read'] as const) {
        const passes = r[dir];
        const target = scheme === 'tcp' ? `≥ ${TARGET[dir].toFixed(1)}` : '     ';
        console.log(
          `  ${scheme.padEnd(9)}  ${dir.padEnd(9)} ${pad(mbs(median(passes.map((p) => p.bytesPerSecond))), 8)}  ${pad(ratioOf(passes).toFixed(2), 6)}   ${target}  ` +
            `${pad(median(passes.map((p) => p.rcCpuUsPerMiB)).toFixed(0), 7)}  ${pad(median(passes.map((p) => p.epCpuUsPerMiB)).toFixed(0), 7)}   ` +
            `${passes.map((p) => mbs(p.bytesPerSecond)).join(' ').padEnd(17)} ${passes.map((p) => (p.bytesPerSecond / p.baseline).toFixed(2)).join(' ')}`,
        );
      }
    }
    const tcp = dma.find((d) => d.scheme === 'tcp');
    if (tcp !== undefined && raw !== undefined) {
      const verdict = (['write', 'read'] as const).map((dir) => {
        const ratio = ratioOf(tcp.r[dir]);
        return `DMA ${dir} ${ratio.toFixed(2)} × raw (target ≥ ${TARGET[dir]}): ${ratio >= TARGET[dir] ? 'met' : 'NOT met'}`;
      });
      console.log(`\nverdict (tcp): ${verdict.join('; ')}`);
      const unpaired = (['write', 'read'] as const).map((dir) => `${dir} ${(median(tcp.r[dir].map((p) => p.bytesPerSecond)) / base).toFixed(2)}`);
      const coldRatios = (['write', 'read'] as const).map((dir) => `${dir} ${(median(tcp.r[dir].map((p) => p.bytesPerSecond)) / cold).toFixed(2)}`);
      console.log(`unpaired, the DMA's median against the baseline's (${mbs(base)} MB/s): ${unpaired.join(', ')}`);
      console.log(`against the baseline's first warm-up pass instead (${mbs(cold)} MB/s): ${coldRatios.join(', ')}`);
    }
  }
  for (const f of failures) console.log(`FAILED: ${f}`);
  console.log(`load average now ${load()}; bench took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (failures.length > 0) process.exitCode = 1;
}

/** The median of a direction's paired ratios (each pass against the baseline around its round). */
function ratioOf(passes: readonly DmaPass[]): number {
  return median(passes.map((p) => p.bytesPerSecond / p.baseline));
}

await main();
