/**
 * `tlpwire stress`: virtio-net traffic both ways in the deterministic simulator, hunting for
 * corruption, lost or duplicated frames, broken rings and stalls under every reordering the
 * memory models and the PCIe ordering rules allow; `--matrix` runs the platform × barrier table
 * and the barrier ablation. Thin over src/sim/stress.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { TlpwireError, errorMessage } from '../core/index.js';
import type { MemoryPlatform } from '../memory/index.js';
import {
  DEFAULT_STRESS_CONFIG,
  STRESS_LAYERS,
  SITE_NOT_NEEDED,
  StressRun,
  formatTraceEvents,
  matrixReportHtml,
  runMatrix,
  shellLine,
  stressArgv,
  stressPolicy,
  type MatrixCellResult,
  type StressConfig,
  type StressResult,
} from '../sim/index.js';
import { BARRIER_SITE_NAMES, isBarrierSite, type BarrierSite, type DriverBarrierMode } from '../virtio/index.js';
import type { CliIo } from './io.js';
import { collect } from './options.js';

const EXIT_FAIL = 1;
const DEFAULT_SECONDS = 10;
const DEFAULT_SECONDS_PER_CELL = 5;
/** Events per slice of the simulation between wall-clock checks. */
const SLICE_EVENTS = 20_000;
/** Lines of events printed before a failure (a batch of ring operations is one line). */
const SHOW_LINES = 40;

const STRESS_HELP = `
Runs virtio-net traffic both ways in the simulator — sequence-numbered, CRC-checked frames out on
the TX ring and back through the card's loopback on the RX ring — with the device and the driver
busy-polling and notifications suppressed, so that no doorbell or interrupt orders anything a
barrier should. The host CPU (store buffer, stale loads) and the device's DMA engine (write
buffer, out-of-order and speculative reads) reorder everything their platform allows, and the
fabric everything the PCIe ordering rules allow.

It stops at the first corrupted, lost or duplicated frame, wrong used id or length (the driver
marks the ring broken), DEVICE_NEEDS_RESET, DMA to an address outside host memory, or stall, and
prints the seed, the command line that reproduces the failure exactly, and the ring operations and
DMA operations (the TLPs a real link would carry) just before it. At the end it prints ring
operations per second (a ring operation is one add/get by the driver or pop/push by the device,
on either ring). Exit code 0: no failure; 1: a failure; 2: bad input.

The same seed and options give the same run, event for event; --trace-hash prints the SHA-256 of
the event trace (bound the run with --ops to compare two runs: a time limit ends them at
different points).

Barrier sites (for --disable-barrier): ${BARRIER_SITE_NAMES.join(', ')}.

--notifications on makes the device sleep until a doorbell and the driver until an MSI-X interrupt
(EVENT_IDX, few frames in flight): the notification handshakes and their barrier sites are then
exercised too, and a lost wakeup shows as a stall.

--matrix runs {host tso, weak} × {device tso, weak} × {weak barriers, strict barriers, negotiated by
ORDER_PLATFORM}, then every barrier site removed alone (weak platforms, everything else strict),
then the notification sites removed alone with notifications on, each cell over seeds from --seed
until its time is up or it fails, and prints one table.
Exit code 1 when a verdict differs from what the memory model implies.

Examples:
  $ tlpwire stress                                          # 10 s, strict barriers, weak platforms
  $ tlpwire stress --driver-barriers weak --device-barriers weak --seed 7
  $ tlpwire stress --host-platform tso --device-platform tso --driver-barriers weak --device-barriers weak
  $ tlpwire stress --disable-barrier device.push.wmb-before-used-idx
  $ tlpwire stress --seed 3 --ops 200000 --trace-hash      # the same hash every time
  $ tlpwire stress --notifications on --disable-barrier driver.kick.mb-before-event-check   # a lost wakeup
  $ tlpwire stress --matrix --seconds-per-cell 20 --report stress.html
`;

interface StressFlags {
  seconds?: string;
  ops?: string;
  seed?: string;
  hostPlatform?: string;
  devicePlatform?: string;
  driverBarriers?: string;
  deviceBarriers?: string;
  orderPlatform?: string;
  disableBarrier?: string[];
  notifications?: string;
  json?: boolean;
  traceHash?: boolean;
  matrix?: boolean;
  secondsPerCell?: string;
  report?: string;
}

function usage(message: string): TlpwireError {
  return new TlpwireError('ERR_USAGE', message);
}

function parseSeconds(text: string, flag: string): number {
  const n = Number(text.trim());
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text.trim()) || !(n > 0) || n > 86_400) throw usage(`${flag}: expected a number of seconds above 0, got ${JSON.stringify(text)}`);
  return n;
}

function parseWhole(text: string, flag: string, min: number, max: number): number {
  const t = text.trim();
  const n = /^[0-9]+$/.test(t) ? Number(t) : /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw usage(`${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return n;
}

function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(text)) return text as T;
  throw usage(`${flag}: expected ${choices.join(' or ')}, got ${JSON.stringify(text)}`);
}

function parseSites(list: readonly string[]): BarrierSite[] {
  const out: BarrierSite[] = [];
  for (const s of list) {
    if (!isBarrierSite(s)) throw usage(`--disable-barrier: unknown barrier site ${JSON.stringify(s)}; the sites are: ${BARRIER_SITE_NAMES.join(', ')}`);
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

function configFromFlags(f: StressFlags): StressConfig {
  const d = DEFAULT_STRESS_CONFIG;
  return {
    seed: f.seed === undefined ? d.seed : parseWhole(f.seed, '--seed', 0, 0xffff_ffff),
    hostPlatform: f.hostPlatform === undefined ? d.hostPlatform : parseChoice<MemoryPlatform>(f.hostPlatform, '--host-platform', ['tso', 'weak']),
    devicePlatform: f.devicePlatform === undefined ? d.devicePlatform : parseChoice<MemoryPlatform>(f.devicePlatform, '--device-platform', ['tso', 'weak']),
    driverBarriers: f.driverBarriers === undefined ? d.driverBarriers : parseChoice<DriverBarrierMode>(f.driverBarriers, '--driver-barriers', ['auto', 'weak', 'strict']),
    deviceBarriers: f.deviceBarriers === undefined ? d.deviceBarriers : parseChoice(f.deviceBarriers, '--device-barriers', ['weak', 'strict'] as const),
    orderPlatform: f.orderPlatform === undefined ? d.orderPlatform : parseChoice(f.orderPlatform, '--order-platform', ['on', 'off'] as const) === 'on',
    disabledBarriers: parseSites(f.disableBarrier ?? []),
    notifications: f.notifications === undefined ? d.notifications : parseChoice(f.notifications, '--notifications', ['off', 'on'] as const),
  };
}

const num = (n: number): string => Math.round(n).toLocaleString('en-US');

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---- one run --------------------------------------------------------------------------------------

async function runOnce(f: StressFlags, io: CliIo): Promise<number> {
  for (const [flag, v] of [
    ['--seconds-per-cell', f.secondsPerCell],
    ['--report', f.report],
  ] as const) {
    if (v !== undefined) throw usage(`${flag} goes with --matrix`);
  }
  const config = configFromFlags(f);
  const maxOps = f.ops === undefined ? undefined : parseWhole(f.ops, '--ops', 1, Number.MAX_SAFE_INTEGER);
  const seconds = f.seconds !== undefined ? parseSeconds(f.seconds, '--seconds') : maxOps === undefined ? DEFAULT_SECONDS : Infinity;
  const run = new StressRun(config, {}, { ...(maxOps === undefined ? {} : { maxOps }), traceHash: f.traceHash === true });
  const t0 = performance.now();
  let lastYield = t0;
  let timedOut = false;
  while (!run.runFor(SLICE_EVENTS)) {
    const now = performance.now();
    if (!timedOut && now - t0 >= seconds * 1000) {
      // end at the next ring operation, so that --ops replays this very run
      run.endAtNextOp();
      timedOut = true;
      continue;
    }
    if (now - lastYield > 100) {
      await yieldToEventLoop();
      lastYield = performance.now();
    }
  }
  const wall = (performance.now() - t0) / 1000;
  const r = run.result();
  // the exact replay: every option, and --ops so it ends at the same event
  const replayOps = r.failure !== undefined ? r.failure.ringOps + 1 : run.opsLimit;
  const argv = [...stressArgv(config, replayOps), ...(f.traceHash === true ? ['--trace-hash'] : [])];
  if (f.json === true) io.out(`${JSON.stringify(resultJson(r, wall, argv, timedOut))}\n`);
  else io.out(formatRun(r, wall, argv, timedOut));
  return r.failure === undefined ? 0 : EXIT_FAIL;
}

function describeConfig(c: StressConfig): string {
  const driver = stressPolicy(c).driver;
  return [
    `seed ${c.seed}`,
    `host ${c.hostPlatform}`,
    `device ${c.devicePlatform}`,
    `ORDER_PLATFORM ${c.orderPlatform ? 'offered and negotiated' : 'not offered'}`,
    `driver barriers ${driver}${c.driverBarriers === 'auto' ? ' (auto: by negotiation)' : ''}`,
    `device barriers ${c.deviceBarriers}`,
    `removed: ${c.disabledBarriers.length === 0 ? 'none' : c.disabledBarriers.join(', ')}`,
  ].join(' · ');
}

function formatRun(r: StressResult, wall: number, argv: readonly string[], timedOut: boolean): string {
  const lines: string[] = [];
  lines.push(
    r.config.notifications === 'on'
      ? 'tlpwire stress: virtio-net both ways, notifications on (doorbells, MSI-X interrupts, EVENT_IDX)'
      : 'tlpwire stress: virtio-net both ways, device and driver busy-polling, notifications suppressed',
  );
  lines.push(`  layers: ${STRESS_LAYERS}`);
  lines.push(`  ${describeConfig(r.config)}`);
  const o = r.ops;
  const opsLine = `${num(r.ringOps)} ring operations (driver add ${num(o.driverAdd)}, get ${num(o.driverGet)}; device pop ${num(o.devicePop)}, push ${num(o.devicePush)})`;
  if (r.failure === undefined) {
    lines.push(`PASS  ${opsLine} · ${num(r.framesReceived)} frames out and back intact · 0 corruptions · 0 stalls${timedOut ? '' : r.stoppedBy === 'ops' ? ' (stopped at --ops)' : ''}`);
  } else {
    const f = r.failure;
    lines.push(`FAIL  ${f.kind}: ${f.message}`);
    lines.push(`      after ${num(f.ringOps)} ring operations, at ${num(f.timeNs)} ns of virtual time (${num(r.framesReceived)} frames came back before it)`);
    lines.push(`seed ${r.config.seed}`);
    lines.push(`reproduce: ${shellLine(argv)}`);
    const shown = formatTraceEvents(r.lastEvents).slice(-SHOW_LINES);
    lines.push(`the last events before the failure (ring operations, DMA as the TLPs a link would carry, frames), oldest first:`);
    for (const l of shown) lines.push(`  ${l}`);
  }
  lines.push(
    `      ${wall.toFixed(1)} s · ${num(r.ringOps / Math.max(wall, 1e-9))} ring operations/s · ${(r.virtualNs / 1e6).toFixed(2)} ms virtual · ${num(r.events)} events · DMA ${num(r.dmaReads)} reads, ${num(r.dmaWrites)} writes · ${r.doorbells} doorbells · ${r.interrupts} interrupts`,
  );
  if (r.traceHash !== undefined) lines.push(`trace sha256 ${r.traceHash} (${num(r.traceEvents)} events; replay: ${shellLine(argv)})`);
  return `${lines.join('\n')}\n`;
}

function resultJson(r: StressResult, wall: number, argv: readonly string[], timedOut: boolean): Record<string, unknown> {
  return {
    pass: r.failure === undefined,
    seed: r.config.seed,
    config: r.config,
    barriers: r.barriers,
    ringOps: r.ringOps,
    ops: r.ops,
    ringOpsPerSecond: Math.round(r.ringOps / Math.max(wall, 1e-9)),
    wallSeconds: Number(wall.toFixed(3)),
    stoppedBy: timedOut ? 'time' : r.stoppedBy,
    framesSent: r.framesSent,
    framesReceived: r.framesReceived,
    corruptions: r.corruptions,
    stalls: r.stalls,
    failure: r.failure ?? null,
    reproduce: shellLine(argv),
    virtualNs: r.virtualNs,
    events: r.events,
    dmaReads: r.dmaReads,
    dmaWrites: r.dmaWrites,
    doorbells: r.doorbells,
    interrupts: r.interrupts,
    siteRuns: r.siteRuns,
    traceHash: r.traceHash ?? null,
    traceEvents: r.traceEvents,
    lastEvents: r.failure === undefined ? [] : formatTraceEvents(r.lastEvents).slice(-SHOW_LINES),
    layers: STRESS_LAYERS,
  };
}

// ---- the matrix -----------------------------------------------------------------------------------

async function runMatrixCommand(f: StressFlags, io: CliIo): Promise<number> {
  for (const [flag, v] of [
    ['--seconds', f.seconds],
    ['--ops', f.ops],
    ['--host-platform', f.hostPlatform],
    ['--device-platform', f.devicePlatform],
    ['--driver-barriers', f.driverBarriers],
    ['--device-barriers', f.deviceBarriers],
    ['--order-platform', f.orderPlatform],
    ['--disable-barrier', f.disableBarrier],
    ['--notifications', f.notifications],
    ['--trace-hash', f.traceHash],
  ] as const) {
    if (v !== undefined) throw usage(`--matrix runs its own configurations: ${flag} does not go with it (use --seconds-per-cell and --seed)`);
  }
  const secondsPerCell = f.secondsPerCell === undefined ? DEFAULT_SECONDS_PER_CELL : parseSeconds(f.secondsPerCell, '--seconds-per-cell');
  const seed = f.seed === undefined ? 1 : parseWhole(f.seed, '--seed', 0, 0xffff_ffff);
  const json = f.json === true;
  if (!json) {
    io.out(`tlpwire stress --matrix: ${secondsPerCell} s per cell, seeds from ${seed}\n  layers: ${STRESS_LAYERS}\n\n`);
    io.out(`${header()}\n`);
  }
  let group = 'platforms';
  const results = await runMatrix({
    secondsPerCell,
    seed,
    nowMs: () => performance.now(),
    pause: yieldToEventLoop,
    onCell: (r) => {
      if (json) return;
      if (r.cell.group !== group) {
        group = r.cell.group;
        io.out(`\n${GROUP_TITLES[r.cell.group]}\n`);
      }
      io.out(`${row(r)}\n`);
    },
  });
  if (!json) io.out(formatMatrixNotes(results));
  if (f.report !== undefined) {
    const html = matrixReportHtml(results, {
      secondsPerCell,
      firstSeed: seed,
      generated: `Generated ${new Date().toISOString()} by tlpwire stress --matrix;`,
      layers: STRESS_LAYERS,
    });
    try {
      writeFileSync(f.report, html);
    } catch (e) {
      throw new TlpwireError('ERR_USAGE', `--report ${f.report}: cannot write it: ${errorMessage(e)}`);
    }
    if (!json) io.out(`report written to ${f.report}\n`);
  }
  if (json) io.out(`${JSON.stringify({ secondsPerCell, seed, layers: STRESS_LAYERS, cells: results.map(cellJson) })}\n`);
  return results.every((r) => r.verdict === r.cell.expected) ? 0 : EXIT_FAIL;
}

const GROUP_TITLES = {
  platforms: '',
  ablation: 'ablation: one site removed, weak host and device, every other barrier strict (busy-polling)',
  notifications: 'notifications on (doorbells and MSI-X interrupts, EVENT_IDX, 8 frames in flight): the handshake sites, weak host and device',
} as const;

const COLS = { label: 72, ops: 13, seeds: 6, corr: 12, stalls: 7, verdict: 8, seed: 19 };

function header(): string {
  return [
    'configuration'.padEnd(COLS.label),
    'ring ops'.padStart(COLS.ops),
    'seeds'.padStart(COLS.seeds),
    'corruptions'.padStart(COLS.corr),
    'stalls'.padStart(COLS.stalls),
    '  verdict'.padEnd(COLS.verdict + 2),
    'first failing seed',
  ].join(' ');
}

function row(r: MatrixCellResult): string {
  const unexpected = r.verdict !== r.cell.expected ? `  ⚠ expected ${r.cell.expected}` : '';
  return [
    r.cell.label.padEnd(COLS.label),
    num(r.ringOps).padStart(COLS.ops),
    String(r.seeds).padStart(COLS.seeds),
    String(r.corruptions).padStart(COLS.corr),
    String(r.stalls).padStart(COLS.stalls),
    `  ${r.verdict === 'pass' ? 'pass' : 'FAIL'}`.padEnd(COLS.verdict + 2),
    r.failure === undefined ? '—' : String(r.failure.seed),
  ].join(' ') + unexpected;
}

function formatMatrixNotes(results: readonly MatrixCellResult[]): string {
  const lines: string[] = ['', 'failures (what was detected, and the command that reproduces it):'];
  for (const r of results) {
    if (r.failure === undefined) continue;
    lines.push(`  ${r.cell.label}: ${r.failure.kind} after ${num(r.failure.ringOps)} ring operations: ${r.failure.message}`);
    lines.push(`    ${shellLine(r.failure.argv)}`);
  }
  const notNeeded = results.filter((r) => r.cell.site !== undefined && r.failure === undefined);
  if (notNeeded.length > 0) {
    lines.push('', 'sites whose removal was not detected, and why they are not needed in this model:');
    for (const r of notNeeded) {
      const mode = r.cell.config.notifications === 'on' ? ', notifications on' : '';
      lines.push(`  ${r.cell.site}${mode} (reached ${num(r.siteRuns ?? 0)} times): ${SITE_NOT_NEEDED[r.cell.site!]}`);
    }
  }
  const total = results.reduce((a, r) => a + r.ringOps, 0);
  const wall = results.reduce((a, r) => a + r.wallMs, 0) / 1000;
  const bad = results.filter((r) => r.verdict !== r.cell.expected);
  lines.push('', `${num(total)} ring operations in ${wall.toFixed(1)} s (${num(total / Math.max(wall, 1e-9))}/s); ${bad.length === 0 ? 'every verdict is what the memory model implies' : `${bad.length} verdict(s) differ from what the memory model implies`}`);
  return `${lines.join('\n')}\n`;
}

function cellJson(r: MatrixCellResult): Record<string, unknown> {
  return {
    configuration: r.cell.label,
    group: r.cell.group,
    config: r.cell.config,
    site: r.cell.site ?? null,
    ringOps: r.ringOps,
    seeds: r.seeds,
    corruptions: r.corruptions,
    stalls: r.stalls,
    verdict: r.verdict,
    expected: r.cell.expected,
    firstFailingSeed: r.failure?.seed ?? null,
    failure: r.failure === undefined ? null : { kind: r.failure.kind, message: r.failure.message, ringOps: r.failure.ringOps, timeNs: r.failure.timeNs },
    reproduce: r.failure === undefined ? null : shellLine(r.failure.argv),
    siteRuns: r.siteRuns ?? null,
    whyNotNeeded: r.cell.site !== undefined && r.failure === undefined ? SITE_NOT_NEEDED[r.cell.site] : null,
    wallMs: Math.round(r.wallMs),
  };
}

// ---- registration ---------------------------------------------------------------------------------

export function registerStressCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  program
    .command('stress')
    .description('hunt for barrier bugs: virtio-net traffic both ways in the simulator under every legal reordering (--matrix: the table)')
    .option('--seconds <n>', `wall-clock seconds to run (default ${DEFAULT_SECONDS} unless --ops is given)`)
    .option('--ops <n>', 'stop after this many ring operations (deterministic: use it to replay)')
    .option('--seed <s>', 'seed of the run (the matrix: of its first run in each cell)', undefined)
    .option('--host-platform <p>', 'host CPU memory model: tso or weak (default weak)')
    .option('--device-platform <p>', 'device DMA engine model: tso or weak (default weak)')
    .option('--driver-barriers <mode>', 'auto (strict iff ORDER_PLATFORM is negotiated, as Linux), weak or strict (default auto)')
    .option('--device-barriers <mode>', 'weak or strict (default strict)')
    .option('--order-platform <on|off>', 'the device offers VIRTIO_F_ORDER_PLATFORM (default on)')
    .option('--disable-barrier <site>', 'remove the barrier at this site (repeatable)', collect)
    .option('--notifications <off|on>', 'off (default): both sides busy-poll, notifications suppressed; on: doorbells and interrupts (EVENT_IDX), lost wakeups show as stalls')
    .option('--json', 'print the result as JSON')
    .option('--trace-hash', 'print the SHA-256 of the event trace (exact replay check)')
    .option('--matrix', 'run the platform × barrier matrix and the barrier ablation')
    .option('--seconds-per-cell <n>', `with --matrix: wall-clock seconds per cell (default ${DEFAULT_SECONDS_PER_CELL})`)
    .option('--report <file.html>', 'with --matrix: also write the table and charts as one HTML page')
    .addHelpText('after', STRESS_HELP)
    .action(async (flags: StressFlags) => {
      setCode(flags.matrix === true ? await runMatrixCommand(flags, io) : await runOnce(flags, io));
    });
}
