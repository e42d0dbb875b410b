import { describe, expect, it } from 'vitest';
import { FrameChecker, FrameGenerator, type FrameCheckSummary, NullBackend, prepareChecksumOffload } from '../../src/net/index.js';
import { type NetPair, type PairOptions, DEVICE_MAC, PEER_MAC, makeNetPair, runSim } from './net-harness.js';
import { buildUdp4, buildTcp6, l4ChecksumOk } from './net-packets.js';

interface TrafficResult {
  summary: FrameCheckSummary;
  sent: number;
  pair: NetPair;
  simTimeNs: number;
}

/**
 * Sends `total` test frames through driver → device → loopback → device → driver, keeping at
 * most `window` frames in flight, and checks every frame that comes back.
 */
async function traffic(o: PairOptions & { total: number; window: number; minSize?: number; maxSize?: number; polling?: boolean }): Promise<TrafficResult> {
  const pair = makeNetPair(o);
  const { driver, device, clock, rng } = pair;
  const gen = new FrameGenerator({ dst: PEER_MAC, src: DEVICE_MAC, size: { min: o.minSize ?? 60, max: o.maxSize ?? 1514 }, rng, clock });
  const checker = new FrameChecker({ clock });
  let sent = 0;
  let received = 0;
  let pending: Uint8Array | undefined;
  const pump = (): void => {
    while (sent < o.total && sent - received < o.window) {
      pending ??= gen.next();
      if (!driver.send(pending)) return;
      pending = undefined;
      sent++;
    }
  };
  driver.onFrame = (f) => {
    received++;
    checker.check(f);
    pump();
  };
  driver.onWritable = pump;
  if (o.polling === true) device.setPolling(true);
  driver.start();
  pump();
  await runSim(clock, () => received >= o.total || pair.errors.length > 0 || pair.needsReset.length > 0);
  if (o.polling === true) device.setPolling(false);
  return { summary: checker.finish(sent), sent, pair, simTimeNs: clock.nowNs() };
}

function expectClean(r: TrafficResult, total: number): void {
  const { summary, pair } = r;
  expect(pair.needsReset).toEqual([]);
  expect(pair.errors).toEqual([]);
  expect(r.sent).toBe(total);
  expect(summary.ok).toBe(total);
  expect(summary.errors).toBe(0);
  expect(summary.foreign).toBe(0);
  const dev = pair.device.counters.snapshot();
  const drv = pair.driver.counters.snapshot();
  // nothing dropped or malformed anywhere on the path
  for (const [k, v] of [...Object.entries(dev), ...Object.entries(drv)]) {
    if (/drop|error|bad|broken|needs_reset/.test(k)) expect({ [k]: v }).toEqual({ [k]: 0 });
  }
  expect(pair.backend.counters.get('dropped_queue_full')).toBe(0);
  expect(dev['tx_frames']).toBe(total);
  expect(dev['rx_frames']).toBe(total);
  expect(drv['rx_frames']).toBe(total);
}

describe('virtio-net driver → device → loopback → driver', () => {
  it('carries 100k frames with CRCs intact (MRG_RXBUF, EVENT_IDX, INDIRECT_DESC, reads completing out of order)', async () => {
    const total = 100_000;
    const r = await traffic({ total, window: 512, mrg: true, eventIdx: true, indirect: true, mergeableBufferSize: 1024, readDelayNs: 2000, seed: 7 });
    expectClean(r, total);
    // frames over 1012 bytes needed two buffers
    expect(r.pair.driver.counters.get('rx_merged_frames')).toBeGreaterThan(total / 4);
    expect(r.summary.latencyNs.count).toBe(total);
    expect(r.summary.latencyNs.p99).toBeGreaterThan(0);
  }, 60_000);

  const combos: [boolean, boolean, boolean][] = [];
  for (const mrg of [false, true]) for (const eventIdx of [false, true]) for (const indirect of [false, true]) combos.push([mrg, eventIdx, indirect]);
  it.each(combos)('carries frames cleanly with MRG_RXBUF=%s EVENT_IDX=%s INDIRECT_DESC=%s', async (mrg, eventIdx, indirect) => {
    const total = 6000;
    // a window larger than the rings: the TX ring fills (onWritable) and the device pauses the backend
    const r = await traffic({ total, window: 1000, mrg, eventIdx, indirect, mergeableBufferSize: 512, queueSize: 128, readDelayNs: 500, seed: 3 });
    expectClean(r, total);
    expect(r.pair.driver.counters.get('tx_ring_full')).toBeGreaterThan(0);
    if (mrg) expect(r.pair.device.counters.get('rx_merged_frames')).toBeGreaterThan(0);
  }, 30_000);

  it('works with the device busy-polling its rings (notifications suppressed)', async () => {
    const total = 5000;
    const r = await traffic({ total, window: 300, mrg: false, eventIdx: true, indirect: false, polling: true, readDelayNs: 300, seed: 5 });
    expectClean(r, total);
    // the driver saw the device ask for no kicks: far fewer kicks than frames
    expect(r.pair.device.counters.get('kicks_tx')).toBeLessThan(total / 10);
  }, 30_000);

  it('with one slot per buffer (no header descriptor) and with the header in its own descriptor', async () => {
    for (const sgPerBuffer of [1, 2] as const) {
      const r = await traffic({ total: 2000, window: 200, mrg: false, indirect: false, sgPerBuffer, seed: 11 });
      expectClean(r, 2000);
    }
  });

  it('pauses the backend when the driver posts no buffers fast enough, and drops nothing', async () => {
    // tiny ring and device queue, a big window: the loopback queue absorbs the excess
    const r = await traffic({ total: 3000, window: 600, queueSize: 16, rxQueueFrames: 8, mrg: false, seed: 13 });
    expectClean(r, 3000);
    expect(r.pair.device.counters.get('rx_backend_pauses')).toBeGreaterThan(0);
    expect(r.pair.backend.counters.get('pauses')).toBeGreaterThan(0);
  });

  it('completes NEEDS_CSUM checksums (CSUM negotiated) before the backend sees the frame', async () => {
    const pair = makeNetPair({ csum: true, seed: 21 });
    const { driver, clock } = pair;
    const got: Uint8Array[] = [];
    driver.onFrame = (f) => got.push(f);
    driver.start();
    const n = 200;
    for (let i = 0; i < n; i++) {
      const pkt = i % 2 === 0 ? buildUdp4(pair.rng, 1 + (i % 1400)) : buildTcp6(pair.rng, i % 1300);
      const off = prepareChecksumOffload(pkt);
      expect(off).toBeDefined();
      expect(driver.send(pkt, off)).toBe(true);
      if (i % 50 === 49) await runSim(clock, () => got.length === i + 1);
    }
    await runSim(clock, () => got.length === n);
    expect(got.length).toBe(n);
    for (const f of got) expect(l4ChecksumOk(f)).toBe(true);
    expect(pair.device.counters.get('tx_checksums_completed')).toBe(n);
    expect(pair.driver.counters.get('tx_sw_checksums')).toBe(0);
  });

  it('without CSUM the driver completes the checksum itself', async () => {
    const pair = makeNetPair({ csum: false, seed: 22 });
    const { driver, clock } = pair;
    const got: Uint8Array[] = [];
    driver.onFrame = (f) => got.push(f);
    driver.start();
    for (let i = 0; i < 20; i++) {
      const pkt = buildUdp4(pair.rng, 100 + i);
      expect(driver.send(pkt, prepareChecksumOffload(pkt))).toBe(true);
    }
    await runSim(clock, () => got.length === 20);
    for (const f of got) expect(l4ChecksumOk(f)).toBe(true);
    expect(pair.device.counters.get('tx_checksums_completed')).toBe(0);
    expect(pair.driver.counters.get('tx_sw_checksums')).toBe(20);
  });

  it('the null backend swallows and counts everything', async () => {
    const pair = makeNetPair({ backend: new NullBackend() });
    const { driver, clock } = pair;
    driver.start();
    const gen = new FrameGenerator({ dst: PEER_MAC, src: DEVICE_MAC, size: 200 });
    let sent = 0;
    for (let i = 0; i < 1000; i++) {
      if (!driver.send(gen.next())) {
        await runSim(clock, () => driver.txFreeBuffers > 0 || clock.pending === 0);
        i--;
        continue;
      }
      sent++;
    }
    await runSim(clock, () => pair.backend.counters.get('frames_dropped') === 1000);
    expect(sent).toBe(1000);
    expect(pair.backend.counters.get('frames_dropped')).toBe(1000);
    expect(pair.backend.counters.get('bytes_dropped')).toBe(200_000);
    expect(pair.driver.counters.get('rx_frames')).toBe(0);
  });

  it('link down: the driver drops what it is given, the device drops what the backend brings', async () => {
    const pair = makeNetPair({});
    const { driver, device, clock } = pair;
    let configChanges = 0;
    driver.start();
    const before = device.configVersion;
    device.setLinkUp(false);
    configChanges = device.configVersion - before;
    expect(configChanges).toBe(1);
    expect(device.readConfig(6, 2) & 1).toBe(0);
    driver.setLinkUp(false);
    const gen = new FrameGenerator({ dst: PEER_MAC, src: DEVICE_MAC, size: 100 });
    expect(driver.send(gen.next())).toBe(true);
    expect(driver.counters.get('tx_dropped_link_down')).toBe(1);
    pair.backend.onFrame(gen.next());
    expect(device.counters.get('rx_dropped_link_down')).toBe(1);
    device.setLinkUp(true);
    driver.setLinkUp(true);
    expect(device.readConfig(6, 2) & 1).toBe(1);
    let got = 0;
    driver.onFrame = () => got++;
    expect(driver.send(gen.next())).toBe(true);
    await runSim(clock, () => got === 1);
    expect(got).toBe(1);
  });
});
