/**
 * Question: how many frames per second does tlpwire move through a TAP with its addon, compared
 * with the obvious pure-Node way (fs streams / fs.write on the TAP's fd, which go through libuv's
 * thread pool one frame at a time)? Linux, root, and a built addon (npm run build:native).
 *
 *   node --import tsx bench/tap-throughput.ts [FRAMES] [FRAME_BYTES]
 *
 * Reading: the kernel is made to queue FRAMES frames on a paused TAP (UDP datagrams to a static
 * neighbour on the TAP's subnet; txqueuelen raised so none is dropped), then each reader drains
 * the queue and we time it — so the source's speed does not limit the figure.
 * Writing: FRAMES frames to a MAC that is not the interface's (the stack drops them right after
 * counting), timed until the last write completes; rx_packets confirms what the kernel got.
 */
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createReadStream, createWriteStream, readFileSync, write as fsWrite, writeFileSync } from 'node:fs';
import { loadTapAddon, TapBackend, type NativeTap } from '../src/net/index.js';

const FRAMES = Number(process.argv[2] ?? 50_000);
const FRAME_BYTES = Number(process.argv[3] ?? 60);
const REPEAT = Number(process.argv[4] ?? 3); // best of N: the machine is shared and the first run pays for JIT
const NAME = `tlpwb${process.pid % 100000}`;
const NET = '198.19.77';
const PEER_MAC = '02:74:6c:70:77:99';
const addon = loadTapAddon();

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

function stat(name: string): number {
  return Number(readFileSync(`/sys/class/net/${NAME}/statistics/${name}`, 'utf8'));
}

function setup(): void {
  ip('tuntap', 'add', 'dev', NAME, 'mode', 'tap');
  ip('link', 'set', 'dev', NAME, 'txqueuelen', String(FRAMES + 10_000), 'up');
  ip('addr', 'add', `${NET}.1/24`, 'dev', NAME);
  ip('neigh', 'replace', `${NET}.2`, 'lladdr', PEER_MAC, 'dev', NAME, 'nud', 'permanent');
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${NAME}/disable_ipv6`, '1'); // no MLD/RS noise
  } catch {
    // IPv6 may be off already
  }
}

/** Makes the kernel queue `n` frames toward the TAP (nobody reading it yet). */
async function fill(n: number): Promise<void> {
  const sock = createSocket('udp4');
  const payload = Buffer.alloc(Math.max(0, FRAME_BYTES - 42));
  let done = 0;
  await new Promise<void>((resolve) => {
    let sent = 0;
    const pump = (): void => {
      // bounded bursts so libuv's send queue stays small
      for (let i = 0; i < 512 && sent < n; i++, sent++) {
        sock.send(payload, 9, `${NET}.2`, () => {
          if (++done === n) resolve();
        });
      }
      if (sent < n) setImmediate(pump);
    };
    pump();
  });
  sock.close();
  await new Promise((r) => setTimeout(r, 50));
}

async function timeRead(label: string, open: (onFrame: (len: number) => void) => { start(): void; stop(): void }): Promise<number> {
  let best = 0;
  for (let i = 0; i < REPEAT; i++) best = Math.max(best, await timeReadOnce(open));
  console.log(`read  ${label.padEnd(38)} ${(best / 1000).toFixed(0).padStart(6)} kframes/s`);
  return best;
}

async function timeReadOnce(open: (onFrame: (len: number) => void) => { start(): void; stop(): void }): Promise<number> {
  let count = 0;
  let last = 0n;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  // Attach first (a TAP nobody has open drops what the kernel sends it), fill, then drain.
  const reader = open((len) => {
    if (len !== FRAME_BYTES) return; // a stray frame of another size
    last = process.hrtime.bigint();
    if (++count === FRAMES) resolveDone();
  });
  await fill(FRAMES);
  const queued = stat('tx_packets');
  const t0 = process.hrtime.bigint();
  reader.start();
  // Done when all arrived, or nothing arrived for half a second (a frame lost on the way).
  const idle = setInterval(() => {
    if (count > 0 && process.hrtime.bigint() - last > 500_000_000n) resolveDone();
  }, 100);
  await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
  clearInterval(idle);
  const s = Number(last - t0) / 1e9;
  reader.stop();
  if (count < FRAMES) console.log(`  (${count} of ${FRAMES} frames arrived; the kernel queued ${stat('tx_packets') - queued})`);
  await new Promise((r) => setTimeout(r, 100));
  return count / s;
}

async function timeWrite(label: string, writeAll: (frames: Buffer[]) => Promise<void>): Promise<number> {
  let best = 0;
  let seen = 0;
  for (let i = 0; i < REPEAT; i++) {
    const r = await timeWriteOnce(writeAll);
    best = Math.max(best, r.rate);
    seen = r.seen;
  }
  console.log(`write ${label.padEnd(38)} ${(best / 1000).toFixed(0).padStart(6)} kframes/s  (kernel saw ${seen} of ${FRAMES} frames)`);
  return best;
}

async function timeWriteOnce(writeAll: (frames: Buffer[]) => Promise<void>): Promise<{ rate: number; seen: number }> {
  const frame = Buffer.alloc(FRAME_BYTES);
  Buffer.from('02746c707701', 'hex').copy(frame, 0); // not the interface's MAC: dropped after counting
  Buffer.from(PEER_MAC.replaceAll(':', ''), 'hex').copy(frame, 6);
  frame.writeUInt16BE(0x88b5, 12);
  const frames = Array.from({ length: FRAMES }, () => frame);
  const before = stat('rx_packets');
  const t0 = process.hrtime.bigint();
  await writeAll(frames);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  await new Promise((r) => setTimeout(r, 50));
  const seen = stat('rx_packets') - before;
  return { rate: FRAMES / s, seen };
}

function nativeReader(mode: 'slab' | 'array') {
  return (onFrame: (len: number) => void) => {
    const t: NativeTap = new addon.Tap(NAME);
    if (mode === 'slab') {
      const lengths = new Uint32Array(64);
      t.setCallbacks((_b: Buffer, n: number) => {
        for (let i = 0; i < n; i++) onFrame(lengths[i]!);
      }, () => {}, lengths);
    } else {
      t.setCallbacks((bufs: Buffer[]) => {
        for (const b of bufs) onFrame(b.length);
      }, () => {}, null);
    }
    return { start: () => t.startReading(), stop: () => t.close() };
  };
}

function backendReader(onFrame: (len: number) => void) {
  const b = TapBackend.open({ ifname: NAME });
  b.pause();
  b.onFrame = (f) => onFrame(f.length);
  return { start: () => b.resume(), stop: () => void b.close() };
}

function fsStreamReader(onFrame: (len: number) => void) {
  const t = new addon.Tap(NAME);
  t.setNonBlocking(false); // the thread pool blocks in read(2)
  const s = createReadStream('', { fd: t.fd(), autoClose: false, highWaterMark: 65536 });
  s.pause();
  s.on('data', (c) => onFrame((c as Buffer).length));
  s.on('error', () => {});
  return {
    start: () => s.resume(),
    stop: () => {
      s.destroy();
      // A pool thread may still sit in read(2); one more frame lets it return before we close.
      const sock = createSocket('udp4');
      sock.send(Buffer.alloc(1), 9, `${NET}.2`, () => {
        sock.close();
        setTimeout(() => t.close(), 50);
      });
    },
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (creates a TAP)');
  setup();
  console.log(`TAP ${NAME}, ${FRAMES} frames of ${FRAME_BYTES} bytes, node ${process.version}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}`);
  try {
    const rSlab = await timeRead('addon, one Buffer per batch (slab)', nativeReader('slab'));
    const rArray = await timeRead('addon, one Buffer per frame (array)', nativeReader('array'));
    const rBackend = await timeRead('TapBackend (slab + checks + counters)', backendReader);
    const rFs = await timeRead('fs.createReadStream on the fd', fsStreamReader);
    await new Promise((r) => setTimeout(r, 200));

    const w = new addon.Tap(NAME);
    const wOne = await timeWrite('addon write(), one call per frame', async (fr) => {
      for (const f of fr) w.write(f);
    });
    const wMany = await timeWrite('addon writeMany(), 64 per call', async (fr) => {
      for (let i = 0; i < fr.length; i += 64) w.writeMany(fr.slice(i, i + 64));
    });
    w.close();
    const backend = TapBackend.open({ ifname: NAME });
    const wBackend = await timeWrite('TapBackend.send()', async (fr) => {
      for (const f of fr) backend.send(f);
    });
    await backend.close();
    const wf = new addon.Tap(NAME);
    wf.setNonBlocking(false);
    const fd = wf.fd();
    const wFs = await timeWrite('fs.write on the fd, 64 in flight', (fr) =>
      new Promise<void>((resolve) => {
        let next = 0;
        let done = 0;
        const one = (): void => {
          if (next >= fr.length) return;
          const f = fr[next++]!;
          fsWrite(fd, f, () => {
            if (++done === fr.length) resolve();
            else one();
          });
        };
        for (let i = 0; i < 64; i++) one();
      }),
    );
    await timeWrite('fs.createWriteStream on the fd (WRONG)', (fr) =>
      new Promise<void>((resolve) => {
        const s = createWriteStream('', { fd, autoClose: false });
        s.on('error', () => resolve());
        for (const f of fr) s.write(f);
        s.end(() => resolve());
      }),
    );
    wf.close();
    console.log(
      `\nratios vs fs: read slab ${(rSlab / rFs).toFixed(1)}×, array ${(rArray / rFs).toFixed(1)}×, TapBackend ${(rBackend / rFs).toFixed(1)}×;` +
        ` write one ${(wOne / wFs).toFixed(1)}×, many ${(wMany / wFs).toFixed(1)}×, TapBackend ${(wBackend / wFs).toFixed(1)}×`,
    );
    console.log('(a write stream batches buffered chunks into one writev, which a TAP takes as ONE frame: fewer, wrong frames)');
  } finally {
    ip('link', 'del', NAME);
  }
  process.exit(0);
}

void main();
