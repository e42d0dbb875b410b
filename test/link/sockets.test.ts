/**
 * Real sockets on 127.0.0.1:0 and a temporary Unix socket path: round trips through Links,
 * strangers refused while a real partner keeps working, and the errors users see.
 */
import { connect as netConnect, createServer } from 'node:net';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { isTlpwireError } from '../../src/core/index.js';
import { Link, connectTransport, listenTransport, tlpCredits, type Transport, type TransportServer } from '../../src/link/index.js';
import { acceptedReadsSupport } from '../../src/link/net-transport.js';
import { RealClock } from '../../src/roles/real-runtime.js';
import { completionTlp, type Tlp } from '../../src/tlp/index.js';
import { mwr, recordingLogger, until, type LogLine } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlpwire-link-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const clock = new RealClock();

interface Served {
  server: TransportServer;
  links: Link[];
  transports: Transport[];
  log: LogLine[];
}

async function serve(url: string, options: { reuseAcceptedReads?: boolean } = {}): Promise<Served> {
  const logger = recordingLogger();
  const server = await listenTransport(url, { logger, ...options });
  const links: Link[] = [];
  const transports: Transport[] = [];
  server.onConnection = (t: Transport) => {
    transports.push(t);
    const link = new Link(t, { clock, role: 'ep', logger });
    // an echo endpoint: every MWr comes back as a CplD with the same payload
    link.onTlp = (tlp) => {
      const c = tlpCredits(tlp);
      link.releaseCredits(c.cls, c.dataBytes);
      // the payload is a view into the received message: transports never reuse those bytes
      if (tlp.kind === 'MWr' && tlp.data !== undefined) {
        link.sendTlp(completionTlp({ completerId: 0x0200, requesterId: tlp.requesterId, tag: 0, data: tlp.data }));
      }
    };
    links.push(link);
    link.start();
  };
  return { server, links, transports, log: logger.lines };
}

async function client(url: string): Promise<{ link: Link; got: Tlp[]; transport: Transport }> {
  const t = await connectTransport(url);
  const link = new Link(t, { clock, role: 'rc' });
  const got: Tlp[] = [];
  link.onTlp = (tlp) => {
    got.push(tlp);
    const c = tlpCredits(tlp);
    link.releaseCredits(c.cls, c.dataBytes);
  };
  link.start();
  await link.whenUp();
  return { link, got, transport: t };
}

/** Sends `n` MWr of mixed sizes, waits for the echoed CplDs and checks their payloads. */
async function roundTrip(c: { link: Link; got: Tlp[] }, n: number): Promise<void> {
  const start = c.got.length;
  for (let i = 0; i < n; i++) {
    const size = [4, 64, 256, 1024, 4096][i % 5]!;
    await until(() => c.link.hasCredits('P', size));
    c.link.sendTlp(mwr(size, i & 0xff));
  }
  await until(() => c.got.length - start === n);
  for (let i = 0; i < n; i++) {
    const t = c.got[start + i]!;
    expect(t.kind).toBe('CplD');
    expect(t.data?.length).toBe([4, 64, 256, 1024, 4096][i % 5]);
    expect(t.data?.every((b) => b === (i & 0xff))).toBe(true);
  }
}

const urls = (): [string, string][] => [
  ['ws', 'ws://127.0.0.1:0/tlp'],
  ['tcp', 'tcp://127.0.0.1:0'],
  ['unix', `unix:${join(dir, 'link.sock')}`],
];

/** Whether accepted tcp:// and unix: sockets can read into a buffer of their own here (the sockfd addon loads). */
const ownAcceptedReads = typeof acceptedReadsSupport() !== 'string';

describe.each(urls())('%s transport', (_name, listenUrl) => {
  it.each([true, false])('carries TLPs both ways through two Links (reuseAcceptedReads %s)', async (reuse) => {
    const s = await serve(listenUrl, { reuseAcceptedReads: reuse });
    try {
      expect(s.server.url).not.toContain(':0/');
      const c = await client(s.server.url);
      expect(c.link.partner?.role).toBe('ep');
      // tcp and unix sockets read into one reused buffer (node:net onread): connecting ones
      // always, accepted ones when the addon loads and the server is not told otherwise; the ws
      // library hands over a new buffer per read. roundTrip keeps every received TLP until the
      // end, so it checks that the link copied what it handed on.
      expect(c.transport.reusesReceiveMemory === true).toBe(_name !== 'ws');
      expect(s.transports[0]!.reusesReceiveMemory === true).toBe(_name !== 'ws' && reuse && ownAcceptedReads);
      await roundTrip(c, 500);
      expect(c.link.counters.get('tlp.sent.MWr')).toBe(500);
      expect(c.link.counters.get('batches.sent')).toBeLessThan(500);
      c.link.close('test done');
      await until(() => s.links[0]!.state === 'down');
      expect(s.links[0]!.reason).toBe('partner closed: test done');
    } finally {
      await s.server.close();
    }
  });

  it('refuses a stranger sending random bytes while a real partner keeps working', async () => {
    const s = await serve(listenUrl);
    try {
      const c = await client(s.server.url);
      const u = s.server.url;
      const sock = u.startsWith('unix:')
        ? netConnect({ path: u.slice(5) })
        : netConnect({ host: '127.0.0.1', port: Number(/:(\d+)/.exec(u.slice(5))![1]) });
      let strangerClosed = false;
      sock.on('close', () => {
        strangerClosed = true;
      });
      sock.on('error', () => {});
      sock.on('data', () => {});
      await new Promise<void>((r) => sock.once('connect', () => r()));
      // random-looking bytes, including a plausible small length prefix
      sock.write(Buffer.from('0000001ade ad be ef 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 01 02 03 04 05 06 07 08 09 0a'.replace(/ /g, ''), 'hex'));
      await until(() => strangerClosed);
      await roundTrip(c, 50);
      expect(c.link.state).toBe('up');
      expect(s.log.some((l) => l.level === 'warn' || l.level === 'error')).toBe(true);
    } finally {
      await s.server.close();
    }
  });
});

describe('ws server and strangers', () => {
  it('answers plain HTTP with 426, a wrong path with 404, no subprotocol with 400, and logs each', async () => {
    const s = await serve('ws://127.0.0.1:0/tlp');
    try {
      const c = await client(s.server.url);
      const port = Number(/:(\d+)\//.exec(s.server.url)![1]);
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(426);
      const wsStatus = async (path: string, protocols: string[]): Promise<number> =>
        new Promise((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols);
          ws.on('unexpected-response', (_req, res) => {
            resolve(res.statusCode ?? 0);
            ws.terminate();
          });
          ws.on('error', () => resolve(-1));
          ws.on('open', () => {
            resolve(101);
            ws.close();
          });
        });
      expect(await wsStatus('/other', ['tlpwire'])).toBe(404);
      expect(await wsStatus('/tlp', [])).toBe(400);
      // speaks WebSocket and tlpwire's subprotocol, but sends garbage: the Link refuses it
      const ws = new WebSocket(`ws://127.0.0.1:${port}/tlp`, ['tlpwire']);
      await new Promise<void>((r) => ws.once('open', () => r()));
      let closed = false;
      ws.on('close', () => {
        closed = true;
      });
      ws.send(Buffer.from('not a batch'));
      await until(() => closed);
      // not HTTP at all
      const raw = netConnect({ host: '127.0.0.1', port });
      let rawClosed = false;
      raw.on('close', () => {
        rawClosed = true;
      });
      raw.on('data', () => {});
      raw.on('error', () => {});
      raw.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]));
      await until(() => rawClosed);
      await roundTrip(c, 20);
      const warnings = s.log.filter((l) => l.level === 'warn').map((l) => l.msg);
      expect(warnings.some((m) => m.startsWith('refused plain HTTP GET /'))).toBe(true);
      expect(warnings.some((m) => m.includes('refused WebSocket upgrade: path "/other"'))).toBe(true);
      expect(warnings.some((m) => m.includes('did not ask for subprotocol'))).toBe(true);
      expect(warnings.some((m) => m.includes('not a tlpwire peer'))).toBe(true);
      expect(warnings.some((m) => m.includes('does not speak HTTP'))).toBe(true);
    } finally {
      await s.server.close();
    }
  });

  it('a client connecting to a non-tlpwire HTTP server gets one clear line', async () => {
    const http = await import('node:http');
    const srv = http.createServer((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      await expect(connectTransport(`ws://127.0.0.1:${port}/`)).rejects.toThrow(
        `cannot connect to ws://127.0.0.1:${port}/: the server answered HTTP 404 instead of a WebSocket upgrade`,
      );
    } finally {
      srv.close();
    }
  });
});

describe('errors users see', () => {
  it('address in use', async () => {
    for (const scheme of ['tcp', 'ws']) {
      const s = await listenTransport(`${scheme}://127.0.0.1:0`);
      try {
        const port = /:(\d+)/.exec(s.url.slice(scheme.length + 1))![1];
        const err = await listenTransport(`${scheme}://127.0.0.1:${port}`).catch((e: unknown) => e);
        expect(isTlpwireError(err, 'ERR_ADDRESS_IN_USE')).toBe(true);
        expect((err as Error).message).toMatch(/^address in use: /);
      } finally {
        await s.close();
      }
    }
    const path = join(dir, 'busy.sock');
    const s = await listenTransport(`unix:${path}`);
    try {
      await expect(listenTransport(`unix:${path}`)).rejects.toThrow(/^address in use: unix:.*busy\.sock \(another server is listening, or a stale socket file/);
    } finally {
      await s.close();
    }
  });

  it('connection refused, for each scheme', async () => {
    // a port that was free a moment ago
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    for (const url of [`tcp://127.0.0.1:${port}`, `ws://127.0.0.1:${port}/`]) {
      const err = await connectTransport(url).catch((e: unknown) => e);
      expect(isTlpwireError(err, 'ERR_TRANSPORT'), url).toBe(true);
      expect((err as Error).message).toBe(`cannot connect to ${url}: connection refused (is a tlpwire server listening there?)`);
    }
    await expect(connectTransport(`unix:${join(dir, 'nobody.sock')}`)).rejects.toThrow(/: no such socket file$/);
  });

  it('large batches flow at full window without loss (tcp)', async () => {
    const s = await serve('tcp://127.0.0.1:0');
    try {
      const c = await client(s.server.url);
      await roundTrip(c, 3000);
      expect(c.link.counters.get('tlp.received.CplD')).toBe(3000);
    } finally {
      await s.server.close();
    }
  });
});
