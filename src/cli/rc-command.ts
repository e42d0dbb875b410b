/**
 * `tlpwire rc`: the root complex process. Flags become an options object (`rcOptionsFromFlags`)
 * for roles' `runRootComplex`, so new flags (virtio-net) are one option and one field each.
 */
import { Option, type Command } from 'commander';
import { TlpwireError, type Logger } from '../core/index.js';
import { DEFAULT_MEM32_WINDOW, DEFAULT_MEM64_WINDOW, formatFunctionDetails, formatLspciTree, type AddressWindows } from '../pci/index.js';
import {
  RealClock,
  describeFunction,
  formatLinktestReport,
  realRng,
  runRootComplex,
  type LinktestOptions,
  type RootComplexRunOptions,
} from '../roles/index.js';
import type { CliIo } from './io.js';
import { createCliLogger, type LogFormat } from './logger.js';
import { collect, parseDuration, parseLogLevel, parseRetry, parseSize, parseUrl, parseWindow } from './options.js';
import { supervise } from './supervise.js';
import { checkRcTapFlags, openRcTap, virtioNetFunctionDriver, type RcTap, type VirtioNetRcOptions } from '../roles/index.js';

/** The flags `tlpwire rc` (and `tlpwire linktest`) take, as commander hands them over. */
export interface RcFlags {
  listen?: string;
  connect?: string;
  retry?: string | boolean;
  retryMaxDelay?: string;
  memory: string;
  dumpConfig?: string;
  linktest?: boolean;
  linktestSizes?: string[];
  dma?: boolean;
  dmaOnly?: boolean;
  msi?: boolean;
  throughputBytes?: string;
  mmioWindow?: string;
  mmio64Window?: string | boolean;
  mrrs?: string;
  once?: boolean;
  exitAfter?: string;
  logLevel: string;
  logFormat: string;
  hostPlatform?: string;
  driverBarriers?: string;
  iommu?: string;
  traffic?: string;
  trafficWindow?: string;
  tap?: string;
  ip?: string;
  pcap?: string;
}

/** `rc --tap IFNAME [--ip CIDR] [--pcap FILE]`. */
export interface RcTapFlags {
  ifname: string;
  ip?: string;
  pcap?: string;
}

/** What the rc command runs: the roles options without clock/rng/logger, plus CLI-only settings. */
export interface RcCommandOptions {
  run: Omit<RootComplexRunOptions, 'clock' | 'rng' | 'logger'>;
  virtioNet: VirtioNetRcOptions;
  /** Bridge the virtio-net card to this TAP. */
  tap?: RcTapFlags;
  exitAfterNs?: number;
  logLevel: ReturnType<typeof parseLogLevel>;
  logFormat: LogFormat;
}

export function addCommonRunFlags(cmd: Command): Command {
  return cmd
    .option('--retry [count]', 'with --connect: keep trying to connect (and reconnect after the link drops), with exponential backoff; COUNT caps the retries')
    .option('--retry-max-delay <duration>', 'longest wait between retries', '5s')
    .option('--once', 'exit after the first link session (rc: after the first endpoint was enumerated and tested)')
    .option('--exit-after <duration>', 'shut down cleanly after this long (e.g. 30s)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent', 'info')
    .addOption(new Option('--log-format <format>', 'log lines as JSON, or pretty text (auto: pretty on a terminal)').choices(['auto', 'json', 'pretty']).default('auto'));
}

export function addRcFlags(cmd: Command): Command {
  return addCommonRunFlags(
    cmd
      .option('--listen <url>', 'accept endpoints on ws://HOST:PORT, tcp://HOST:PORT or unix:PATH (one root port each)')
      .option('--connect <url>', 'connect to an endpoint that listens')
      .option('--memory <size>', 'host RAM', '64M')
      .option('--dump-config <file>', "write every function's 4096-byte config space in `lspci -xxxx` format after each enumeration")
      .option('--linktest', 'run the link test (pcitest matrix) on every link tester function')
      .option('--linktest-sizes <bytes>', 'transfer size for the link test (repeatable; default 1, 1024, 1025, 1024000, 1024001)', collect)
      .option('--no-dma', 'link test: skip the transfers with the DMA flag')
      .option('--dma-only', 'link test: skip the transfers without the DMA flag')
      .option('--no-msi', 'link test: skip the MSI test')
      .option('--throughput-bytes <size>', 'link test: bytes of the throughput transfer in each direction (0 skips it)', '16M')
      .option('--mmio-window <window>', 'where BARs go: BASE+SIZE or BASE-LIMIT', '0xc0000000-0xfec00000')
      .option('--mmio64-window [window]', 'put prefetchable 64-bit BARs above 4 GiB (default window 0x4000000000+256G)')
      .option('--mrrs <size>', 'Max_Read_Request_Size to program in functions', '512')
      .option('--host-platform <tso|weak>', "virtio-net: the host CPU's memory model as the device sees it (default weak)")
      .option('--driver-barriers <auto|weak|strict>', 'virtio-net: auto follows ORDER_PLATFORM as Linux does; weak/strict emulate a driver that ignores it (default auto)')
      .option('--iommu <on|off|passthrough>', 'virtio-net: translate DMA of devices that use ACCESS_PLATFORM (default on)')
      .option('--traffic <frames>', 'virtio-net: send this many checked frames through the card and back, then report')
      .option('--traffic-window <frames>', 'virtio-net: frames in flight during --traffic (default 64)'),
  );
}

/** `rc` only (not `linktest`): bridge the virtio-net card to a Linux TAP. */
export function addRcTapFlags(cmd: Command): Command {
  return cmd
    .option('--tap <ifname>', 'virtio-net: bridge the card to this Linux TAP (created if missing, brought up; carrier follows the virtio link)')
    .option('--ip <cidr>', 'with --tap: give the TAP this address, e.g. 10.99.0.1/24')
    .option('--pcap <file>', 'with --tap: write every frame crossing the virtio-net link to FILE (pcap, Ethernet, ns timestamps)');
}

export function rcOptionsFromFlags(f: RcFlags, forceLinktest = false): RcCommandOptions {
  if (f.listen === undefined && f.connect === undefined) {
    throw usageError('give --listen URL (wait for endpoints) or --connect URL (connect to a listening endpoint)');
  }
  if (f.listen !== undefined && f.connect !== undefined) throw usageError('give either --listen or --connect, not both');
  const retryMax = parseDuration(f.retryMaxDelay ?? '5s', '--retry-max-delay');
  const retry = parseRetry(f.retry, retryMax);
  if (retry !== undefined && f.connect === undefined) throw usageError('--retry needs --connect');
  const windows: Partial<AddressWindows> = { mem32: f.mmioWindow === undefined ? DEFAULT_MEM32_WINDOW : parseWindow(f.mmioWindow, '--mmio-window') };
  if (f.mmio64Window !== undefined && f.mmio64Window !== false) {
    windows.mem64 = f.mmio64Window === true ? DEFAULT_MEM64_WINDOW : parseWindow(f.mmio64Window, '--mmio64-window');
  }
  let linktest: LinktestOptions | false = false;
  if (forceLinktest || f.linktest === true) {
    const dmaModes: boolean[] = [];
    if (f.dmaOnly !== true) dmaModes.push(false);
    if (f.dma !== false) dmaModes.push(true);
    if (dmaModes.length === 0) throw usageError('--no-dma and --dma-only together leave no transfers to run');
    linktest = {
      dmaModes,
      msi: f.msi !== false,
      throughputBytes: parseSize(f.throughputBytes ?? '16M', '--throughput-bytes'),
      ...(f.linktestSizes === undefined ? {} : { sizes: f.linktestSizes.map((s) => parseSize(s, '--linktest-sizes')) }),
    };
  }
  const mrrs = parseSize(f.mrrs ?? '512', '--mrrs');
  if (![128, 256, 512, 1024, 2048, 4096].includes(mrrs)) throw usageError(`--mrrs: ${mrrs} is not one of 128, 256, 512, 1024, 2048, 4096`);
  const run: RcCommandOptions['run'] = {
    memoryBytes: parseSize(f.memory, '--memory'),
    windows,
    maxReadRequestSize: mrrs,
    linktest,
    once: f.once === true,
    ...(f.listen === undefined ? {} : { listen: parseUrl(f.listen, '--listen') }),
    ...(f.connect === undefined ? {} : { connect: parseUrl(f.connect, '--connect') }),
    ...(retry === undefined ? {} : { retry }),
    ...(f.dumpConfig === undefined ? {} : { dumpConfigPath: f.dumpConfig }),
  };
  if (run.memoryBytes < 1 << 20) throw usageError(`--memory: host RAM must be at least 1M, got ${f.memory}`);
  const pick = <T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined => {
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw usageError(`--${flag}: expected ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  };
  const hostPlatform = pick('host-platform', f.hostPlatform, ['tso', 'weak'] as const);
  const driverBarriers = pick('driver-barriers', f.driverBarriers, ['auto', 'weak', 'strict'] as const);
  const iommu = pick('iommu', f.iommu, ['on', 'off', 'passthrough'] as const);
  const frames = f.traffic === undefined ? 0 : Number(f.traffic);
  if (!Number.isInteger(frames) || frames < 0) throw usageError(`--traffic: expected a number of frames, got ${JSON.stringify(f.traffic)}`);
  const window = f.trafficWindow === undefined ? 64 : Number(f.trafficWindow);
  if (!Number.isInteger(window) || window < 1 || window > 4096) throw usageError(`--traffic-window: expected 1..4096, got ${JSON.stringify(f.trafficWindow)}`);
  const virtioNet: VirtioNetRcOptions = {
    ...(hostPlatform === undefined ? {} : { hostPlatform }),
    ...(driverBarriers === undefined ? {} : { driverBarriers }),
    ...(iommu === undefined ? {} : { iommu }),
    ...(frames > 0 ? { traffic: { frames, window } } : {}),
  };
  checkRcTapFlags(f);
  return {
    run,
    virtioNet,
    ...(f.tap === undefined ? {} : { tap: { ifname: f.tap, ...(f.ip === undefined ? {} : { ip: f.ip }), ...(f.pcap === undefined ? {} : { pcap: f.pcap }) } }),
    logLevel: parseLogLevel(f.logLevel),
    logFormat: f.logFormat as LogFormat,
    ...(f.exitAfter === undefined ? {} : { exitAfterNs: parseDuration(f.exitAfter, '--exit-after') }),
  };
}

/** A usage error: one line, exit code 2. */
export function usageError(message: string): TlpwireError {
  return new TlpwireError('ERR_USAGE', message);
}

/** Runs the root complex, printing the tree, details, dumps and link-test tables on `io.out`. */
export async function runRcCommand(o: RcCommandOptions, io: CliIo, name = 'rc', logger?: Logger): Promise<number> {
  const log = logger ?? createCliLogger({ level: o.logLevel, io, format: o.logFormat, bindings: { process: name } });
  const clock = new RealClock();
  const out = (line: string): void => io.out(`${line}\n`);
  // The TAP first: without the addon or the rights the rc stops here with one line (exit 1).
  const tap: RcTap | undefined =
    o.tap === undefined
      ? undefined
      : await openRcTap({
          ifname: o.tap.ifname,
          ...(o.tap.ip === undefined ? {} : { ip: o.tap.ip }),
          ...(o.tap.pcap === undefined ? {} : { pcap: o.tap.pcap }),
          clock,
          wallNowMs: Date.now(),
          logger: log,
          out,
        });
  try {
    return await runRcWith(o, io, log, clock, tap);
  } finally {
    if (tap !== undefined) {
      await tap.close();
      out(tap.summary());
    }
  }
}

async function runRcWith(o: RcCommandOptions, io: CliIo, log: Logger, clock: RealClock, tap: RcTap | undefined): Promise<number> {
  const attach = tap === undefined ? {} : { attach: tap.attach };
  const handle = await runRootComplex({
    ...o.run,
    drivers: [...(o.run.drivers ?? []), virtioNetFunctionDriver({ ...o.virtioNet, ...attach, out: (line) => io.out(`${line}\n`) })],
    clock,
    rng: realRng(),
    logger: log,
    onListening: (url) => io.out(`listening on ${url}\n`),
    onEnumerated: (e, all) => {
      const buses = all.map((x) => ({ rootPortDevice: x.port.bus - 1, secondaryBus: x.port.bus, functions: x.result.functions }));
      io.out(`\n${formatLspciTree(buses, describeFunction)}\n`);
      for (const f of e.result.functions) io.out(`${formatFunctionDetails(f, describeFunction)}\n`);
    },
    onConfigDump: (path, n) => io.out(`config space of ${n} function${n === 1 ? '' : 's'} written to ${path}\n`),
    onLinktest: (_e, report) => io.out(`\n${formatLinktestReport(report)}`),
    onDriverResult: (_e, fn, driver, r) => io.out(`${driver} on ${fn.bus.toString(16).padStart(2, '0')}:${fn.device.toString(16).padStart(2, '0')}.${fn.function}: ${r.ok ? 'ok' : 'FAILED'}${r.text === undefined ? '' : ` — ${r.text}`}\n`),
  });
  return supervise(handle, { log, io, ...(o.exitAfterNs === undefined ? {} : { exitAfterNs: o.exitAfterNs }) });
}

const RC_HELP = `
Examples:
  $ tlpwire rc --listen ws://0.0.0.0:5301                       # wait for endpoints
  $ tlpwire rc --listen ws://0.0.0.0:5301 --linktest --once     # test the first endpoint, exit 0 if all pass
  $ tlpwire rc --connect tcp://10.0.0.2:5301 --retry --dump-config cfg.txt
  $ tlpwire rc --listen ws://0.0.0.0:5301 --traffic 5000 --once # virtio-net: features, barriers, traffic report
  $ tlpwire rc --listen ws://0.0.0.0:5301 --tap tap0 --ip 10.99.0.1/24 --pcap rc.pcap
                                                                # the card becomes tap0 (root or CAP_NET_ADMIN)
  $ lspci -F cfg.txt -vvv -nn                                   # decode the dump with pciutils

Each endpoint that connects gets its own root port and bus (01, 02, ...); the rc enumerates it
(BARs from --mmio-window, MPS/MRRS/tags/completion timeout, MSI-X), prints the tree like
\`lspci -tv\`, and waits for more — an endpoint that goes away and comes back is re-enumerated.
SIGINT/SIGTERM close every link cleanly. Logs go to stderr; results to stdout.
`;

/** `tlpwire rc`. */
export function registerRcCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  const cmd = program
    .command('rc')
    .description('run a root complex: host RAM and one root port per endpoint; enumerates endpoints as they connect')
    .addHelpText('after', RC_HELP);
  addRcTapFlags(addRcFlags(cmd)).action(async (flags: RcFlags) => {
    setCode(await runRcCommand(rcOptionsFromFlags(flags), io));
  });
}
