import { MEMORY_PLATFORMS, type MemoryPlatform } from '../../memory/index.js';
import { BARRIER_SITE_NAMES, type BarrierSite } from '../../virtio/index.js';
import { type StressConfig, type StressFailure, type StressTuning, StressRun } from './stress-run.js';

/** The barrier choice of a platform cell. */
export type MatrixBarriers = 'weak' | 'strict' | 'negotiated';

export interface MatrixCell {
  group: 'platforms' | 'ablation' | 'notifications';
  /** One line: "host weak · device tso · weak barriers", "driver.add.wmb-before-avail-idx removed". */
  label: string;
  config: Omit<StressConfig, 'seed'>;
  barriers?: MatrixBarriers;
  site?: BarrierSite;
  /**
   * What the memory model implies: weak barriers fail unless both platforms are tso; strict and
   * negotiated pass everywhere; removing a site fails iff the stress setup needs it.
   */
  expected: 'pass' | 'fail';
}

/**
 * {host tso, weak} × {device tso, weak} × {weak, strict, negotiated}, then every named site
 * removed alone with everything else strict on weak/weak platforms.
 *
 * - weak: driver virt_* (smp) barriers, device weak (a CPU-built device's smp barriers);
 * - strict: driver dma_* / mb, device strict (the engine's own barriers);
 * - negotiated: the device offers ORDER_PLATFORM (as a real PCI card should) and uses its
 *   strict barriers; the driver picks by Linux's rule (strict iff negotiated).
 */
export function matrixCells(): MatrixCell[] {
  const cells: MatrixCell[] = [];
  for (const host of MEMORY_PLATFORMS) {
    for (const device of MEMORY_PLATFORMS) {
      for (const b of ['weak', 'strict', 'negotiated'] as const) {
        cells.push({
          group: 'platforms',
          label: `host ${host} · device ${device} · ${b === 'negotiated' ? 'negotiated (ORDER_PLATFORM)' : `${b} barriers`}`,
          barriers: b,
          config: platformConfig(host, device, b),
          expected: b === 'weak' && (host === 'weak' || device === 'weak') ? 'fail' : 'pass',
        });
      }
    }
  }
  for (const site of BARRIER_SITE_NAMES) {
    cells.push({
      group: 'ablation',
      label: `${site} removed`,
      site,
      expected: SITES_NEEDED_BY_STRESS.includes(site) ? 'fail' : 'pass',
      config: ablationConfig([site], 'off'),
    });
  }
  // The notification handshakes, which busy-polling switches off: doorbells and interrupts on.
  cells.push({
    group: 'notifications',
    label: 'notifications on · strict barriers',
    expected: 'pass',
    config: ablationConfig([], 'on'),
  });
  for (const site of NOTIFICATION_SITES) {
    cells.push({
      group: 'notifications',
      label: `${site} removed (notifications on)`,
      site,
      expected: SITES_NEEDED_WITH_NOTIFICATIONS.includes(site) ? 'fail' : 'pass',
      config: ablationConfig([site], 'on'),
    });
  }
  return cells;
}

function ablationConfig(disabled: BarrierSite[], notifications: 'off' | 'on'): Omit<StressConfig, 'seed'> {
  return {
    hostPlatform: 'weak',
    devicePlatform: 'weak',
    driverBarriers: 'strict',
    deviceBarriers: 'strict',
    orderPlatform: true,
    disabledBarriers: disabled,
    notifications,
  };
}

function platformConfig(host: MemoryPlatform, device: MemoryPlatform, b: MatrixBarriers): Omit<StressConfig, 'seed'> {
  return {
    hostPlatform: host,
    devicePlatform: device,
    driverBarriers: b === 'negotiated' ? 'auto' : b,
    deviceBarriers: b === 'weak' ? 'weak' : 'strict',
    orderPlatform: b !== 'weak',
    disabledBarriers: [],
    notifications: 'off',
  };
}

/**
 * Why removing a site does not break a busy-polling stress run: its partner or its purpose is
 * absent from that setup. Each claim is checked by the matrix itself: the run count of the site
 * (`siteRuns`, printed next to the reason; "never runs" is asserted to be 0 by the tests), the
 * doorbell and interrupt counts (0 while busy-polling), and the notification rows, where the
 * handshakes are on and removing the site does lose a wakeup.
 */
export const SITE_NOT_NEEDED: Readonly<Record<BarrierSite, string>> = {
  'driver.add.wmb-before-avail-idx':
    'needed: without it the device can see avail.idx before the descriptors and buffer it publishes (a stale descriptor or frame)',
  'driver.kick.mb-before-event-check':
    'it orders the avail.idx store before the driver reads used.flags / avail_event to decide on a doorbell (store buffering against device.enable-notify.mb…). The busy-polling device has NO_NOTIFY set and never sleeps, so a wrong decision loses no wakeup, and driver.add.wmb alone orders the descriptors before avail.idx. With notifications on, removing it loses a wakeup (a stall: see the notification rows).',
  'driver.get.rmb-after-used-idx':
    'needed: without it the driver can read a used element or buffer older than the used.idx that announced it',
  'driver.get.mb-after-used-event':
    'it orders the used_event store that get_buf makes when interrupts are enabled (EVENT_IDX) before the next used.idx read. Our driver only collects used buffers with interrupts disabled (NAPI on RX; TX reclaims with its interrupt off), so get_buf never stores used_event: it never runs, notifications on or off.',
  'driver.enable-cb.mb-before-used-recheck':
    'it closes the race of a driver re-enabling interrupts while the device publishes (pairs with device.notify.mb…); the busy-polling driver never re-enables interrupts, so it never runs. With notifications on, removing it loses an interrupt (a stall: see the notification rows).',
  'device.pop.rmb-after-avail-idx':
    'needed: without it the device can use avail ring entries or descriptors read (or prefetched) before the avail.idx that announced them',
  'device.push.wmb-before-used-idx':
    'needed: without it used.idx can reach host memory before the buffer data and used elements it announces',
  'device.notify.mb-before-event-check':
    'it orders the used.idx write before the device reads avail.flags / used_event to decide on an interrupt (pairs with driver.enable-cb.mb…). The busy-polling driver keeps NO_INTERRUPT set, so every decision is "no interrupt" and none is needed; the data path is ordered by device.push.wmb. With notifications on, removing it loses an interrupt (a stall: see the notification rows).',
  'device.enable-notify.mb-before-avail-recheck':
    'it closes the race of a device going to sleep while the driver adds (pairs with driver.kick.mb…); the busy-polling device never re-enables notifications, so it never runs. With notifications on, removing it loses a wakeup (a stall: see the notification rows).',
};

/** The sites a failure is expected for when removed alone in the (busy-polling) stress setup. */
export const SITES_NEEDED_BY_STRESS: readonly BarrierSite[] = [
  'driver.add.wmb-before-avail-idx',
  'driver.get.rmb-after-used-idx',
  'device.pop.rmb-after-avail-idx',
  'device.push.wmb-before-used-idx',
];

/** The sites of the notification handshakes (the store-buffering patterns). */
export const NOTIFICATION_SITES: readonly BarrierSite[] = BARRIER_SITE_NAMES.filter((s) => !SITES_NEEDED_BY_STRESS.includes(s));

/** Of those, the ones whose removal loses a wakeup (a stall) once notifications are on. */
export const SITES_NEEDED_WITH_NOTIFICATIONS: readonly BarrierSite[] = [
  'driver.kick.mb-before-event-check',
  'driver.enable-cb.mb-before-used-recheck',
  'device.notify.mb-before-event-check',
  'device.enable-notify.mb-before-avail-recheck',
];

export interface MatrixCellResult {
  cell: MatrixCell;
  verdict: 'pass' | 'fail';
  ringOps: number;
  seeds: number;
  /** Corrupted or foreign frames, broken rings, NEEDS_RESET, refused DMA, lost or duplicated frames. */
  corruptions: number;
  stalls: number;
  wallMs: number;
  /** The first failing seed, what failed, and the command line that reproduces it. */
  failure: (StressFailure & { seed: number; argv: string[] }) | undefined;
  /** ablation cells: how often the removed site was reached in all the runs. */
  siteRuns: number | undefined;
  doorbells: number;
  interrupts: number;
}

export interface MatrixOptions {
  secondsPerCell: number;
  /** The first seed of each cell (then +1, +2, …). */
  seed?: number;
  /** Each seed runs at most this many ring operations before the next seed starts (default 400k). */
  opsPerSeed?: number;
  /** Stop a cell after this many seeds even if time is left (tests: a deterministic amount of work). */
  seedsPerCell?: number;
  tuning?: Partial<StressTuning>;
  /** A clock in ms (the caller binds it to the OS; the simulation never reads it). */
  nowMs: () => number;
  /** Called between slices (let the event loop breathe: output, signals). */
  pause?: () => Promise<void>;
  onCell?: (r: MatrixCellResult, index: number, total: number) => void;
  cells?: readonly MatrixCell[];
}

/** Events per slice between clock checks. */
const SLICE_EVENTS = 20_000;

/** Runs every cell; each tries seeds until its time is up or one fails. */
export async function runMatrix(o: MatrixOptions): Promise<MatrixCellResult[]> {
  const cells = o.cells ?? matrixCells();
  const out: MatrixCellResult[] = [];
  for (let i = 0; i < cells.length; i++) {
    const r = await runCell(cells[i]!, o);
    out.push(r);
    o.onCell?.(r, i, cells.length);
  }
  return out;
}

export async function runCell(cell: MatrixCell, o: MatrixOptions): Promise<MatrixCellResult> {
  const start = o.nowMs();
  const budget = o.secondsPerCell * 1000;
  const opsPerSeed = o.opsPerSeed ?? 400_000;
  const r: MatrixCellResult = {
    cell,
    verdict: 'pass',
    ringOps: 0,
    seeds: 0,
    corruptions: 0,
    stalls: 0,
    wallMs: 0,
    failure: undefined,
    siteRuns: cell.site === undefined ? undefined : 0,
    doorbells: 0,
    interrupts: 0,
  };
  let seed = o.seed ?? 1;
  let lastPause = start;
  const maxSeeds = o.seedsPerCell ?? Infinity;
  while (r.seeds < maxSeeds && o.nowMs() - start < budget) {
    const run = new StressRun({ ...cell.config, seed }, o.tuning ?? {}, { maxOps: opsPerSeed });
    r.seeds++;
    for (;;) {
      if (run.runFor(SLICE_EVENTS)) break;
      const now = o.nowMs();
      if (now - start >= budget) {
        run.stop();
        break;
      }
      if (o.pause !== undefined && now - lastPause > 100) {
        await o.pause();
        lastPause = o.nowMs();
      }
    }
    const res = run.result();
    r.ringOps += res.ringOps;
    r.doorbells += res.doorbells;
    r.interrupts += res.interrupts;
    if (cell.site !== undefined) r.siteRuns! += res.siteRuns[cell.site];
    if (res.failure !== undefined) {
      r.verdict = 'fail';
      if (res.failure.kind === 'stall') r.stalls++;
      else r.corruptions++;
      r.failure = { ...res.failure, seed, argv: stressArgv(res.config, res.failure.ringOps + 1) };
      break;
    }
    seed = (seed + 1) >>> 0;
  }
  r.wallMs = o.nowMs() - start;
  return r;
}

/**
 * The arguments of `tlpwire stress` that reproduce a run exactly: every option spelled out, and
 * `--ops` so that it ends at the same point (a run cut by wall-clock time would not).
 */
export function stressArgv(c: StressConfig, ops?: number): string[] {
  const a = [
    'stress',
    '--seed',
    String(c.seed),
    '--host-platform',
    c.hostPlatform,
    '--device-platform',
    c.devicePlatform,
    '--driver-barriers',
    c.driverBarriers,
    '--device-barriers',
    c.deviceBarriers,
    '--order-platform',
    c.orderPlatform ? 'on' : 'off',
  ];
  for (const s of c.disabledBarriers) a.push('--disable-barrier', s);
  if (c.notifications === 'on') a.push('--notifications', 'on');
  if (ops !== undefined) a.push('--ops', String(ops));
  return a;
}

/** argv as one shell line (our arguments never need quoting, but be safe). */
export function shellLine(argv: readonly string[]): string {
  return ['tlpwire', ...argv].map((x) => (/^[\w.,:=/+-]+$/.test(x) ? x : `'${x.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** What a cell's verdict means, for the table's last column. */
export function cellNote(r: MatrixCellResult): string {
  if (r.failure !== undefined) return `${r.failure.kind}: ${r.failure.message}`;
  if (r.cell.site !== undefined) {
    const why = SITE_NOT_NEEDED[r.cell.site];
    return `not needed here (ran ${r.siteRuns ?? 0}×): ${why}`;
  }
  return '';
}
