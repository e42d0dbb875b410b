/**
 * `tlpwire demo` (what `npm start` runs): an endpoint and a root complex as two real processes on
 * loopback. The endpoint listens on a free port (or a Unix socket in a temporary directory), the
 * root complex connects, enumerates, prints the tree and the link-test table, and both exit.
 * Children are killed on failure, on a signal and at the timeout; none is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { TlpwireError } from '../core/index.js';
import type { CliIo } from './io.js';
import { collect, parseDuration, parseLogLevel, parseSize } from './options.js';

export interface DemoOptions {
  transport: 'ws' | 'tcp' | 'unix';
  /** Everything must be done within this long. */
  timeoutNs: number;
  /** --function values for the endpoint. */
  functions: readonly string[];
  /** The children's log level. */
  logLevel: string;
  throughputBytes: number;
  /** Checked frames through the virtio-net card (0: none). */
  frames: number;
  /** Extra flags for the endpoint and the root complex (e.g. --order-platform off). */
  epArgs?: readonly string[];
  rcArgs?: readonly string[];
  /** How to start `tlpwire` again: the program and the arguments before the subcommand. */
  self: { command: string; args: readonly string[] };
}

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number>;
}

function start(name: string, self: DemoOptions['self'], args: readonly string[], io: CliIo, onStdoutLine: (line: string) => void): Child {
  const proc = spawn(self.command, [...self.args, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let outBuf = '';
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    outBuf += chunk;
    let nl: number;
    while ((nl = outBuf.indexOf('\n')) >= 0) {
      onStdoutLine(outBuf.slice(0, nl));
      outBuf = outBuf.slice(nl + 1);
    }
  });
  let errBuf = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk: string) => {
    errBuf += chunk;
    let nl: number;
    while ((nl = errBuf.indexOf('\n')) >= 0) {
      io.err(`[${name}] ${errBuf.slice(0, nl)}\n`);
      errBuf = errBuf.slice(nl + 1);
    }
  });
  const exited = new Promise<number>((resolve) => {
    proc.on('error', (e) => {
      io.err(`[${name}] could not start: ${e.message}\n`);
      resolve(127);
    });
    proc.on('exit', (code, signal) => {
      if (outBuf !== '') onStdoutLine(outBuf);
      if (errBuf !== '') io.err(`[${name}] ${errBuf}\n`);
      resolve(code ?? (signal === null ? 1 : 128));
    });
  });
  return { name, proc, exited };
}

function alive(c: Child): boolean {
  return c.proc.exitCode === null && c.proc.signalCode === null;
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs`. */
async function stopChild(c: Child, graceMs = 3000): Promise<void> {
  if (!alive(c)) return;
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (alive(c)) c.proc.kill('SIGKILL');
  }, graceMs);
  await c.exited;
  clearTimeout(timer);
}

export async function runDemo(o: DemoOptions, io: CliIo): Promise<number> {
  const children: Child[] = [];
  let tmp: string | undefined;
  const killAll = (): void => {
    for (const c of children) if (alive(c)) c.proc.kill('SIGKILL');
  };
  // Whatever happens to this process, its children go with it.
  process.on('exit', killAll);
  let interrupted: ((sig: NodeJS.Signals) => void) | undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    interrupted = resolve;
  });
  const onSignal = (sig: NodeJS.Signals): void => interrupted?.(sig);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), o.timeoutNs / 1e6);
  });
  const common = ['--log-level', o.logLevel];
  try {
    let listenUrl: string;
    if (o.transport === 'unix') {
      tmp = mkdtempSync(join(tmpdir(), 'tlpwire-demo-'));
      listenUrl = `unix:${join(tmp, 'link.sock')}`;
    } else {
      listenUrl = `${o.transport}://127.0.0.1:0`;
    }
    io.out(`tlpwire demo: starting an endpoint (${o.functions.join(', ')}) listening on ${listenUrl}\n`);
    let announce: (url: string) => void = () => {};
    const listening = new Promise<string>((resolve) => {
      announce = resolve;
    });
    const ep = start('ep', o.self, ['ep', '--listen', listenUrl, '--once', ...o.functions.flatMap((f) => ['--function', f]), ...(o.epArgs ?? []), ...common], io, (line) => {
      const m = /^listening on (\S+)/.exec(line);
      if (m !== null) announce(m[1]!);
    });
    children.push(ep);
    const first = await Promise.race([
      listening.then((u) => ({ url: u })),
      ep.exited.then((c) => ({ exit: c })),
      signalled.then((s) => ({ signal: s })),
      timedOut,
    ]);
    if (first === 'timeout' || !('url' in first)) {
      const why =
        first === 'timeout' ? 'the endpoint did not start listening in time' : 'exit' in first ? `the endpoint exited with code ${first.exit} before listening` : `${first.signal}: stopping`;
      io.err(`tlpwire demo: ${why}\n`);
      return 1;
    }
    const url = first.url;
    io.out(`tlpwire demo: starting a root complex that connects to ${url}, enumerates it and runs the link test\n`);
    const rc = start(
      'rc',
      o.self,
      [
        'rc',
        '--connect',
        url,
        '--retry',
        '5',
        ...(o.functions.some((f) => f.startsWith('linktest')) ? ['--linktest'] : []),
        '--once',
        '--throughput-bytes',
        String(o.throughputBytes),
        ...(o.frames > 0 && o.functions.some((f) => f.startsWith('virtio-net')) ? ['--traffic', String(o.frames)] : []),
        ...(o.rcArgs ?? []),
        ...common,
      ],
      io,
      (line) => io.out(`${line}\n`),
    );
    children.push(rc);
    const outcome = await Promise.race([rc.exited.then((c) => ({ exit: c })), signalled.then((s) => ({ signal: s })), timedOut]);
    if (outcome === 'timeout') {
      io.err(`tlpwire demo: not finished within ${o.timeoutNs / 1e9} s; stopping\n`);
      return 1;
    }
    if ('signal' in outcome) {
      io.err(`tlpwire demo: ${outcome.signal}: stopping\n`);
      return 1;
    }
    // The endpoint ran with --once: it leaves by itself once the root complex has hung up.
    const epExit = await Promise.race([ep.exited, new Promise<number>((r) => setTimeout(() => r(-1), 5000).unref())]);
    if (epExit === -1) await stopChild(ep);
    if (outcome.exit === 0) {
      const virtio = o.functions.some((f) => f.startsWith('virtio-net'));
      const linktest = o.functions.some((f) => f.startsWith('linktest'));
      io.out(`\ntlpwire demo: enumeration${virtio ? ', virtio-net traffic' : ''}${linktest ? ' and every link test' : ''} passed\n`);
      return 0;
    }
    io.err(`tlpwire demo: the root complex exited with code ${outcome.exit}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.all(children.map((c) => stopChild(c)));
    process.off('exit', killAll);
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  }
}

const DEMO_HELP = `
Starts \`tlpwire ep --listen … --once\` and \`tlpwire rc --connect … --linktest --once\` as two
child processes on this machine, shows the enumerated tree and the link-test table, and exits 0
when every test passed. The children's logs appear on stderr prefixed [ep] / [rc].

Examples:
  $ npm start
  $ tlpwire demo --transport unix --log-level info
`;

export function registerDemoCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  program
    .command('demo')
    .description('run an endpoint and a root complex as two processes on loopback: enumerate, negotiate virtio-net, send traffic, link-test, exit')
    .option('--transport <kind>', 'ws, tcp or unix', 'ws')
    .option('--function <kind>', 'a function for the endpoint (repeatable; default virtio-net and linktest)', collect)
    .option('--frames <n>', 'checked frames through the virtio-net card and back', '3000')
    .option('--order-platform <on|off>', 'whether the card offers ORDER_PLATFORM (off: the driver falls back to weak barriers)')
    .option('--timeout <duration>', 'give up (and stop both processes) after this long', '120s')
    .option('--throughput-bytes <size>', 'bytes of the throughput transfer in each direction', '16M')
    .option('--log-level <level>', "the children's log level", 'warn')
    .addHelpText('after', DEMO_HELP)
    .action(async (f: { transport: string; function?: string[]; timeout: string; throughputBytes: string; logLevel: string; frames: string; orderPlatform?: string }) => {
      if (!/^\d+$/.test(f.frames)) throw new TlpwireError('ERR_USAGE', `--frames: expected a number, got ${JSON.stringify(f.frames)}`);
      if (f.orderPlatform !== undefined && f.orderPlatform !== 'on' && f.orderPlatform !== 'off') {
        throw new TlpwireError('ERR_USAGE', `--order-platform: expected on or off, got ${JSON.stringify(f.orderPlatform)}`);
      }
      if (f.transport !== 'ws' && f.transport !== 'tcp' && f.transport !== 'unix') {
        throw new TlpwireError('ERR_USAGE', `--transport: expected ws, tcp or unix, got ${JSON.stringify(f.transport)}`);
      }
      const script = process.argv[1];
      if (script === undefined) throw new TlpwireError('ERR_INTERNAL', 'cannot tell how tlpwire was started');
      setCode(
        await runDemo(
          {
            transport: f.transport,
            timeoutNs: parseDuration(f.timeout, '--timeout'),
            functions: f.function ?? ['virtio-net', 'linktest'],
            frames: Number(f.frames),
            ...(f.orderPlatform === undefined ? {} : { epArgs: ['--order-platform', f.orderPlatform] }),
            logLevel: parseLogLevel(f.logLevel),
            throughputBytes: parseSize(f.throughputBytes, '--throughput-bytes'),
            // Start the children exactly as this process was started (bin/tlpwire, or tsx in tests).
            self: { command: process.execPath, args: [...process.execArgv, script] },
          },
          io,
        ),
      );
    });
}
