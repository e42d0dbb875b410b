/**
 * Accepted tcp:// and unix: sockets remade from a duplicate of their descriptor so that they read
 * into a buffer of their own (src/link/net-transport.ts ownReads, native/tap/sockfd.c): nothing
 * sent before or while that happens is lost or reordered, closing works from both sides, and no
 * descriptor is left behind. Each case runs with and without (reuseAcceptedReads), so the two
 * must agree byte for byte.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listenTransport, type Transport, type TransportServer } from '../../src/link/index.js';
import { DEFAULT_SOCKFD_ADDON_PATH, acceptedReadsSupport } from '../../src/link/net-transport.js';
import { MAX_MESSAGE_BYTES } from '../../src/link/constants.js';
import { SeededRng } from '../../src/sim/index.js';
import { until } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlpwire-accepted-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const support = acceptedReadsSupport();
const why = typeof support === 'string' ? support : '';

/** Records of random sizes (some larger than a socket read), each a 4-byte big-endian length and its bytes. */
function records(seed: number, n: number): { messages: Uint8Array[]; wire: Buffer } {
  const rng = new SeededRng(seed);
  const messages: Uint8Array[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const size = rng.int(8) === 0 ? 1 + rng.int(MAX_MESSAGE_BYTES) : 1 + rng.int(600);
    const m = new Uint8Array(size);
    for (let k = 0; k < size; k++) m[k] = rng.int(256);
    messages.push(m);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(size);
    parts.push(prefix, Buffer.from(m));
  }
  return { messages, wire: Buffer.concat(parts) };
}

interface Accepted {
  transport: Transport;
  got: Uint8Array[];
  closed: boolean;
}

async function serve(url: string, reuse: boolean): Promise<{ server: TransportServer; accepted: Accepted[] }> {
  const server = await listenTransport(url, { reuseAcceptedReads: reuse });
  const accepted: Accepted[] = [];
  server.onConnection = (transport) => {
    const a: Accepted = { transport, got: [], closed: false };
    // A transport that reuses its memory lends the bytes for the call only: keep copies.
    transport.onMessage = (data) => a.got.push(data.slice());
    transport.onMessageParts = (parts) => {
      const whole = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      let o = 0;
      for (const p of parts) {
        whole.set(p, o);
        o += p.length;
      }
      a.got.push(whole);
    };
    transport.onClose = () => (a.closed = true);
    accepted.push(a);
  };
  return { server, accepted };
}

function dial(url: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = url.startsWith('unix:') ? connect(url.slice('unix:'.length)) : connect(Number(new URL(url).port), '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () => resolve(s));
  });
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

const cases: [string, () => string][] = [
  ['tcp', () => 'tcp://127.0.0.1:0'],
  ['unix', () => `unix:${join(dir, `a-${Math.random().toString(36).slice(2)}.sock`)}`],
];

describe.each(cases)('%s server', (_name, listenUrl) => {
  it.each([true, false])('bytes sent at once on connecting arrive whole and in order (reuseAcceptedReads %s)', async (reuse) => {
    for (const seed of [1, 2, 3]) {
      const { server, accepted } = await serve(listenUrl(), reuse);
      try {
        const { messages, wire } = records(seed, 60);
        const s = await dial(server.url);
        // Written before the server's connection handler can have run: the accepted socket is
        // paused until it has been remade, so none of this may be lost.
        s.write(wire);
        await until(() => accepted[0] !== undefined && accepted[0].got.length === messages.length);
        const a = accepted[0]!;
        expect(a.transport.reusesReceiveMemory === true).toBe(reuse && typeof support !== 'string');
        for (let i = 0; i < messages.length; i++) expect(Buffer.compare(a.got[i]!, messages[i]!), `seed ${seed} message ${i}`).toBe(0);
        // and back the other way, through the same socket
        const back: Buffer[] = [];
        s.on('data', (c: Buffer) => back.push(c));
        a.transport.send([new Uint8Array([1, 2, 3]), new Uint8Array([4])]);
        await until(() => Buffer.concat(back).length === 8);
        expect([...Buffer.concat(back)]).toEqual([0, 0, 0, 4, 1, 2, 3, 4]);
        s.destroy();
        await until(() => a.closed);
      } finally {
        await server.close();
      }
    }
  });

  it.each([true, false])('closing from the server side reaches the client, and server.close() ends (reuseAcceptedReads %s)', async (reuse) => {
    const { server, accepted } = await serve(listenUrl(), reuse);
    const s = await dial(server.url);
    const ended = new Promise<void>((resolve) => s.once('close', () => resolve()));
    s.resume();
    await until(() => accepted.length === 1);
    await server.close();
    // close() resolves once the accepted connection is closed, not just the listener.
    expect(accepted[0]!.closed).toBe(true);
    await ended;
  });

  it.skipIf(!existsSync('/proc/self/fd'))('leaves no descriptor open after connections come and go (needs /proc/self/fd)', async () => {
    const { server, accepted } = await serve(listenUrl(), true);
    try {
      // one connection first, so that whatever the server opens once is already open
      const first = await dial(server.url);
      await until(() => accepted.length === 1);
      first.destroy();
      await until(() => accepted[0]!.closed);
      const before = openFds();
      for (let i = 0; i < 20; i++) {
        const s = await dial(server.url);
        s.write(records(i, 3).wire);
        await until(() => accepted.length === i + 2 && accepted[i + 1]!.got.length === 3);
        s.destroy();
        await until(() => accepted[i + 1]!.closed);
      }
      await until(() => openFds() === before);
      expect(openFds()).toBe(before);
    } finally {
      await server.close();
    }
  });
});

describe('the sockfd addon', () => {
  const built = existsSync(DEFAULT_SOCKFD_ADDON_PATH);
  const forced = process.env['TLPWIRE_ACCEPTED_READS'] === 'node';
  const loadsTitle = !built
    ? 'loads — skipped: native/tap/build/Release/sockfd.node is not built'
    : forced
      ? 'loads — skipped: TLPWIRE_ACCEPTED_READS=node turns it off for this run'
      : 'loads, so accepted sockets read into their own buffer';
  it.skipIf(!built || forced)(loadsTitle, () => {
    expect(why).toBe('');
    expect(typeof support).toBe('function');
  });

  it.skipIf(!built)(built ? 'dupFd refuses bad arguments and reports errno' : 'dupFd errors — skipped: the addon is not built', () => {
    const { dupFd } = createRequire(import.meta.url)(DEFAULT_SOCKFD_ADDON_PATH) as { dupFd: (fd: unknown) => number };
    for (const bad of [-1, 1.5, 'x', undefined, 2 ** 31]) expect(() => dupFd(bad)).toThrow(TypeError);
    // a descriptor number nothing has open
    expect(() => dupFd(1_000_000)).toThrow(/^dupFd\(1000000\): Bad file descriptor$/);
  });

  it('TLPWIRE_ACCEPTED_READS=node keeps node:net reads', () => {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', '-e', "import('./src/link/net-transport.ts').then((m) => console.log(String(m.acceptedReadsSupport())))"],
      { encoding: 'utf8', env: { ...process.env, TLPWIRE_ACCEPTED_READS: 'node' } },
    );
    expect(out.trim()).toBe('TLPWIRE_ACCEPTED_READS=node');
  });
});
