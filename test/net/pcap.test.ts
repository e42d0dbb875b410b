import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Counters } from '../../src/core/index.js';
import type { NetBackend } from '../../src/net/index.js';
import { CapturingBackend, PcapWriter, TlpCapture, wallClockEpochOffsetNs } from '../../src/net/index.js';
import { VirtualClock } from '../../src/sim/index.js';
import { readPcap } from './pcap-reader.js';
import { icmpEchoFrame, ipv4, mac } from './tap-frames.js';

const run = promisify(execFile);
const tshark = await run('tshark', ['--version']).then(
  () => true,
  () => false,
);
const dir = mkdtempSync(join(tmpdir(), 'tlpwire-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A Writable that keeps what it is given, in memory. */
function memorySink(): { sink: Writable; bytes: () => Uint8Array } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return { sink, bytes: () => new Uint8Array(Buffer.concat(chunks)) };
}

const A = mac('02:00:00:00:00:0a');
const B = mac('02:00:00:00:00:0b');
const IP_A = ipv4('10.9.8.1');
const IP_B = ipv4('10.9.8.2');

function timestampOf(offset: bigint, nowNs: number): { sec: number; ns: number } {
  const t = offset + BigInt(nowNs);
  return { sec: Number(t / 1_000_000_000n), ns: Number(t % 1_000_000_000n) };
}

describe('PcapWriter', () => {
  it('writes the nanosecond global header byte for byte (pcap-savefile)', async () => {
    const clock = new VirtualClock();
    const { sink, bytes } = memorySink();
    const w = new PcapWriter(sink, { clock });
    await w.close();
    // magic a1b23c4d little-endian, 2.4, thiszone 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET
    expect(Buffer.from(bytes()).toString('hex')).toBe('4d3cb2a1' + '0200' + '0400' + '00000000' + '00000000' + 'ffff0000' + '01000000');
  });

  it('records an ICMP echo request and reply with the Clock time plus the epoch offset', async () => {
    const clock = new VirtualClock();
    const offset = 1_700_000_000_999_999_999n; // the first ns carries into the next second
    const { sink, bytes } = memorySink();
    const w = new PcapWriter(sink, { clock, epochOffsetNs: offset });
    const req = icmpEchoFrame(8, A, B, IP_A, IP_B, 0x4242, 1);
    const rep = icmpEchoFrame(0, B, A, IP_B, IP_A, 0x4242, 1);
    w.capture(req, 'tx');
    clock.run({ untilNs: 1 });
    w.capture(rep, 'rx');
    clock.run({ untilNs: 2_500_000_123 });
    w.write(req);
    await w.close();
    const f = readPcap(bytes());
    expect(f).toMatchObject({ byteOrder: 'le', nanosecond: true, versionMajor: 2, versionMinor: 4, snaplen: 65535, linkType: 1 });
    expect(f.records.map((r) => [r.tsSec, r.tsFrac])).toEqual(
      [0, 1, 2_500_000_123].map((t) => {
        const ts = timestampOf(offset, t);
        return [ts.sec, ts.ns];
      }),
    );
    expect(f.records[0]!.data).toEqual(req);
    expect(f.records[1]!.data).toEqual(rep);
    expect(f.records.every((r) => r.inclLen === r.origLen && r.data.length === r.inclLen)).toBe(true);
    expect(w.counters.snapshot()).toMatchObject({ records: 3, rx: 1, tx: 1, bytes: req.length * 2 + rep.length });
  });

  it('derives the offset from wall clock at start (wallClockEpochOffsetNs)', async () => {
    const clock = new VirtualClock();
    clock.run({ untilNs: 5_000_000_000 });
    const off = wallClockEpochOffsetNs(clock, 1_700_000_000_250);
    const { sink, bytes } = memorySink();
    const w = new PcapWriter(sink, { clock, epochOffsetNs: off });
    w.write(new Uint8Array(60));
    await w.close();
    const r = readPcap(bytes()).records[0]!;
    expect([r.tsSec, r.tsFrac]).toEqual([1_700_000_000, 250_000_000]);
  });

  it('truncates records to snaplen and keeps the original length', async () => {
    const clock = new VirtualClock();
    const { sink, bytes } = memorySink();
    const w = new PcapWriter(sink, { clock, snaplen: 64 });
    const frame = new Uint8Array(100).map((_, i) => i);
    w.write(frame);
    await w.close();
    const f = readPcap(bytes());
    expect(f.snaplen).toBe(64);
    expect(f.records[0]).toMatchObject({ inclLen: 64, origLen: 100 });
    expect(f.records[0]!.data).toEqual(frame.subarray(0, 64));
    expect(w.counters.get('truncated')).toBe(1);
  });

  it('drops (and counts) records when the disk does not keep up, never blocking the caller', async () => {
    const clock = new VirtualClock();
    const held: (() => void)[] = [];
    const chunks: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        held.push(cb); // the "disk" completes nothing until released
      },
    });
    const w = new PcapWriter(slow, { clock, maxQueueBytes: 8 * 1024, chunkBytes: 2048 });
    const frame = new Uint8Array(1000);
    for (let i = 0; i < 100; i++) {
      w.write(frame);
      if (i % 3 === 0) clock.run(); // flush turns in between
    }
    const records = w.counters.get('records');
    const dropped = w.counters.get('dropped');
    expect(records + dropped).toBe(100);
    expect(dropped).toBeGreaterThan(80);
    expect(records).toBeGreaterThan(3);
    // release the disk, then close: what was accepted is in the file, intact
    const closing = w.close();
    while (held.length > 0) held.shift()!();
    for (let i = 0; i < 10 && held.length === 0; i++) await new Promise((r) => setImmediate(r));
    while (held.length > 0) held.shift()!();
    await closing;
    const f = readPcap(new Uint8Array(Buffer.concat(chunks)));
    expect(f.records.length).toBe(records);
    expect(w.counters.get('dropped_bytes')).toBe(dropped * 1000);
  });

  it('counts a failing stream and keeps taking records without throwing', async () => {
    const clock = new VirtualClock();
    const broken = new Writable({
      write(_chunk, _enc, cb) {
        cb(new Error('ENOSPC: no space left on device'));
      },
    });
    const w = new PcapWriter(broken, { clock });
    w.write(new Uint8Array(60));
    clock.run();
    await new Promise((r) => setImmediate(r));
    expect(() => w.write(new Uint8Array(60))).not.toThrow();
    await w.close();
    expect(w.counters.get('write_errors')).toBe(1);
    expect(w.counters.get('dropped')).toBeGreaterThanOrEqual(1);
  });

  it('round-trips random records through the independent reader (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(3_000_000_000), fc.uint8Array({ minLength: 0, maxLength: 1600 })), { maxLength: 30 }),
        fc.bigInt({ min: 0n, max: 4_000_000_000_000_000_000n }),
        fc.integer({ min: 1, max: 2000 }),
        async (recs, offset, snaplen) => {
          const clock = new VirtualClock();
          const { sink, bytes } = memorySink();
          const w = new PcapWriter(sink, { clock, epochOffsetNs: offset, snaplen, chunkBytes: 4096 });
          let t = 0;
          const expected: { sec: number; ns: number; data: Uint8Array; orig: number }[] = [];
          for (const [dt, data] of recs) {
            t += dt;
            clock.run({ untilNs: t });
            w.write(data);
            const ts = timestampOf(offset, t);
            expected.push({ sec: ts.sec % 2 ** 32, ns: ts.ns, data: data.subarray(0, snaplen), orig: data.length });
          }
          await w.close();
          const f = readPcap(bytes());
          expect(f.snaplen).toBe(snaplen);
          expect(f.records.map((r) => ({ sec: r.tsSec, ns: r.tsFrac, data: r.data, orig: r.origLen }))).toEqual(expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('reports an unwritable path as ERR_NET', async () => {
    await expect(PcapWriter.open(join(dir, 'no-such-dir', 'x.pcap'), { clock: new VirtualClock() })).rejects.toMatchObject({
      code: 'ERR_NET',
      message: expect.stringContaining('pcap: cannot open'),
    });
  });
});

describe('CapturingBackend', () => {
  it('records every frame in both directions and passes it on unchanged', async () => {
    const clock = new VirtualClock();
    const sent: Uint8Array[] = [];
    const delivered: Uint8Array[] = [];
    const inner: NetBackend = {
      name: 'fake',
      counters: new Counters(),
      onFrame: () => {},
      send: (f) => sent.push(f),
      pause: () => {},
      resume: () => {},
      close: () => Promise.resolve(),
    };
    const { sink, bytes } = memorySink();
    const writer = new PcapWriter(sink, { clock });
    const b = new CapturingBackend(inner, writer);
    b.onFrame = (f) => delivered.push(f);
    const out = icmpEchoFrame(8, A, B, IP_A, IP_B, 1, 1);
    const back = icmpEchoFrame(0, B, A, IP_B, IP_A, 1, 1);
    b.send(out);
    inner.onFrame(back);
    await b.close();
    expect(sent).toEqual([out]);
    expect(delivered).toEqual([back]);
    expect(b.name).toBe('fake');
    expect(readPcap(bytes()).records.map((r) => r.data)).toEqual([out, back]);
    expect(writer.counters.snapshot()).toMatchObject({ tx: 1, rx: 1 });
  });
});

describe('TlpCapture', () => {
  it('writes LINKTYPE_USER0 records: pseudo-header (version, direction) then the TLP bytes', async () => {
    const clock = new VirtualClock();
    const { sink, bytes } = memorySink();
    const cap = new TlpCapture(new PcapWriter(sink, { clock, linkType: 147 }));
    // MRd 3DW, length 1: Fmt 0 Type 0, requester 0100 tag 0f, BE 0/f, address 0x12345678
    const mrd = Uint8Array.from([0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x0f, 0x0f, 0x12, 0x34, 0x56, 0x78]);
    cap.capture(mrd, 'sent');
    cap.capture(mrd, 'received');
    await cap.close();
    const f = readPcap(bytes());
    expect(f.linkType).toBe(147);
    expect(f.records.map((r) => Buffer.from(r.data).toString('hex'))).toEqual([
      '01000000' + Buffer.from(mrd).toString('hex'),
      '01010000' + Buffer.from(mrd).toString('hex'),
    ]);
  });

  it('refuses a writer with another link type', () => {
    const { sink } = memorySink();
    expect(() => new TlpCapture(new PcapWriter(sink, { clock: new VirtualClock() }))).toThrow(/USER0/);
  });
});

describe('pcap files on disk', () => {
  const title = tshark
    ? 'tshark -r decodes the ICMP echo request and reply'
    : 'tshark -r decodes the ICMP echo request and reply — skipped: tshark is not installed (apt-get install tshark)';
  it.skipIf(!tshark)(title, async () => {
    const path = join(dir, 'icmp.pcap');
    const clock = new VirtualClock();
    const w = await PcapWriter.open(path, { clock, epochOffsetNs: 1_700_000_000_000_000_001n });
    w.capture(icmpEchoFrame(8, A, B, IP_A, IP_B, 0x77, 5), 'tx');
    clock.run({ untilNs: 1_000 });
    w.capture(icmpEchoFrame(0, B, A, IP_B, IP_A, 0x77, 5), 'rx');
    await w.close();
    const { stdout } = await run('tshark', [
      '-r', path, '-T', 'fields', '-E', 'separator=,',
      '-e', 'frame.time_epoch', '-e', 'eth.src', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'icmp.type', '-e', 'icmp.seq',
      '-e', 'ip.checksum.status', '-e', 'icmp.checksum.status',
      '-o', 'ip.check_checksum:TRUE', // checksum.status 1 = good (verified)
    ]);
    const lines = stdout.trim().split('\n').map((l) => l.split(','));
    expect(lines).toHaveLength(2);
    expect(lines[0]!.slice(1)).toEqual(['02:00:00:00:00:0a', '10.9.8.1', '10.9.8.2', '8', '5', '1', '1']);
    expect(lines[1]!.slice(1)).toEqual(['02:00:00:00:00:0b', '10.9.8.2', '10.9.8.1', '0', '5', '1', '1']);
    // nanosecond timestamps survive: …000000001 and …000001001
    expect(lines[0]![0]).toMatch(/^1700000000\.000000001/);
    expect(lines[1]![0]).toMatch(/^1700000000\.000001001/);
    // and the independent reader agrees
    const f = readPcap(new Uint8Array(readFileSync(path)));
    expect(f.records).toHaveLength(2);
  });

  const tlpTitle = tshark ? 'tshark -r reads a TLP capture (USER0)' : 'tshark -r reads a TLP capture (USER0) — skipped: tshark is not installed';
  it.skipIf(!tshark)(tlpTitle, async () => {
    const path = join(dir, 'tlp.pcap');
    const cap = await TlpCapture.open(path, { clock: new VirtualClock() });
    cap.capture(Uint8Array.from([0x40, 0, 0, 1, 1, 0, 0, 0x0f, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef]), 'sent');
    await cap.close();
    const { stdout } = await run('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.len', '-e', 'frame.encap_type']);
    expect(stdout.trim()).toBe('20\t45');
    expect(readPcap(new Uint8Array(readFileSync(path))).records[0]!.inclLen).toBe(20);
  });
});
