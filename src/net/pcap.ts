/**
 * libpcap capture files, written by hand: the nanosecond-resolution format (magic 0xa1b23c4d,
 * version 2.4), Ethernet link type for frames, a user link type for TLPs. tshark and Wireshark
 * read both (the TLP one shows as raw bytes unless a dissector is configured for USER0).
 *
 * Capturing must never slow the data path down or stop it: records are packed into chunks and
 * handed to the stream once per event-loop turn; when the disk cannot keep up and the bytes
 * waiting reach a bound, records are dropped and counted instead of queued without limit.
 *
 * Timestamps are the Clock's time plus an epoch offset the caller supplies (the real runtime
 * passes wall clock at start via `wallClockEpochOffsetNs`; a simulated run may pass 0 and get
 * timestamps counted from 1970), so the writer itself never reads the OS clock.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { Counters, TlpwireError, errorMessage, silentLogger, type Clock, type Logger } from '../core/index.js';
import { LINKTYPE, PCAP } from '../spec/index.js';
import type { NetBackend } from './backend.js';

/** rx: from the world toward the driver (NetBackend.onFrame); tx: from the driver toward the world (send). */
export type CaptureDirection = 'rx' | 'tx';

/** The hook a device or backend calls for every frame that crosses. */
export interface FrameCapture {
  capture(frame: Uint8Array, direction: CaptureDirection): void;
}

export interface PcapWriterOptions {
  clock: Clock;
  /** Added to clock.nowNs() to make Unix time in ns. A bigint keeps ns precision at today's dates. */
  epochOffsetNs?: bigint | number;
  /** Default LINKTYPE.ETHERNET. */
  linkType?: number;
  /** Bytes kept per record (longer records are truncated, orig_len keeps the size). Default 65535. */
  snaplen?: number;
  /** Bytes that may wait for the disk before records are dropped. Default 8 MiB. */
  maxQueueBytes?: number;
  /** Records are packed into chunks of this size before they go to the stream. Default 64 KiB. */
  chunkBytes?: number;
  logger?: Logger;
}

const NS_PER_S = 1_000_000_000;
const NS_PER_S_BIG = 1_000_000_000n;

/** The epoch offset for a writer in the real runtime: wall clock now minus the Clock's now. */
export function wallClockEpochOffsetNs(clock: Clock, wallNowMs: number): bigint {
  return BigInt(Math.round(wallNowMs)) * 1_000_000n - BigInt(Math.round(clock.nowNs()));
}

/**
 * Counters: records, bytes (captured bytes), truncated (longer than snaplen), dropped and
 * dropped_bytes (the disk did not keep up, or the stream failed), write_errors; rx and tx count
 * what came through `capture`.
 */
export class PcapWriter implements FrameCapture {
  readonly counters = new Counters();
  readonly linkType: number;
  readonly snaplen: number;
  private readonly clock: Clock;
  private readonly offSec: number;
  private readonly offNs: number;
  private readonly maxQueueBytes: number;
  private readonly chunkBytes: number;
  private readonly log: Logger;
  private chunk: Buffer;
  private used = 0;
  private flushScheduled = false;
  private failed = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly sink: Writable,
    opts: PcapWriterOptions,
  ) {
    this.clock = opts.clock;
    this.linkType = opts.linkType ?? LINKTYPE.ETHERNET;
    this.snaplen = opts.snaplen ?? PCAP.DEFAULT_SNAPLEN;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > 0x7fffffff) {
      throw new TlpwireError('ERR_USAGE', `pcap: snaplen ${this.snaplen} is outside 1..2^31-1`);
    }
    this.maxQueueBytes = opts.maxQueueBytes ?? 8 * 1024 * 1024;
    this.chunkBytes = opts.chunkBytes ?? 64 * 1024;
    this.log = opts.logger ?? silentLogger;
    // Split the offset once so each record adds small numbers: a Unix time in ns (~1.7e18) is
    // beyond 2^53 and would lose nanoseconds as one JS number.
    const off = opts.epochOffsetNs ?? 0;
    let sec: number;
    let ns: number;
    if (typeof off === 'bigint') {
      sec = Number(off / NS_PER_S_BIG);
      ns = Number(off % NS_PER_S_BIG);
    } else {
      sec = Math.trunc(off / NS_PER_S);
      ns = Math.round(off - sec * NS_PER_S);
    }
    if (ns < 0) {
      ns += NS_PER_S;
      sec -= 1;
    }
    this.offSec = sec;
    this.offNs = ns;
    sink.on('error', (err) => {
      this.failed = true;
      this.counters.add('write_errors');
      this.log.error(`pcap: writing the capture failed (${errorMessage(err)}); capture stopped`);
    });
    this.chunk = Buffer.allocUnsafe(Math.max(this.chunkBytes, PCAP.GLOBAL_HEADER_BYTES));
    this.writeGlobalHeader();
  }

  /** Creates (truncates) `path` and writes the global header. Throws ERR_NET when it cannot. */
  static async open(path: string, opts: PcapWriterOptions): Promise<PcapWriter> {
    const stream = createWriteStream(path);
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => {
        stream.off('error', onError);
        resolve();
      });
      const onError = (err: Error): void => reject(new TlpwireError('ERR_NET', `pcap: cannot open ${path}: ${err.message}`, { cause: err }));
      stream.once('error', onError);
    });
    return new PcapWriter(stream, opts);
  }

  capture(frame: Uint8Array, direction: CaptureDirection): void {
    // Classic pcap has no direction field (pcapng has); the counters still tell them apart.
    this.counters.add(direction);
    this.write(frame);
  }

  /** Appends one record stamped with the Clock's current time. */
  write(data: Uint8Array): void {
    this.writeRecord(undefined, data);
  }

  /** One record made of `prefix` then `data`, without concatenating them first. */
  writeRecord(prefix: Uint8Array | undefined, data: Uint8Array): void {
    const origLen = (prefix?.length ?? 0) + data.length;
    const inclLen = Math.min(origLen, this.snaplen);
    const recLen = PCAP.RECORD_HEADER_BYTES + inclLen;
    if (this.failed || this.closing !== undefined || this.sink.writableLength + this.used + recLen > this.maxQueueBytes) {
      this.counters.add('dropped');
      this.counters.add('dropped_bytes', inclLen);
      return;
    }
    if (this.used + recLen > this.chunk.length) this.startChunk(recLen);
    const c = this.chunk;
    let o = this.used;
    const t = Math.floor(this.clock.nowNs());
    const tSec = Math.floor(t / NS_PER_S);
    let ns = this.offNs + (t - tSec * NS_PER_S);
    let sec = this.offSec + tSec;
    if (ns >= NS_PER_S) {
      ns -= NS_PER_S;
      sec += 1;
    }
    c.writeUInt32LE(sec >>> 0, o); // u32 seconds: wraps in 2106, as the format does
    c.writeUInt32LE(ns, o + 4);
    c.writeUInt32LE(inclLen, o + 8);
    c.writeUInt32LE(origLen, o + 12);
    o += PCAP.RECORD_HEADER_BYTES;
    let left = inclLen;
    if (prefix !== undefined) {
      const n = Math.min(prefix.length, left);
      c.set(n === prefix.length ? prefix : prefix.subarray(0, n), o);
      o += n;
      left -= n;
    }
    if (left > 0) {
      c.set(left === data.length ? data : data.subarray(0, left), o);
      o += left;
    }
    this.used = o;
    this.counters.add('records');
    this.counters.add('bytes', inclLen);
    if (inclLen < origLen) this.counters.add('truncated');
    this.scheduleFlush();
  }

  /** Writes what is buffered, ends the stream and waits until the file has it all. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.flush();
    const sink = this.sink;
    this.closing = new Promise<void>((resolve) => {
      if (sink.destroyed || sink.writableFinished) {
        resolve();
        return;
      }
      sink.end(() => resolve());
    });
    return this.closing;
  }

  /** Hands the buffered records to the stream now (normally once per event-loop turn). */
  flush(): void {
    if (this.used === 0 || this.failed) {
      this.used = 0;
      return;
    }
    if (this.used * 2 < this.chunk.length) {
      // A light turn: copy the few records out and keep the chunk for the next ones.
      this.sink.write(Buffer.from(this.chunk.subarray(0, this.used)));
    } else {
      // A full chunk goes to the stream as is; a fresh one takes the next records.
      this.sink.write(this.chunk.subarray(0, this.used));
      this.chunk = Buffer.allocUnsafe(this.chunkBytes);
    }
    this.used = 0;
  }

  private startChunk(need: number): void {
    this.flush();
    if (need > this.chunk.length) this.chunk = Buffer.allocUnsafe(Math.max(need, this.chunkBytes));
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.clock.defer(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private writeGlobalHeader(): void {
    const c = this.chunk;
    c.writeUInt32LE(PCAP.MAGIC_NANOSECONDS, 0);
    c.writeUInt16LE(PCAP.VERSION_MAJOR, 4);
    c.writeUInt16LE(PCAP.VERSION_MINOR, 6);
    c.writeInt32LE(0, 8); // thiszone: timestamps are UTC
    c.writeUInt32LE(0, 12); // sigfigs
    c.writeUInt32LE(this.snaplen, 16);
    c.writeUInt32LE(this.linkType, 20);
    this.used = PCAP.GLOBAL_HEADER_BYTES;
    this.scheduleFlush();
  }
}

/**
 * A NetBackend that records every frame crossing it (both directions) before passing it on.
 * The counters are the inner backend's; the capture keeps its own.
 */
export class CapturingBackend implements NetBackend {
  onFrame: (frame: Uint8Array) => void = () => {};

  constructor(
    readonly inner: NetBackend,
    readonly capture: FrameCapture & { close?: () => Promise<void> },
    private readonly options: { closeCapture?: boolean } = {},
  ) {
    inner.onFrame = (frame) => {
      capture.capture(frame, 'rx');
      this.onFrame(frame);
    };
  }

  get name(): string {
    return this.inner.name;
  }

  get counters(): NetBackend['counters'] {
    return this.inner.counters;
  }

  send(frame: Uint8Array): void {
    this.capture.capture(frame, 'tx');
    this.inner.send(frame);
  }

  pause(): void {
    this.inner.pause();
  }

  resume(): void {
    this.inner.resume();
  }

  async close(): Promise<void> {
    await this.inner.close();
    if (this.options.closeCapture !== false && this.capture.close !== undefined) await this.capture.close();
  }
}

/**
 * TLP capture, link type USER0 (147). Each record is a 4-byte tlpwire pseudo-header —
 * version (1), direction (0 sent by this process, 1 received), two reserved zero bytes — then
 * the TLP exactly as on the wire: header DWs big-endian, payload, digest when TD is set
 * (docs/PROTOCOL.md, "TLP capture").
 */
export const TLP_CAPTURE_VERSION = 1;
export const TLP_CAPTURE_HEADER_BYTES = 4;
export type TlpDirection = 'sent' | 'received';

export class TlpCapture {
  private readonly sentHeader = Uint8Array.of(TLP_CAPTURE_VERSION, 0, 0, 0);
  private readonly receivedHeader = Uint8Array.of(TLP_CAPTURE_VERSION, 1, 0, 0);

  constructor(readonly writer: PcapWriter) {
    if (writer.linkType !== LINKTYPE.USER0) {
      throw new TlpwireError('ERR_USAGE', `pcap: a TLP capture needs link type USER0 (${LINKTYPE.USER0}), not ${writer.linkType}`);
    }
  }

  static async open(path: string, opts: Omit<PcapWriterOptions, 'linkType'>): Promise<TlpCapture> {
    return new TlpCapture(await PcapWriter.open(path, { ...opts, linkType: LINKTYPE.USER0 }));
  }

  capture(tlp: Uint8Array, direction: TlpDirection): void {
    this.writer.writeRecord(direction === 'sent' ? this.sentHeader : this.receivedHeader, tlp);
  }

  get counters(): Counters {
    return this.writer.counters;
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}
