/**
 * `tlpwire ep`: the endpoint process hosting PCI functions. Flags become an options object
 * (`epOptionsFromFlags`) for roles' `runEndpoint`, so new function kinds and flags slot in.
 */
import type { Command } from 'commander';
import type { Logger } from '../core/index.js';
import { RealClock, functionKinds, realRng, runEndpoint, type EndpointRunOptions } from '../roles/index.js';
import type { CliIo } from './io.js';
import { createCliLogger, type LogFormat } from './logger.js';
import { parseDuration, parseFunctionSpec, parseLogLevel, parseRetry, parseUrl, collect } from './options.js';
import { addCommonRunFlags, usageError } from './rc-command.js';
import { supervise } from './supervise.js';

export interface EpFlags {
  listen?: string;
  connect?: string;
  retry?: string | boolean;
  retryMaxDelay?: string;
  function?: string[];
  once?: boolean;
  exitAfter?: string;
  logLevel: string;
  logFormat: string;
  backend?: string;
  orderPlatform?: string;
  accessPlatform?: string;
  devicePlatform?: string;
  deviceBarriers?: string;
  pcap?: string;
}

/** The ep-wide virtio-net flags become defaults of every virtio-net function's parameters. */
export function virtioNetDefaults(f: EpFlags): Record<string, string> {
  const d: Record<string, string> = {};
  const set = (k: string, v: string | undefined, allowed?: readonly string[]): void => {
    if (v === undefined) return;
    if (allowed !== undefined && !allowed.includes(v)) throw usageError(`--${k}: expected ${allowed.join(' or ')}, got ${JSON.stringify(v)}`);
    d[k] = v;
  };
  set('backend', f.backend);
  set('order-platform', f.orderPlatform, ['on', 'off']);
  set('access-platform', f.accessPlatform, ['on', 'off']);
  set('device-platform', f.devicePlatform, ['tso', 'weak']);
  set('device-barriers', f.deviceBarriers, ['weak', 'strict']);
  set('pcap', f.pcap);
  return d;
}

export interface EpCommandOptions {
  run: Omit<EndpointRunOptions, 'clock' | 'rng' | 'logger'>;
  exitAfterNs?: number;
  logLevel: ReturnType<typeof parseLogLevel>;
  logFormat: LogFormat;
}

/** The function a bare `tlpwire ep` hosts. */
export const DEFAULT_FUNCTION = 'virtio-net';

export function epOptionsFromFlags(f: EpFlags): EpCommandOptions {
  if (f.listen === undefined && f.connect === undefined) {
    throw usageError('give --connect URL (connect to a root complex) or --listen URL (wait for one)');
  }
  if (f.listen !== undefined && f.connect !== undefined) throw usageError('give either --listen or --connect, not both');
  const retry = parseRetry(f.retry, parseDuration(f.retryMaxDelay ?? '5s', '--retry-max-delay'));
  if (retry !== undefined && f.connect === undefined) throw usageError('--retry needs --connect');
  const netDefaults = virtioNetDefaults(f);
  const functions = (f.function ?? [DEFAULT_FUNCTION]).map(parseFunctionSpec).map((spec) =>
    spec.kind === 'virtio-net' ? { ...spec, params: { ...netDefaults, ...spec.params } } : spec,
  );
  if (Object.keys(netDefaults).length > 0 && !functions.some((fn) => fn.kind === 'virtio-net')) {
    throw usageError(`--${Object.keys(netDefaults)[0]} applies to virtio-net functions, and none was asked for`);
  }
  if (functions.length > 8) throw usageError(`--function: a device has at most 8 functions, ${functions.length} were given`);
  return {
    run: {
      functions,
      once: f.once === true,
      ...(f.listen === undefined ? {} : { listen: parseUrl(f.listen, '--listen') }),
      ...(f.connect === undefined ? {} : { connect: parseUrl(f.connect, '--connect') }),
      ...(retry === undefined ? {} : { retry }),
    },
    logLevel: parseLogLevel(f.logLevel),
    logFormat: f.logFormat as LogFormat,
    ...(f.exitAfter === undefined ? {} : { exitAfterNs: parseDuration(f.exitAfter, '--exit-after') }),
  };
}

export async function runEpCommand(o: EpCommandOptions, io: CliIo, logger?: Logger): Promise<number> {
  const log = logger ?? createCliLogger({ level: o.logLevel, io, format: o.logFormat, bindings: { process: 'ep' } });
  const handle = await runEndpoint({
    ...o.run,
    clock: new RealClock(),
    rng: realRng(),
    logger: log,
    onListening: (url) => io.out(`listening on ${url}\n`),
  });
  return supervise(handle, { log, io, ...(o.exitAfterNs === undefined ? {} : { exitAfterNs: o.exitAfterNs }) });
}

function epHelp(): string {
  const kinds = functionKinds()
    .map((k) => `  ${k.kind.padEnd(12)} ${k.help}`)
    .join('\n');
  return `
Functions (--function KIND[:key=value,...], repeatable: function 0, 1, ... of one device):
${kinds}

Examples:
  $ tlpwire ep --connect ws://10.0.0.1:5301 --retry            # a virtio-net card; keep (re)connecting
  $ tlpwire ep --listen tcp://0.0.0.0:5301 --backend tap:tap0 --pcap ep.pcap
  $ tlpwire ep --listen ws://0.0.0.0:5301 --order-platform off  # an older device: the driver uses weak barriers
  $ tlpwire ep --listen tcp://0.0.0.0:5301 --function linktest --function linktest:bars=64
  $ tlpwire ep --listen unix:/tmp/tlpwire.sock --once

With --listen the endpoint waits for a root complex (one at a time) and prints "listening on URL".
When the link goes down the functions are reset (as a card losing power); with --connect and
--retry the endpoint reconnects with backoff. SIGINT/SIGTERM close the link cleanly.
`;
}

/** \`tlpwire ep\`. */
export function registerEpCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  const cmd = program
    .command('ep')
    .description('run an endpoint: a PCI device (one or more functions) behind one link')
    .addHelpText('after', epHelp);
  addCommonRunFlags(
    cmd
      .option('--connect <url>', 'connect to a root complex at ws://HOST:PORT, tcp://HOST:PORT or unix:PATH')
      .option('--listen <url>', 'wait for a root complex to connect')
      .option('--function <kind>', `a function to host (repeatable; default ${DEFAULT_FUNCTION})`, collect)
      .option('--backend <name>', 'virtio-net: where frames go: loopback (echo, MACs swapped; default), null, tap:IFNAME, udp:LOCALPORT:HOST:PORT')
      .option('--order-platform <on|off>', 'virtio-net: offer VIRTIO_F_ORDER_PLATFORM ("is a real PCI device"; default on); off emulates an older device')
      .option('--access-platform <on|off>', 'virtio-net: offer VIRTIO_F_ACCESS_PLATFORM (DMA through the IOMMU; default on)')
      .option('--device-platform <tso|weak>', "virtio-net: the card's DMA ordering model (default weak)")
      .option('--device-barriers <weak|strict>', "virtio-net: the card's ring barriers (default strict)")
      .option('--pcap <file>', 'virtio-net: write every frame that crosses the card to FILE (libpcap, Ethernet, ns timestamps)'),
  ).action(async (flags: EpFlags) => {
    setCode(await runEpCommand(epOptionsFromFlags(flags), io));
  });
}
