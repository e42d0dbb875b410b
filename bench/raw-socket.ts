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

const RECORD = 256;
const BATCH_RECORDS = 256; // 64 KiB per write

export interface RawResult {
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
}

/** Runs a sink in this process and a source in a child process; returns payload bytes/s. */
export async function measureRawSocket(totalBytes: number): Promise<RawResult> {
  const server = createServer();
  let received = 0;
  let start = 0n;
  const done = new Promise<bigint>((resolve) => {
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
        if (received >= totalBytes) resolve(process.hrtime.bigint());
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'source', String(port), String(totalBytes)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const end = await done;
  child.kill();
  server.close();
  const seconds = Number(end - start) / 1e9;
  return { bytes: received, seconds, bytesPerSecond: received / seconds };
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
