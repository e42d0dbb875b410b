/**
 * Test helpers for the link: a Link pair over the in-memory transport under a VirtualClock, a raw
 * peer that speaks bytes built here by hand (independently of src/link/framing.ts), and TLPs.
 */
import { Packr } from 'msgpackr';
import { Counters, type Logger, type LogFn } from '../../src/core/index.js';
import { Link, createMemoryTransportPair, type LinkOptions, type MemoryTransport } from '../../src/link/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { completionTlp, memReadTlp, memWriteTlp, type Tlp } from '../../src/tlp/index.js';

export interface LogLine {
  level: string;
  msg: string;
  obj: object | undefined;
}

/** A Logger that records every line, for asserting that something was logged. */
export function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const fn =
    (level: string): LogFn =>
    (a: object | string, b?: string) => {
      if (typeof a === 'string') lines.push({ level, msg: a, obj: undefined });
      else lines.push({ level, msg: b ?? '', obj: a });
    };
  const logger: Logger & { lines: LogLine[] } = {
    lines,
    trace: fn('trace'),
    debug: fn('debug'),
    info: fn('info'),
    warn: fn('warn'),
    error: fn('error'),
    child: () => logger,
  };
  return logger;
}

export interface Pair {
  clock: VirtualClock;
  a: Link;
  b: Link;
  ta: MemoryTransport;
  tb: MemoryTransport;
  logA: LogLine[];
  logB: LogLine[];
}

export function linkPair(
  optsA: Partial<LinkOptions> = {},
  optsB: Partial<LinkOptions> = {},
  mem: { latencyNs?: number; highWaterBytes?: number } = {},
): Pair {
  const clock = new VirtualClock();
  const [ta, tb] = createMemoryTransportPair(clock, { ...mem, names: ['rc', 'ep'] });
  const logA = recordingLogger();
  const logB = recordingLogger();
  const a = new Link(ta, { clock, role: 'rc', logger: logA, counters: new Counters(), ...optsA });
  const b = new Link(tb, { clock, role: 'ep', logger: logB, counters: new Counters(), ...optsB });
  return { clock, a, b, ta, tb, logA: logA.lines, logB: logB.lines };
}

/** Starts both links and runs the clock until both are up (or nothing is left to run). */
export function bringUp(p: Pair): void {
  p.a.start();
  p.b.start();
  p.clock.runUntil(() => p.a.state === 'up' && p.b.state === 'up', 10_000);
}

let nextAddr = 0x1000;

/** An MWr with `bytes` of payload (DW multiple). */
export function mwr(bytes: number, fill = 0xab): Tlp {
  const address = nextAddr;
  nextAddr = (nextAddr + 0x1000) % 0x1000_0000;
  return memWriteTlp({ requesterId: 0x0100, address, data: new Uint8Array(bytes).fill(fill) });
}

export function mrd(bytes: number, tag = 1): Tlp {
  return memReadTlp({ requesterId: 0x0100, tag, address: 0x2000, byteLength: bytes });
}

export function cpld(bytes: number, tag = 1): Tlp {
  return completionTlp({ completerId: 0x0200, requesterId: 0x0100, tag, data: new Uint8Array(bytes).fill(0x5a) });
}

// ---- raw bytes, built by hand from docs/PROTOCOL.md ------------------------------------------

const packr = new Packr({ useRecords: false });

export function pack(v: unknown): Uint8Array {
  return packr.pack(v);
}

/** One item: type, flags 0, u16 big-endian length, body. */
export function item(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = 0;
  out[2] = body.length >> 8;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/** A batch: "TW", version, flags 0, then items. */
export function batch(version: number, ...items: Uint8Array[]): Uint8Array {
  const total = 4 + items.reduce((n, i) => n + i.length, 0);
  const out = new Uint8Array(total);
  out.set([0x54, 0x57, version, 0], 0);
  let o = 4;
  for (const i of items) {
    out.set(i, o);
    o += i.length;
  }
  return out;
}

export function helloObject(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 'tlpwire',
    version: 1,
    role: 'raw',
    capabilities: { maxPayloadSize: 4096, tag10Bit: true, features: [] },
    fc: {
      credits: { PH: 32, PD: 512, NPH: 32, NPD: 32, CplH: 0, CplD: 0 },
      scale: { PH: 1, PD: 1, NPH: 1, NPD: 1, CplH: 1, CplD: 1 },
    },
    ...over,
  };
}

/** A Link on one end of a memory pair and the raw other end, with everything it received. */
export function rawPeer(opts: Partial<LinkOptions> = {}): {
  clock: VirtualClock;
  link: Link;
  raw: MemoryTransport;
  received: Uint8Array[];
  log: LogLine[];
  closed: () => boolean;
} {
  const clock = new VirtualClock();
  const [tl, raw] = createMemoryTransportPair(clock, { names: ['raw', 'link'] });
  const log = recordingLogger();
  const link = new Link(tl, { clock, role: 'rc', logger: log, ...opts });
  const received: Uint8Array[] = [];
  let closed = false;
  raw.onMessage = (d) => received.push(d);
  raw.onClose = () => {
    closed = true;
  };
  return { clock, link, raw, received, log: log.lines, closed: () => closed };
}

/** Items of a batch as [type, body]; the parser here is the test's own. */
export function itemsOf(msg: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  let o = 4;
  while (o < msg.length) {
    const len = (msg[o + 2]! << 8) | msg[o + 3]!;
    out.push([msg[o]!, msg.subarray(o + 4, o + 4 + len)]);
    o += 4 + len;
  }
  return out;
}

/** Resolves once `cond()` holds (polled every 5 ms); rejects after `ms`. For tests on real sockets. */
export function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error(`condition not met within ${ms} ms`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
