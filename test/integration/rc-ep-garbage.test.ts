import { describe, expect, it } from 'vitest';
import { connect as netConnect } from 'node:net';
import { SeededRng } from '../../src/core/index.js';
import {
  RealClock,
  portConfigAccess,
  portMmio,
  runEndpoint,
  runLinkTest,
  runRootComplex,
  type PortEnumeration,
  type RootComplexHandle,
} from '../../src/roles/index.js';
import { recordingLogger, type LogLine } from '../link/helpers.js';

/** Sends raw bytes to host:port and resolves with whatever came back before the server hung up. */
function rawExchange(port: number, bytes: Uint8Array | string, timeoutMs = 8000): Promise<{ reply: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ reply, closedByServer: false });
    }, timeoutMs);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closedByServer: true });
    });
  });
}

async function withRcAndEp(url: string, body: (rc: RootComplexHandle, port: number, enumerated: PortEnumeration, log: LogLine[]) => Promise<void>): Promise<void> {
  const log = recordingLogger();
  const clock = new RealClock();
  let gotEnum: (e: PortEnumeration) => void = () => {};
  const enumerated = new Promise<PortEnumeration>((r) => (gotEnum = r));
  const rc = await runRootComplex({ listen: url, memoryBytes: 64 << 20, clock, rng: new SeededRng(1), logger: log, onEnumerated: (e) => gotEnum(e) });
  const ep = await runEndpoint({ connect: rc.url!, functions: [{ kind: 'linktest' }], clock, rng: new SeededRng(2) });
  try {
    const e = await enumerated;
    await body(rc, Number(/:(\d+)/.exec(rc.url!.slice(5))![1]), e, log.lines);
  } finally {
    await ep.close();
    await rc.close();
  }
}

/** The endpoint still answers: its registers read back, and a small link test passes. */
async function stillWorks(rc: RootComplexHandle, e: PortEnumeration): Promise<void> {
  expect(rc.rc.ports.filter((p) => p.stack.link.state === 'up')).toEqual([e.port]);
  const fn = e.result.functions[0]!;
  const report = await runLinkTest(
    { fn, port: e.port.index, config: portConfigAccess(e.port), mmio: portMmio(e.port), ram: rc.rc.ram, interrupts: rc.rc.interrupts, clock: new RealClock(), rng: new SeededRng(3) },
    { sizes: [1025], dmaModes: [true], msi: false, throughputBytes: 0 },
  );
  expect(report.rows.filter((r) => r.status === 'fail')).toEqual([]);
}

describe('the root complex survives strangers on its port while its endpoint keeps working', () => {
  it('ws:// listener: an HTTP GET gets 426, bytes that are not HTTP get 400, a wrong subprotocol is refused', async () => {
    await withRcAndEp('ws://127.0.0.1:0', async (rc, port, e, log) => {
      const get = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(get.reply).toMatch(/^HTTP\/1\.1 426 /);
      expect(get.reply).toContain('tlpwire: this port speaks WebSocket');
      const junk = await rawExchange(port, new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0xff, 0xfe, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]));
      expect(junk.reply).toMatch(/^HTTP\/1\.1 400 /);
      expect(junk.closedByServer).toBe(true);
      const ws = await rawExchange(
        port,
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      expect(ws.reply).toMatch(/^HTTP\/1\.1 400 /);
      const warnings = log.filter((l) => l.level === 'warn').map((l) => l.msg);
      expect(warnings.some((m) => m.startsWith('refused plain HTTP GET'))).toBe(true);
      expect(warnings).toContain('refused a connection that does not speak HTTP');
      expect(warnings.some((m) => m.startsWith('refused WebSocket upgrade'))).toBe(true);
      await stillWorks(rc, e);
    });
  }, 30_000);

  it('tcp:// listener: random bytes and an HTTP request are refused and the connection closed', async () => {
    await withRcAndEp('tcp://127.0.0.1:0', async (rc, port, e, log) => {
      // A record that claims 1.2 GB ("GET " read as a length): closed at once.
      const http = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(http.closedByServer).toBe(true);
      // A well-formed record whose content is not tlpwire: refused by the link layer.
      const junk = await rawExchange(port, new Uint8Array([0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]));
      expect(junk.closedByServer).toBe(true);
      const warnings = log.filter((l) => l.level === 'warn').map((l) => l.msg);
      expect(warnings.some((m) => m.startsWith('closing connection:'))).toBe(true);
      expect(warnings.some((m) => m.startsWith('refused: not a tlpwire peer'))).toBe(true);
      await stillWorks(rc, e);
      // The strangers never became endpoints.
      expect(rc.enumerations()).toHaveLength(1);
    });
  }, 30_000);
});
