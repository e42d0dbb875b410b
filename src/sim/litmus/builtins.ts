/**
 * The built-in litmus tests of `tlpwire litmus`, written against the same API as a user's test.
 * Names read writer-barrier then reader-barrier: `MP-h2d+dma_wmb+rmb` is message passing host →
 * device, the host's `dma_wmb` between its stores, the device's `rmb` between its reads; `none`
 * is no barrier.
 *
 * Each test's `expect` restates the table "Built-in tests" in docs/MEMORY-MODEL.md (a test
 * checks that the two agree); the reasoning behind each cell is in that document.
 */
import { TlpwireError } from '../../core/index.js';
import type { CpuBarrierKind, DeviceBarrierKind, MemoryPlatform } from '../../memory/index.js';
import { PLATFORM_PAIRS, type LitmusDevice, type LitmusHost, type LitmusObservation, type LitmusTest, type PlatformPair } from './api.js';

type HostBarrier = CpuBarrierKind | 'none';
type DeviceBarrier = DeviceBarrierKind | 'none';

/** The expectation on each platform pair, from a rule over (host, device). */
function table(rule: (host: MemoryPlatform, device: MemoryPlatform) => LitmusObservation): Record<PlatformPair, LitmusObservation> {
  const out = {} as Record<PlatformPair, LitmusObservation>;
  for (const pair of PLATFORM_PAIRS) {
    const [h, d] = pair.split('/') as [MemoryPlatform, MemoryPlatform];
    out[pair] = rule(h, d);
  }
  return out;
}

const never = (ordered: boolean): LitmusObservation => (ordered ? 'Never' : 'Sometimes');

/** Host barriers that order stores for the device on a weak host (I/O write barriers). */
const HOST_IO_WMB: readonly HostBarrier[] = ['dma_wmb', 'wmb', 'mb'];
/** Host barriers that order loads against device writes on a weak host (I/O read barriers). */
const HOST_IO_RMB: readonly HostBarrier[] = ['dma_rmb', 'rmb', 'mb'];

// ---- MP host → device: the driver publishes a buffer, the device finds it -----------------------

/** Data and flag on different pages: no read-ahead covers one from the other. */
const MP_MEMORY = { data: 0x1000, flag: 0x2000 } as const;
const MP_CONDITION = 'flag=1 /\\ data=0';
/** The device's polls of the flag, and the longest pause between two. */
const DEVICE_POLLS = 8;
const DEVICE_POLL_INTERVAL_NS = 300;
const mpBad = (s: Readonly<Record<string, number | undefined>>): boolean => s.flag === 1 && s.data === 0;

function mpHostToDevice(hb: HostBarrier, rmb: boolean): LitmusTest {
  return {
    name: `MP-h2d+${hb}+${rmb ? 'rmb' : 'none'}`,
    description: `host: W data=1; ${hb}; W flag=1 | device polls: R flag; ${rmb ? 'rmb' : 'none'}; R data (both reads issued at once)`,
    memory: MP_MEMORY,
    observed: ['flag', 'data'],
    start: { host: 2_000, device: 1_000 },
    host: (h: LitmusHost) => {
      h.write('data', 1);
      h.barrier(hb);
      h.write('flag', 1);
    },
    device: async (d: LitmusDevice) => {
      // The device polls, as it polls avail.idx. In each poll neither read waits for the other:
      // only the barrier keeps the data read after the flag read.
      for (let poll = 1; ; poll++) {
        const flagRead = d.read('flag');
        if (rmb) void d.barrier('rmb');
        const dataRead = d.read('data');
        const flag = await flagRead;
        d.set('flag', flag);
        d.set('data', await dataRead);
        if (flag === 1 || poll === DEVICE_POLLS) return;
        await d.delay(d.random(DEVICE_POLL_INTERVAL_NS));
      }
    },
    condition: mpBad,
    conditionText: MP_CONDITION,
    expect: table((host, device) => never((host === 'tso' || HOST_IO_WMB.includes(hb)) && (device === 'tso' || rmb))),
  };
}

/** The device awaits the flag before it reads data (virtio's pop); data right after the flag. */
function mpHostToDeviceAwait(rmb: boolean): LitmusTest {
  return {
    name: `MP-h2d-await+dma_wmb+${rmb ? 'rmb' : 'none'}`,
    description: `host: W data=1; dma_wmb; W flag=1 | device: poll R flag until 1; ${rmb ? 'rmb' : 'none'}; R data (data 4 bytes after flag: a read-ahead covers it)`,
    memory: { flag: 0x3000, data: 0x3004 },
    observed: ['flag', 'data'],
    start: { host: 2_000, device: 1_000 },
    host: (h: LitmusHost) => {
      h.write('data', 1);
      h.barrier('dma_wmb');
      h.write('flag', 1);
    },
    device: async (d: LitmusDevice) => {
      // Poll the flag until it is set (a read-ahead may go with each poll), then read data.
      for (let poll = 1; ; poll++) {
        const flag = await d.read('flag');
        d.set('flag', flag);
        if (flag === 1 || poll === DEVICE_POLLS) break;
        await d.delay(d.random(DEVICE_POLL_INTERVAL_NS));
      }
      if (rmb) await d.barrier('rmb');
      d.set('data', await d.read('data'));
    },
    condition: mpBad,
    conditionText: MP_CONDITION,
    expect: table((_host, device) => never(device === 'tso' || rmb)),
  };
}

// ---- MP device → host: the device completes a buffer, the driver finds it -----------------------

/** The host polls flag (then data) a few times, as a driver's poll loop does; the last poll counts. */
async function pollFlagThenData(h: LitmusHost, b: HostBarrier, polls: number, intervalNs: number): Promise<void> {
  for (let poll = 1; ; poll++) {
    const flag = h.read('flag');
    h.barrier(b);
    const data = h.read('data');
    h.set('flag', flag);
    h.set('data', data);
    if (flag === 1 || poll === polls) return;
    await h.delay(h.random(intervalNs));
  }
}

function mpDeviceToHost(wmb: boolean, hb: HostBarrier): LitmusTest {
  return {
    name: `MP-d2h+${wmb ? 'wmb' : 'none'}+${hb}`,
    description: `device: W data=1; ${wmb ? 'wmb' : 'none'}; W flag=1 | host: poll R flag; ${hb}; R data`,
    memory: MP_MEMORY,
    observed: ['flag', 'data'],
    start: { host: 2_000, device: 500 },
    device: (d: LitmusDevice) => {
      d.write('data', 1);
      if (wmb) void d.barrier('wmb');
      d.write('flag', 1);
    },
    host: async (h: LitmusHost) => {
      await h.delay(500);
      await pollFlagThenData(h, hb, 8, 400);
    },
    condition: mpBad,
    conditionText: MP_CONDITION,
    expect: table((host, device) => never((device === 'tso' || wmb) && (host === 'tso' || HOST_IO_RMB.includes(hb)))),
  };
}

function mpDeviceToHostRelaxed(): LitmusTest {
  return {
    name: 'MP-d2h-RO+wmb+dma_rmb',
    description: 'device: W data=1; wmb; W flag=1 with Relaxed Ordering | host: poll R flag; dma_rmb; R data (the fabric may let the RO flag pass the data)',
    memory: MP_MEMORY,
    observed: ['flag', 'data'],
    start: { host: 1_500, device: 500 },
    device: (d: LitmusDevice) => {
      d.write('data', 1);
      void d.barrier('wmb');
      d.write('flag', 1, { relaxedOrdering: true });
    },
    host: async (h: LitmusHost) => {
      await h.delay(300);
      await pollFlagThenData(h, 'dma_rmb', 10, 300);
    },
    condition: mpBad,
    conditionText: MP_CONDITION,
    expect: 'Sometimes',
  };
}

function mpDeviceToHostMsix(wmb: boolean, hb: HostBarrier): LitmusTest {
  return {
    name: `MP-d2h-msix+${wmb ? 'wmb' : 'none'}+${hb}`,
    description: `device: W data=1; ${wmb ? 'wmb' : 'none'}; MSI-X | host handler: ${hb}; R data`,
    memory: { data: 0x1000 },
    observed: ['data'],
    start: { host: 0, device: 500 },
    host: (h: LitmusHost) => {
      h.onInterrupt(() => {
        h.barrier(hb);
        h.set('data', h.read('data'));
      });
    },
    device: (d: LitmusDevice) => {
      d.write('data', 1);
      if (wmb) void d.barrier('wmb');
      d.interrupt(0);
    },
    condition: (s) => s.data === 0,
    conditionText: 'data=0',
    // Taking the interrupt orders the handler's loads after the MSI-X: only the device's order matters.
    expect: table((_host, device) => never(device === 'tso' || wmb)),
  };
}

// ---- SB: notification suppression with EVENT_IDX ----------------------------------------------

function sbNotify(hb: HostBarrier, db: DeviceBarrier): LitmusTest {
  return {
    name: `SB-notify+${hb}+${db}`,
    description: `host: W avail_idx=1; ${hb}; R avail_event | device: W avail_event=1; ${db}; R avail_idx (both 0: the kick is skipped and the device sleeps)`,
    memory: { avail_idx: 0x1000, avail_event: 0x2000 },
    observed: ['event', 'idx'],
    start: { host: 1_500, device: 1_500 },
    host: (h: LitmusHost) => {
      h.write('avail_idx', 1);
      h.barrier(hb);
      h.set('event', h.read('avail_event'));
    },
    device: async (d: LitmusDevice) => {
      d.write('avail_event', 1);
      await d.barrier(db);
      d.set('idx', await d.read('avail_idx'));
    },
    condition: (s) => s.event === 0 && s.idx === 0,
    conditionText: 'event=0 /\\ idx=0',
    expect: table((host, device) =>
      never((hb === 'mb' || (host === 'tso' && (hb === 'smp_mb' || hb === 'virt_mb'))) && (db === 'mb' || (device === 'tso' && db === 'virt_mb'))),
    ),
  };
}

// ---- MMIO -------------------------------------------------------------------------------------

function mmioReadFlush(drain: boolean, read: 'readl' | 'readl_relaxed'): LitmusTest {
  return {
    name: `MMIO-read-flush+${drain ? 'drain' : 'none'}+${read}`,
    description: `device: W data=1; ${drain ? 'drain writes' : 'none'}; STATUS:=1 | host: ${read}(STATUS); R data`,
    memory: { data: 0x1000 },
    registers: ['STATUS'],
    observed: ['status', 'data'],
    start: { host: 1_500, device: 800 },
    device: (d: LitmusDevice) => {
      d.write('data', 1);
      if (drain) d.drainWrites();
      d.setRegister('STATUS', 1);
    },
    host: async (h: LitmusHost) => {
      h.set('status', await (read === 'readl' ? h.readl('STATUS') : h.readl_relaxed('STATUS')));
      h.set('data', h.read('data'));
    },
    condition: (s) => s.status === 1 && s.data === 0,
    conditionText: 'status=1 /\\ data=0',
    // The completion cannot pass posted writes already on the link; readl_relaxed has no read
    // barrier after it, so a weak host's load of data may still be stale.
    expect: table((host) => never(drain && (host === 'tso' || read === 'readl'))),
  };
}

function mmioDoorbell(write: 'writel' | 'writel_relaxed'): LitmusTest {
  return {
    name: `MMIO-doorbell+${write}`,
    description: `host: W data=1; ${write}(DOORBELL) | device: on DOORBELL, R data`,
    memory: { data: 0x1000 },
    registers: ['DOORBELL'],
    observed: ['data'],
    start: { host: 500, device: 0 },
    host: (h: LitmusHost) => {
      h.write('data', 1);
      if (write === 'writel') h.writel('DOORBELL', 0);
      else h.writel_relaxed('DOORBELL', 0);
    },
    device: (d: LitmusDevice) => {
      d.onRegisterWrite('DOORBELL', async () => {
        d.set('data', await d.read('data'));
      });
    },
    condition: (s) => s.data === 0,
    conditionText: 'data=0',
    expect: table((host) => never(host === 'tso' || write === 'writel')),
  };
}

function build(): LitmusTest[] {
  const tests: LitmusTest[] = [];
  for (const hb of ['none', 'smp_wmb', 'virt_wmb', 'dma_wmb', 'wmb'] as const) {
    for (const rmb of [false, true]) tests.push(mpHostToDevice(hb, rmb));
  }
  for (const rmb of [false, true]) tests.push(mpHostToDeviceAwait(rmb));
  for (const wmb of [false, true]) {
    for (const hb of ['none', 'smp_rmb', 'virt_rmb', 'dma_rmb', 'rmb'] as const) tests.push(mpDeviceToHost(wmb, hb));
  }
  tests.push(mpDeviceToHostRelaxed());
  for (const wmb of [false, true]) {
    for (const hb of ['none', 'dma_rmb'] as const) tests.push(mpDeviceToHostMsix(wmb, hb));
  }
  for (const hb of ['none', 'smp_mb', 'virt_mb', 'dma_wmb', 'mb'] as const) {
    for (const db of ['none', 'wmb', 'virt_mb', 'mb'] as const) tests.push(sbNotify(hb, db));
  }
  for (const drain of [false, true]) {
    for (const read of ['readl', 'readl_relaxed'] as const) tests.push(mmioReadFlush(drain, read));
  }
  for (const write of ['writel', 'writel_relaxed'] as const) tests.push(mmioDoorbell(write));
  return tests;
}

/** Every built-in test, in the order `tlpwire litmus` runs them. */
export const BUILTIN_LITMUS_TESTS: readonly LitmusTest[] = Object.freeze(build());

/** `*` matches any run of characters; everything else is literal. */
function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${body}$`);
}

/**
 * The tests named by `patterns` (exact names, or globs with `*`), in the order of `tests`,
 * each once. ERR_USAGE for a pattern that names no test.
 */
export function selectLitmusTests(tests: readonly LitmusTest[], patterns: readonly string[]): LitmusTest[] {
  if (patterns.length === 0) return [...tests];
  const chosen = new Set<LitmusTest>();
  for (const p of patterns) {
    const re = globToRegExp(p);
    const hits = tests.filter((t) => re.test(t.name));
    if (hits.length === 0) {
      const hint = tests.filter((t) => t.name.toLowerCase().startsWith(p.toLowerCase().split(/[+*]/)[0] ?? '')).slice(0, 3);
      const suggestion = hint.length > 0 ? ` (did you mean ${hint.map((t) => t.name).join(', ')}?)` : ' (tlpwire litmus --list shows them)';
      throw new TlpwireError('ERR_USAGE', `no litmus test named ${JSON.stringify(p)}${suggestion}`);
    }
    for (const h of hits) chosen.add(h);
  }
  return tests.filter((t) => chosen.has(t));
}
