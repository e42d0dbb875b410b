/**
 * A transport that reads into the same memory again and again (Transport.reusesReceiveMemory,
 * node:net onread): nothing the link or the transport hands on may change when the transport
 * overwrites that memory. (test/link/sockets.test.ts checks the same over real tcp and unix
 * sockets, whose connecting side reads that way.)
 */
import { describe, expect, it } from 'vitest';
import { Counters } from '../../src/core/index.js';
import { ITEM, Link, PROTOCOL_VERSION, createMemoryTransportPair, type MemoryTransport, type Transport } from '../../src/link/index.js';
import { SocketTransportBase } from '../../src/link/socket-transport-base.js';
import { VirtualClock } from '../../src/sim/index.js';
import { encodeTlp, memWriteTlp, messageTlp, type Tlp } from '../../src/tlp/index.js';
import { batch, item } from './helpers.js';

/** Hands each message over in memory of its own, which it scribbles over once the call returns. */
class Reusing implements Transport {
  readonly reusesReceiveMemory = true;
  onMessage: (data: Uint8Array) => void = () => {};
  onDrain: () => void = () => {};
  onClose: (error?: Error) => void = () => {};
  private readonly memory = new Uint8Array(1 << 18);

  constructor(private readonly inner: MemoryTransport) {
    inner.onMessage = (m) => {
      this.memory.set(m);
      this.onMessage(this.memory.subarray(0, m.length));
      this.memory.fill(0xee);
    };
    inner.onDrain = () => this.onDrain();
    inner.onClose = (e) => this.onClose(e);
  }

  get remote(): string {
    return this.inner.remote;
  }

  send(chunks: readonly Uint8Array[], done?: () => void): boolean {
    return this.inner.send(chunks, done);
  }

  close(reason?: string): void {
    this.inner.close(reason);
  }
}

interface Setup {
  clock: VirtualClock;
  a: Link;
  ta: MemoryTransport;
  got: Tlp[];
  malformed: Uint8Array[];
}

function setup(): Setup {
  const clock = new VirtualClock();
  const [ta, tb] = createMemoryTransportPair(clock, { names: ['rc', 'ep'] });
  const a = new Link(ta, { clock, role: 'rc', counters: new Counters() });
  const b = new Link(new Reusing(tb), { clock, role: 'ep', counters: new Counters() });
  const got: Tlp[] = [];
  const malformed: Uint8Array[] = [];
  b.onTlp = (t) => got.push(t); // keeps them, payloads and all
  b.onMalformedTlp = (_e, bytes) => malformed.push(bytes);
  a.start();
  b.start();
  clock.runUntil(() => a.state === 'up' && b.state === 'up', 10_000);
  return { clock, a, ta, got, malformed };
}

describe('a link on a transport that reuses its receive memory', () => {
  it('TLPs handed to onTlp keep their payloads after the transport overwrites its memory', () => {
    const s = setup();
    const sent: Tlp[] = [];
    for (let i = 0; i < 40; i++) {
      const data = Uint8Array.from({ length: 4 * (1 + (i % 16)) }, (_, k) => (i * 31 + k) & 0xff);
      const t =
        i % 2 === 0
          ? memWriteTlp({ requesterId: 0x0100, address: 0x1000 + i * 0x100, data })
          : messageTlp({ requesterId: 0x0100, messageCode: 0x7f, routing: 4, headerDw3: 0x1af4, data });
      sent.push(t);
      s.a.sendTlp(t);
    }
    s.clock.runUntil(() => s.got.length === sent.length, 10_000);
    expect(s.got.map((t) => [t.kind, [...(t.data ?? [])]])).toEqual(sent.map((t) => [t.kind, [...(t.data ?? [])]]));
  });

  it('the bytes of a malformed TLP handed to onMalformedTlp stay as received', () => {
    const s = setup();
    // An MWr whose Length says 2 DWs but that carries 1: malformed, found when decoding.
    const whole = encodeTlp(memWriteTlp({ requesterId: 0x0100, address: 0x2000, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }));
    const bad = whole.slice(0, whole.length - 4);
    s.ta.send([batch(PROTOCOL_VERSION, item(ITEM.TLP, bad))]);
    s.clock.runUntil(() => s.malformed.length === 1, 10_000);
    expect([...s.malformed[0]!]).toEqual([...bad]);
  });
});

class Early extends SocketTransportBase {
  readonly remote = 'test';
  send(): boolean {
    return true;
  }
  close(): void {}
  arrive(m: Uint8Array): void {
    this.deliverMessage(m);
  }
}

describe('SocketTransportBase', () => {
  it.each([
    [true, 'copies', 'Uint8Array'],
    [true, 'copies', 'Buffer'],
    [false, 'keeps', 'Uint8Array'],
  ])('reusing receive memory %s: %s a message (a %s) that arrives before the owner attaches', async (reuses, _what, kind) => {
    const t = new Early(reuses);
    // A Buffer's own slice() is a view: the copy must not rely on it.
    const memory = kind === 'Buffer' ? Buffer.from([1, 2, 3, 4]) : Uint8Array.of(1, 2, 3, 4);
    t.arrive(memory);
    memory.fill(0xee); // the next read
    const got: Uint8Array[] = [];
    t.onMessage = (m) => got.push(m);
    await new Promise((r) => setImmediate(r));
    expect([...got[0]!]).toEqual(reuses ? [1, 2, 3, 4] : [0xee, 0xee, 0xee, 0xee]);
  });
});
