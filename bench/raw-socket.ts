/**
 * The baseline every throughput figure is divided by: two Node processes on loopback, one
 * sending 256-byte records (the size of an MPS-256 payload) packed many to a socket write, the
 * other parsing the length prefixes and counting bytes. Nothing of tlpwire is involved.
 *
 * Run as a peer: `node --import tsx bench/raw-socket.ts sink PORT_FILE` / `source PORT BYTES`.
 */
import { createServer, connect, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { peerNodeArgs } from './dist.js';

const RECORD = 256;
const BATCH_RECORDS = 256; // 64 KiB per write

export interface RawResult {
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
}

/**
 * Runs a sink in this process and a source in a child process, over one connection: a warm-up
 * pass of `passBytes`, then `passes` timed passes of `passBytes` each, as the DMA passes are
 * measured (bench/dma-peer.ts). Returns the median pass's payload bytes/s, every pass, and the
 * warm-up pass's rate (a fresh process and connection: what a one-shot measurement sees).
 */
export async function measureRawSocket(passBytes: number, passes = 3): Promise<RawResult & { passRates: number[]; coldRate: number }> {
  const server = createServer();
  let received = 0;
  let start = 0n; // the first byte
  const marks: bigint[] = []; // when the warm-up and each timed pass ended
  const totalBytes = passBytes * (passes + 1);
  const done = new Promise<void>((resolve) => {
    server.on('connection', (sock: Socket) => {
      let pending = 0; // bytes of the current record still to skip
      let header: number[] = [];
      sock.on('data', (chunk: Buffer) => {
        if (start === 0n) start = process.hrtime.bigint();
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
        while (marks.length <= passes && received >= passBytes * (marks.length + 1)) marks.push(process.hrtime.bigint());
        if (received >= totalBytes) resolve();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const child = spawn(process.execPath, [...peerNodeArgs(), fileURLToPath(import.meta.url), 'source', String(port), String(totalBytes)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await done;
  child.kill();
  server.close();
  const passRates: number[] = [];
  for (let k = 1; k <= passes; k++) passRates.push(passBytes / (Number(marks[k]! - marks[k - 1]!) / 1e9));
  const sorted = [...passRates].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1]!;
  const coldRate = passBytes / (Number(marks[0]! - start) / 1e9);
  return { bytes: passBytes, seconds: passBytes / median, bytesPerSecond: median, passRates, coldRate };
}

async function runSource(port: number, totalBytes: number): Promise<void> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const batch = Buffer.alloc(BATCH_RECORDS * (RECORD + 4));
  for (let k = 0; k < BATCH_RECORDS; k++) batch.writeUInt32BE(RECORD, k * (RECORD + 4));
  let sent = 0;
  while (sent < totalBytes) {
    if (!sock.write(batch)) await new Promise<void>((r) => sock.once('drain', () => r()));
    sent += BATCH_RECORDS * RECORD;
  }
  sock.end();
}

if (process.argv[2] === 'source') {
  await runSource(Number(process.argv[3]), Number(process.argv[4]));
}
