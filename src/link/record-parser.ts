/**
 * Splits a byte stream (TCP, Unix socket) into records of a 4-byte big-endian length followed by
 * that many bytes. An explicit state machine: bytes arrive in chunks cut anywhere, including in
 * the middle of a length prefix.
 *
 * A record that lies wholly inside one chunk is delivered as a view of that chunk (no copy). A
 * record split across chunks is assembled into a buffer of its own — or, when the owner takes
 * parts (`onRecordParts`), delivered as the views of its pieces, in order, without a copy: with
 * records about as large as a socket read, nearly every record is split, and copying them all
 * doubled the receive side's memory traffic. Chunks from node:net are never reused by Node, so
 * views stay valid for as long as the receiver keeps them.
 *
 * With `assembly` 'reused' (for chunks that the socket overwrites with the next read, node:net
 * `onread`) the receiver keeps nothing it is given: a record split across chunks is then
 * assembled in one buffer of the parser's own, used again for the next such record.
 */
import { TlpwireError } from '../core/index.js';

export const RECORD_PREFIX_BYTES = 4;

/** Builds the 4-byte big-endian length prefix for a record of `length` bytes. */
export function recordPrefix(length: number, out: Uint8Array = new Uint8Array(RECORD_PREFIX_BYTES), offset = 0): Uint8Array {
  out[offset] = length >>> 24;
  out[offset + 1] = (length >>> 16) & 0xff;
  out[offset + 2] = (length >>> 8) & 0xff;
  out[offset + 3] = length & 0xff;
  return out;
}

const enum State {
  /** Reading the length prefix; `prefixHave` bytes of it so far. */
  Prefix,
  /** Assembling a record that started in an earlier chunk. */
  Body,
  /** Failed or stopped: ignores everything. */
  Dead,
}

export class RecordParser {
  private state = State.Prefix;
  private prefixHave = 0;
  private prefixValue = 0;
  private body: Uint8Array = new Uint8Array(0);
  private bodyHave = 0;
  /** Parts mode: the pieces of the record being received, and its length. */
  private parts: Uint8Array[] = [];
  private bodyLength = 0;
  /** Stream offset of the next byte, for error reports. */
  private streamOffset = 0;

  /** 'reused' assembly: the buffer split records are assembled in (grown as records need). */
  private assemblyBuffer: Uint8Array | undefined;

  constructor(
    private readonly maxRecordBytes: number,
    private readonly onRecord: (record: Uint8Array) => void,
    private readonly onError: (error: TlpwireError) => void,
    private readonly onRecordParts?: (parts: readonly Uint8Array[]) => void,
    assembly: 'fresh' | 'reused' = 'fresh',
  ) {
    if (assembly === 'reused') {
      // Parts would be views of chunks that the next read overwrites.
      if (onRecordParts !== undefined) throw new TlpwireError('ERR_USAGE', 'a parser that reuses its assembly buffer delivers whole records only');
      this.assemblyBuffer = new Uint8Array(0);
    }
  }

  /** Stops delivering records (the owner closed the stream). */
  stop(): void {
    this.state = State.Dead;
  }

  get stopped(): boolean {
    return this.state === State.Dead;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n && this.state !== State.Dead) {
      if (this.state === State.Prefix) {
        if (this.prefixHave === 0 && n - i >= RECORD_PREFIX_BYTES) {
          // Fast path: the whole prefix is here.
          this.prefixValue = ((chunk[i]! << 24) | (chunk[i + 1]! << 16) | (chunk[i + 2]! << 8) | chunk[i + 3]!) >>> 0;
          i += RECORD_PREFIX_BYTES;
        } else {
          this.prefixValue = ((this.prefixValue << 8) | chunk[i]!) >>> 0;
          this.prefixHave++;
          i++;
          if (this.prefixHave < RECORD_PREFIX_BYTES) continue;
        }
        this.prefixHave = 0;
        const len = this.prefixValue;
        this.prefixValue = 0;
        const at = this.streamOffset + i - RECORD_PREFIX_BYTES;
        if (len > this.maxRecordBytes) {
          this.state = State.Dead;
          this.onError(
            new TlpwireError('ERR_LINK_PROTOCOL', `record of ${len} bytes exceeds the ${this.maxRecordBytes}-byte limit (at stream byte ${at})`, { offset: at }),
          );
          return;
        }
        if (n - i >= len) {
          const rec = chunk.subarray(i, i + len);
          i += len;
          this.onRecord(rec);
        } else {
          if (this.onRecordParts !== undefined) {
            this.parts = [chunk.subarray(i)];
            this.bodyLength = len;
          } else {
            this.body = this.assemblyFor(len);
            this.body.set(chunk.subarray(i), 0);
          }
          this.bodyHave = n - i;
          i = n;
          this.state = State.Body;
        }
      } else if (this.onRecordParts !== undefined) {
        const take = Math.min(this.bodyLength - this.bodyHave, n - i);
        this.parts.push(i === 0 && take === n ? chunk : chunk.subarray(i, i + take));
        this.bodyHave += take;
        i += take;
        if (this.bodyHave === this.bodyLength) {
          const parts = this.parts;
          this.parts = [];
          this.bodyHave = 0;
          this.state = State.Prefix;
          this.onRecordParts(parts);
        }
      } else {
        const take = Math.min(this.body.length - this.bodyHave, n - i);
        this.body.set(chunk.subarray(i, i + take), this.bodyHave);
        this.bodyHave += take;
        i += take;
        if (this.bodyHave === this.body.length) {
          const rec = this.body;
          this.body = new Uint8Array(0);
          this.bodyHave = 0;
          this.state = State.Prefix;
          this.onRecord(rec);
        }
      }
    }
    this.streamOffset += n;
  }

  /** Where a split record of `len` bytes is assembled: a buffer of its own, or the reused one. */
  private assemblyFor(len: number): Uint8Array {
    const a = this.assemblyBuffer;
    if (a === undefined) return new Uint8Array(len);
    if (a.length >= len) return a.subarray(0, len);
    // Grown to the largest record seen (at most maxRecordBytes), then kept.
    const grown = new Uint8Array(Math.min(this.maxRecordBytes, Math.max(len, a.length * 2)));
    this.assemblyBuffer = grown;
    return grown.subarray(0, len);
  }
}
