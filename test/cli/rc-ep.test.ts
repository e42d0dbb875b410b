import { describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';
import { parseDuration, parseFunctionSpec, parseRetry, parseSize, parseWindow } from '../../src/cli/options.js';
import { createCliLogger } from '../../src/cli/logger.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

interface Captured {
  io: CliIo;
  out: () => string;
  err: () => string;
}

function capture(): Captured {
  let out = '';
  let err = '';
  return { io: { out: (t) => (out += t), err: (t) => (err += t) }, out: () => out, err: () => err };
}

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await main(argv, c.io);
  return { code, out: c.out(), err: c.err() };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

/** A port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

/** The error output is exactly one line starting with "tlpwire: ". */
function oneLine(err: string): string {
  const lines = err.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^tlpwire: /);
  return lines[0]!;
}

describe('tlpwire rc / ep / linktest: bad input is one clear line and a non-zero exit code', () => {
  it('a malformed URL: exit 2, naming the flag and the problem', async () => {
    const r = await run('rc', '--listen', 'ws://127.0.0.1');
    expect(r.code).toBe(2);
    expect(oneLine(r.err)).toBe('tlpwire: --listen: bad link URL "ws://127.0.0.1": missing or non-numeric port (HOST:PORT)');
    const e = await run('ep', '--connect', 'http://x:1');
    expect(e.code).toBe(2);
    expect(oneLine(e.err)).toContain('unknown scheme "http:"');
  });

  it('a malformed size or duration: exit 2', async () => {
    const r = await run('rc', '--listen', 'ws://127.0.0.1:0', '--memory', '64Q');
    expect(r.code).toBe(2);
    expect(oneLine(r.err)).toContain('--memory: bad size "64Q"');
    const small = await run('rc', '--listen', 'ws://127.0.0.1:0', '--memory', '4k');
    expect(small.code).toBe(2);
    expect(oneLine(small.err)).toContain('at least 1M');
    const d = await run('ep', '--listen', 'ws://127.0.0.1:0', '--exit-after', 'soon');
    expect(d.code).toBe(2);
    expect(oneLine(d.err)).toContain('--exit-after: bad duration "soon"');
  });

  it('missing, conflicting or meaningless flags: exit 2', async () => {
    for (const argv of [
      ['rc'],
      ['ep'],
      ['rc', '--listen', 'ws://127.0.0.1:0', '--connect', 'ws://127.0.0.1:1'],
      ['ep', '--listen', 'ws://127.0.0.1:0', '--retry'],
      ['ep', '--listen', 'ws://127.0.0.1:0', '--function', 'toaster'],
      ['ep', '--listen', 'ws://127.0.0.1:0', '--function', 'linktest:msix=99999'],
      ['ep', '--listen', 'ws://127.0.0.1:0', '--function', 'linktest:colour=blue'],
      ['rc', '--listen', 'ws://127.0.0.1:0', '--log-level', 'loud'],
      ['rc', '--listen', 'ws://127.0.0.1:0', '--mmio-window', '0xc0000000'],
      ['demo', '--transport', 'carrier-pigeon'],
    ]) {
      const r = await run(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      oneLine(r.err);
    }
  });

  it('an unreachable peer: exit 1 with the reason', async () => {
    const port = await closedPort();
    const r = await run('ep', '--connect', `tcp://127.0.0.1:${port}`);
    expect(r.code).toBe(1);
    expect(oneLine(r.err)).toBe(`tlpwire: cannot connect to tcp://127.0.0.1:${port}: connection refused (is a tlpwire server listening there?)`);
    const l = await run('linktest', '--connect', `ws://127.0.0.1:${port}`);
    expect(l.code).toBe(1);
    expect(oneLine(l.err)).toContain('connection refused');
    const u = await run('rc', '--connect', `unix:${join(tempDir('tlpwire-'), 'none.sock')}`);
    expect(u.code).toBe(1);
    expect(oneLine(u.err)).toContain('no such socket file');
  });

  it('--retry N keeps trying with backoff, then gives up with exit 1', async () => {
    const port = await closedPort();
    const t0 = Date.now();
    const r = await run('ep', '--connect', `tcp://127.0.0.1:${port}`, '--retry', '2', '--retry-max-delay', '150ms', '--log-level', 'error');
    expect(r.code).toBe(1);
    expect(oneLine(r.err)).toContain('(gave up after 3 attempts)');
    // Waited 100 ms, then 150 ms (the cap) between the attempts.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(240);
  });

  it('a port in use: exit 1 naming the address', async () => {
    const blocker = createServer();
    const port = await listen(blocker);
    try {
      const r = await run('rc', '--listen', `ws://127.0.0.1:${port}`);
      expect(r.code).toBe(1);
      expect(oneLine(r.err)).toBe(`tlpwire: address in use: ws://127.0.0.1:${port}/ (another process listens on that port)`);
      const e = await run('ep', '--listen', `tcp://127.0.0.1:${port}`);
      expect(e.code).toBe(1);
      expect(oneLine(e.err)).toContain('address in use');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('--exit-after stops a listening endpoint cleanly with exit 0', async () => {
    const r = await run('ep', '--listen', 'ws://127.0.0.1:0', '--exit-after', '150ms', '--log-level', 'warn');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^listening on ws:\/\/127\.0\.0\.1:\d+\/\n$/);
    expect(r.err).toBe('');
  });

  it('--help lists the commands', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    for (const cmd of ['rc', 'ep', 'linktest', 'demo']) expect(r.out).toContain(`  ${cmd}`);
  });
});

describe('option parsing', () => {
  it('sizes are binary units', () => {
    expect(parseSize('64M', '--memory')).toBe(64 * 2 ** 20);
    expect(parseSize('64MiB', '--memory')).toBe(64 * 2 ** 20);
    expect(parseSize('1g', '--memory')).toBe(2 ** 30);
    expect(parseSize('0x1000', '--memory')).toBe(4096);
    expect(parseSize('1024001', '--memory')).toBe(1024001);
    expect(() => parseSize('1.5', '--memory')).toThrow(/whole number/);
  });

  it('durations default to seconds', () => {
    expect(parseDuration('500ms', 'x')).toBe(500e6);
    expect(parseDuration('2', 'x')).toBe(2e9);
    expect(parseDuration('1m', 'x')).toBe(60e9);
    expect(() => parseDuration('0s', 'x')).toThrow(/positive/);
  });

  it('--retry with and without a count', () => {
    expect(parseRetry(undefined)).toBeUndefined();
    expect(parseRetry(true)).toMatchObject({ retries: Infinity, initialDelayNs: 100e6, maxDelayNs: 5e9 });
    expect(parseRetry('3', 1e9)).toMatchObject({ retries: 3, maxDelayNs: 1e9 });
    expect(() => parseRetry('-1')).toThrow(/count/);
  });

  it('function specs and windows', () => {
    expect(parseFunctionSpec('linktest')).toEqual({ kind: 'linktest', params: {} });
    expect(parseFunctionSpec('linktest:msix=64,bars=64')).toEqual({ kind: 'linktest', params: { msix: '64', bars: '64' } });
    expect(() => parseFunctionSpec('linktest:msix')).toThrow(/key=value/);
    expect(parseWindow('0xc0000000+512M', 'w')).toEqual({ base: 0xc000_0000, limit: 0xe000_0000 });
    expect(parseWindow('0xc0000000-0xfec00000', 'w')).toEqual({ base: 0xc000_0000, limit: 0xfec0_0000 });
    expect(() => parseWindow('0xd0000000-0xc0000000', 'w')).toThrow(/empty/);
  });
});

describe('the CLI logger', () => {
  it('writes one JSON object per line to the error stream by default (not a terminal)', () => {
    const c = capture();
    const log = createCliLogger({ level: 'info', io: c.io, tty: false, bindings: { process: 'rc' } });
    log.debug('hidden');
    log.child({ port: 1 }).warn({ remote: 'tcp://x:1' }, 'link down');
    const lines = c.err().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, process: 'rc', port: 1, remote: 'tcp://x:1', msg: 'link down' });
    expect(c.out()).toBe('');
  });

  it('writes pretty single lines when asked (or on a terminal)', () => {
    const c = capture();
    const log = createCliLogger({ level: 'debug', io: c.io, format: 'pretty', tty: false });
    log.debug({ bus: 1 }, 'endpoint enumerated');
    const text = c.err();
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(text).toContain('DEBUG');
    expect(text).toContain('endpoint enumerated');
    expect(text).not.toMatch(/^\{/);
  });
});
