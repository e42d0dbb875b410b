/**
 * The baseline every throughput figure is divided by: two Node processes on loopback, one
 * sending 256-byte records (the size of an MPS-256 payload) packed many to a socket write, the
 * other parsing the length prefixes and counting bytes. Nothing of tlpwire is involved.
 *
 * The pair stays up for the whole benchmark and moves one pass whenever asked, so that a pass of
 * the baseline can be run right before and right after each DMA pass (bench/run.ts): the machine
 * this runs on changes speed by up to 2× within seconds, and only a baseline measured next to a
 * DMA pass says what that pass was worth.
 *
 * Run as peers (RawSocketPair starts them): `node --import tsx bench/raw-socket.ts sink` and
 * `… source PORT`; both read pass sizes (bytes, one per line) on stdin, and exit when it closes.
 */
import { createServer, connect, type Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { peerNodeArgs } from './dist.js';

const RECORD = 256;
const BATCH_RECORDS = 256; // 64 KiB per write
/** Pass sizes are whole batches. */
export const RAW_PASS_UNIT = RECORD * BATCH_RECORDS;

/**
 * A sink and a source, each in a child process of its own (so that neither shares a heap with the
 * benchmark's root complex and its host RAM), over one connection. This process only tells them
 * when to move a pass. The first pass is the warm-up (a fresh process and connection: what a
 * one-shot measurement sees).
 */
export class RawSocketPair {
  private constructor(
    private readonly sink: ChildProcess,
    private readonly source: ChildProcess,
    private readonly sinkLines: AsyncIterator<string>,
  ) {}

  static async start(): Promise<RawSocketPair> {
    const script = fileURLToPath(import.meta.url);
    const sink = spawn(process.execPath, [...peerNodeArgs(), script, 'sink'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const sinkLines = createInterface({ input: sink.stdout! })[Symbol.asyncIterator]();
    const port = Number(await nextLine(sinkLines, 'its port'));
    const source = spawn(process.execPath, [...peerNodeArgs(), script, 'source', String(port)], { stdio: ['pipe', 'inherit', 'inherit'] });
    const pair = new RawSocketPair(sink, source, sinkLines);
    try {
      await nextLine(sinkLines, 'the connection');
    } catch (e) {
      pair.close();
      throw e;
    }
    return pair;
  }

  /** Moves `bytes` (a multiple of RAW_PASS_UNIT) and returns the payload bytes per second, timed at the sink from the pass's first byte. */
  async pass(bytes: number): Promise<number> {
    if (bytes % RAW_PASS_UNIT !== 0) throw new RangeError(`a raw pass is a multiple of ${RAW_PASS_UNIT} bytes`);
    this.sink.stdin!.write(`${bytes}\n`);
    await nextLine(this.sinkLines, 'the pass to be armed');
    this.source.stdin!.write(`${bytes}\n`);
    return Number(await nextLine(this.sinkLines, 'the pass'));
  }

  close(): void {
    this.source.stdin!.end();
    this.sink.stdin!.end();
    this.source.kill();
    this.sink.kill();
  }
}

async function nextLine(lines: AsyncIterator<string>, what: string): Promise<string> {
  const next = await lines.next();
  if (next.done === true) throw new Error(`the raw baseline's sink exited while waiting for ${what}`);
  return next.value;
}

/**
 * The sink: prints its port, then "connected"; for each pass size on stdin it prints "armed",
 * counts that many payload bytes (parsing every length prefix), and prints their bytes/s.
 */
async function runSink(): Promise<void> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
  const sock = await new Promise<Socket>((resolve) => server.once('connection', resolve));
  server.close();
  process.stdout.write('connected\n');
  let received = 0;
  let pending = 0; // bytes of the current record still to skip
  let header: number[] = [];
  let passStart = 0n;
  let waiter: { until: number; bytes: number } | undefined;
  sock.on('data', (chunk: Buffer) => {
    if (passStart === 0n) passStart = process.hrtime.bigint();
    let i = 0;
    while (i < chunk.length) {
      if (pending > 0) {
        const take = Math.min(pending, chunk.length - i);
        pending -= take;
        received += take;
        i += take;
        continue;
      }
      header.push(chunk[i]!);
      i++;
      if (header.length === 4) {
        pending = ((header[0]! << 24) | (header[1]! << 16) | (header[2]! << 8) | header[3]!) >>> 0;
        header = [];
      }
    }
    if (waiter !== undefined && received >= waiter.until) {
      process.stdout.write(`${waiter.bytes / (Number(process.hrtime.bigint() - passStart) / 1e9)}\n`);
      waiter = undefined;
    }
  });
  for await (const line of createInterface({ input: process.stdin })) {
    const bytes = Number(line);
    passStart = 0n;
    waiter = { until: received + bytes, bytes };
    process.stdout.write('armed\n');
  }
  sock.destroy();
}

async function runSource(port: number): Promise<void> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const batch = Buffer.alloc(BATCH_RECORDS * (RECORD + 4));
  for (let k = 0; k < BATCH_RECORDS; k++) batch.writeUInt32BE(RECORD, k * (RECORD + 4));
  for await (const line of createInterface({ input: process.stdin })) {
    const total = Number(line);
    for (let sent = 0; sent < total; sent += BATCH_RECORDS * RECORD) {
      if (!sock.write(batch)) await new Promise<void>((r) => sock.once('drain', () => r()));
    }
  }
  sock.end();
}

if (process.argv[2] === 'source') {
  await runSource(Number(process.argv[3]));
} else if (process.argv[2] === 'sink') {
  await runSink();
}
