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
 * Run as peers (RawSocketPair starts them): `node --import tsx bench/raw-socket.ts source`, then
 * `… sink PORT`; both read pass sizes (bytes, one per line) on stdin, and exit when it closes.
 */
import { createServer, connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { BenchChild } from './child.js';

const RECORD = 256;
const BATCH_RECORDS = 256; // 64 KiB per write
/** Pass sizes are whole batches. */
export const RAW_PASS_UNIT = RECORD * BATCH_RECORDS;

/**
 * A sink and a source, each in a child process of its own (so that neither shares a heap with
 * anything else of the benchmark), over one connection. The sink is the connecting side and reads
 * into one reused buffer (node:net `onread`), as both of tlpwire's DMA processes do. This process
 * only tells them when to move a pass. The first pass is the warm-up (a fresh process and
 * connection: what a one-shot measurement sees). Either child dying fails the pass (or start)
 * with a message, never a hang.
 */
export class RawSocketPair {
  private constructor(
    private readonly sink: BenchChild,
    private readonly source: BenchChild,
  ) {}

  static async start(): Promise<RawSocketPair> {
    const source = BenchChild.spawn("the raw baseline's source", './raw-socket.ts', ['source']);
    let sink: BenchChild | undefined;
    try {
      const port = await source.line('its port');
      sink = BenchChild.spawn("the raw baseline's sink", './raw-socket.ts', ['sink', port]);
      const pair = new RawSocketPair(sink, source);
      await pair.sinkSays('the connection');
      return pair;
    } catch (e) {
      source.kill();
      sink?.kill();
      throw e;
    }
  }

  /** Moves `bytes` (a multiple of RAW_PASS_UNIT) and returns the payload bytes per second, timed at the sink from the pass's first byte. */
  async pass(bytes: number): Promise<number> {
    if (bytes % RAW_PASS_UNIT !== 0) throw new RangeError(`a raw pass is a multiple of ${RAW_PASS_UNIT} bytes`);
    this.sink.send(String(bytes));
    await this.sinkSays('the pass to be armed');
    this.source.send(String(bytes));
    return Number(await this.sinkSays('the pass'));
  }

  close(): void {
    void this.source.end();
    void this.sink.end();
    this.source.kill();
    this.sink.kill();
  }

  /** The sink's next line; the source dying meanwhile fails it too. */
  private sinkSays(what: string): Promise<string> {
    return this.sink.line(what, this.source.died);
  }
}

function fatal(message: string): never {
  process.stderr.write(`raw baseline: ${message}\n`);
  process.exit(1);
}

/** How much one read of the sink may take into its reused buffer (as tlpwire's socket transports). */
const SINK_READ_BYTES = 256 * 1024;

/**
 * The sink: connects to the source at PORT, says "connected"; for each pass size on stdin it says
 * "armed", counts that many payload bytes (parsing every length prefix), and says their bytes/s.
 */
async function runSink(port: number): Promise<void> {
  let received = 0;
  let pending = 0; // bytes of the current record still to skip
  let header = 0; // the length prefix being read, and how many of its bytes were
  let headerBytes = 0;
  let passStart = 0n;
  let waiter: { until: number; bytes: number } | undefined;
  const onRead = (n: number, buf: Uint8Array): boolean => {
    if (passStart === 0n) passStart = process.hrtime.bigint();
    let i = 0;
    while (i < n) {
      if (pending > 0) {
        const take = Math.min(pending, n - i);
        pending -= take;
        received += take;
        i += take;
        continue;
      }
      header = ((header << 8) | buf[i]!) >>> 0;
      i++;
      if (++headerBytes === 4) {
        pending = header;
        header = 0;
        headerBytes = 0;
      }
    }
    if (waiter !== undefined && received >= waiter.until) {
      process.stdout.write(`${waiter.bytes / (Number(process.hrtime.bigint() - passStart) / 1e9)}\n`);
      waiter = undefined;
    }
    return true;
  };
  const sock = connect({ port, host: '127.0.0.1', onread: { buffer: Buffer.allocUnsafeSlow(SINK_READ_BYTES), callback: onRead } });
  sock.on('error', (e) => fatal(`sink: ${e.message}`));
  sock.on('close', () => fatal('sink: the source closed the connection'));
  await new Promise<void>((r) => sock.once('connect', () => r()));
  process.stdout.write('connected\n');
  for await (const line of createInterface({ input: process.stdin })) {
    const bytes = Number(line);
    passStart = 0n;
    waiter = { until: received + bytes, bytes };
    process.stdout.write('armed\n');
  }
  sock.removeAllListeners('close');
  sock.destroy();
}

/** The source: listens, says its port, and sends each pass size read on stdin as records. */
async function runSource(): Promise<void> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
  const sock = await new Promise<Socket>((resolve) => server.once('connection', resolve));
  server.close();
  sock.on('error', (e) => fatal(`source: ${e.message}`));
  sock.on('close', () => fatal('source: the sink closed the connection'));
  const batch = Buffer.alloc(BATCH_RECORDS * (RECORD + 4));
  for (let k = 0; k < BATCH_RECORDS; k++) batch.writeUInt32BE(RECORD, k * (RECORD + 4));
  for await (const line of createInterface({ input: process.stdin })) {
    const total = Number(line);
    for (let sent = 0; sent < total; sent += BATCH_RECORDS * RECORD) {
      if (!sock.write(batch)) await new Promise<void>((r) => sock.once('drain', () => r()));
    }
  }
  sock.removeAllListeners('close');
  sock.end();
}

if (process.argv[2] === 'source') {
  await runSource();
} else if (process.argv[2] === 'sink') {
  await runSink(Number(process.argv[3]));
}
