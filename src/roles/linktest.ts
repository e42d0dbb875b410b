/**
 * The host side of pcitest's matrix against a link tester function (Linux's
 * drivers/misc/pci_endpoint_test.c semantics, written here from its documented behaviour):
 *
 *   BAR0..BAR5     fill each implemented BAR with its pattern (0xA0 + n in every byte, 1 MiB at
 *                  a time), read it back; the test register BAR only in its first DW (MAGIC),
 *                  the rest of it holds registers and the MSI-X table
 *   BARs           consecutive-BAR test: write every BAR (pattern byte << 24 | offset per DW),
 *                  then read them all: a write through one BAR must not show up in another
 *   INTx           MSI-X off, COMMAND = RAISE_INTX: an Assert_INTx Message must arrive
 *   MSI 1..N       MSI on with N vectors: each vector raised once, each must arrive
 *   MSI-X 1..N     every vector enumeration allocated, likewise
 *   READ / WRITE / COPY of each size, without and with FLAGS.USE_DMA, completion signalled by
 *                  MSI-X vector 1 — named from the host's side as pcitest does: READ is the
 *                  endpoint writing host memory (COMMAND_WRITE), WRITE is the endpoint reading it
 *                  (COMMAND_READ); checked with crc32_le as the driver does
 *   throughput     one larger WRITE and READ with DMA, timed from COMMAND to the interrupt
 *
 * The clock and random source are passed in: over real sockets that is the real clock, so the
 * throughput numbers mean something; under the simulator the matrix is deterministic.
 */
import { TlpwireError, errorMessage, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import type { HostRam } from '../memory/index.js';
import {
  PCI_EPF_TEST_COMMAND,
  PCI_EPF_TEST_IRQ_TYPE,
  PCI_EPF_TEST_REG,
  PCI_EPF_TEST_STATUS,
  configureMsi,
  epfTestChecksum,
  formatBdf,
  setMsixEnabled,
  writeConfig,
  type ConfigAccess,
  type EnumeratedBar,
  type EnumeratedFunction,
} from '../pci/index.js';
import { PCI_CFG, PCI_COMMAND, PCI_EPF_TEST_FLAGS, PCI_EPF_TEST_HOWTO_IDS } from '../spec/index.js';
import { fillPattern } from './dma-exercise.js';
import type { InterruptController, InterruptVector } from './interrupts.js';

/** Memory-space access by the host CPU (through the root port's requester). */
export interface LinktestMmio {
  write32(address: number, value: number): Promise<void>;
  read32(address: number): Promise<number>;
  /** A burst of posted writes (MPS-sized MWr TLPs). */
  write(address: number, data: Uint8Array): Promise<void>;
  /** A burst of reads (MRRS-sized MRd TLPs); rejects on UR/CA/timeout. */
  read(address: number, length: number): Promise<Uint8Array>;
}

export interface LinktestTarget {
  fn: EnumeratedFunction;
  /** The root port (index) the function sits behind, to match its INTx Messages. */
  port: number;
  config: ConfigAccess;
  mmio: LinktestMmio;
  ram: HostRam;
  interrupts: InterruptController;
  clock: Clock;
  rng: Rng;
  logger?: Logger;
}

export interface LinktestOptions {
  /** Transfer sizes (pcitest's: 1, 1024, 1025, 1024000, 1024001). */
  sizes?: readonly number[];
  /** Run the transfers without and/or with FLAGS.USE_DMA. Default both. */
  dmaModes?: readonly boolean[];
  /** Run the MSI test when the function has MSI. Default true. */
  msi?: boolean;
  /** How long to wait for an interrupt in the interrupt tests. Default 1 s (as the driver). */
  irqTimeoutNs?: number;
  /** How long to wait for a transfer to complete. Default 30 s. */
  transferTimeoutNs?: number;
  /** Bytes of the throughput transfers (one per direction, with DMA); 0 skips them. Default 16 MiB. */
  throughputBytes?: number;
}

export const PCITEST_SIZES: readonly number[] = [1, 1024, 1025, 1024000, 1024001];

export type LinktestStatus = 'pass' | 'fail' | 'skip';

export interface LinktestRow {
  test: string;
  status: LinktestStatus;
  detail: string;
}

export interface LinktestThroughput {
  /** "host→device" (the endpoint reads host memory: pcitest WRITE) or "device→host" (READ). */
  direction: 'host→device' | 'device→host';
  bytes: number;
  ns: number;
  mbPerSecond: number;
}

export interface LinktestReport {
  bdf: number;
  rows: LinktestRow[];
  throughput: LinktestThroughput[];
  /** No row failed. */
  passed: boolean;
}

/** The IDs the link tester presents (pci-test-howto's 104c:b500). */
export function isLinkTester(f: EnumeratedFunction): boolean {
  return f.vendorId === PCI_EPF_TEST_HOWTO_IDS.VENDOR_ID && f.deviceId === PCI_EPF_TEST_HOWTO_IDS.DEVICE_ID;
}

const R = PCI_EPF_TEST_REG;
const C = PCI_EPF_TEST_COMMAND;
const S = PCI_EPF_TEST_STATUS;
const T = PCI_EPF_TEST_IRQ_TYPE;
const TEST_REG_BAR = 0;
const BAR_CHUNK = 1 << 20;

type IrqEvent = { kind: 'intx' } | { kind: 'msi'; index: number } | { kind: 'msix'; index: number };

/** One interrupt wait at a time, as the driver's `irq_raised` completion. */
class IrqLatch {
  private waiter: { match: (e: IrqEvent) => boolean; resolve: (ok: boolean) => void } | undefined;

  constructor(private readonly clock: Clock) {}

  /** Resolves true when a matching interrupt arrives, false after `timeoutNs`. */
  arm(match: (e: IrqEvent) => boolean, timeoutNs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimer(timeoutNs, () => {
        if (this.waiter?.resolve === done) this.waiter = undefined;
        resolve(false);
      });
      const done = (ok: boolean): void => {
        timer.cancel();
        resolve(ok);
      };
      this.waiter = { match, resolve: done };
    });
  }

  fire(e: IrqEvent): void {
    const w = this.waiter;
    if (w === undefined || !w.match(e)) return;
    this.waiter = undefined;
    w.resolve(true);
  }
}

function barPattern(index: number): number {
  return 0xa0 + index;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function durationText(ns: number): string {
  if (ns < 1e6) return `${Math.round(ns / 1e3)} µs`;
  return ns < 1e8 ? `${(ns / 1e6).toFixed(1)} ms` : `${Math.round(ns / 1e6)} ms`;
}

function sizeName(n: number): string {
  return n >= 1 << 20 && n % (1 << 20) === 0 ? `${n >> 20} MiB` : `${n} B`;
}

/** Runs the matrix; never rejects for a failing device — a failure is a row. */
export async function runLinkTest(target: LinktestTarget, options: LinktestOptions = {}): Promise<LinktestReport> {
  const log = (target.logger ?? silentLogger).child({ linktest: formatBdf(target.fn.bdf) });
  const rows: LinktestRow[] = [];
  const throughput: LinktestThroughput[] = [];
  const latch = new IrqLatch(target.clock);
  const fn = target.fn;
  const reg = fn.bars.find((b) => b.index === TEST_REG_BAR && b.address !== null);
  if (reg === undefined || reg.address === null) {
    rows.push({ test: 'register BAR', status: 'fail', detail: `BAR${TEST_REG_BAR} is not assigned` });
    return { bdf: fn.bdf, rows, throughput, passed: false };
  }
  const regs = reg.address;
  const irqTimeout = options.irqTimeoutNs ?? 1_000_000_000;
  const xferTimeout = options.transferTimeoutNs ?? 30_000_000_000;
  const mmio = target.mmio;
  const w32 = (off: number, v: number): Promise<void> => mmio.write32(regs + off, v >>> 0);
  const r32 = (off: number): Promise<number> => mmio.read32(regs + off);

  const unsubscribeIntx = target.interrupts.onIntx((asserted, _pin, source) => {
    if (asserted && source.port === target.port && source.requesterId === fn.bdf) latch.fire({ kind: 'intx' });
  });
  const msixVectors = fn.msix?.vectors ?? [];
  for (let i = 0; i < msixVectors.length; i++) {
    // A vector released meanwhile (its port went down) simply never fires.
    if (target.interrupts.has(msixVectors[i]!)) target.interrupts.setHandler(msixVectors[i]!, () => latch.fire({ kind: 'msix', index: i }));
  }
  const step = async (name: string, body: () => Promise<LinktestRow | LinktestRow[]>): Promise<void> => {
    try {
      const r = await body();
      rows.push(...(Array.isArray(r) ? r : [r]));
    } catch (e) {
      rows.push({ test: name, status: 'fail', detail: errorMessage(e) });
    }
  };

  try {
    // ---- BARs
    for (let index = 0; index < 6; index++) {
      await step(`BAR${index}`, () => barTest(fn, index, mmio));
    }
    await step('consecutive BARs', () => consecutiveBarTest(fn, mmio));

    // ---- interrupts
    await step('INTx', async () => {
      if (fn.interruptPin === 0) return { test: 'INTx', status: 'skip', detail: 'no interrupt pin' };
      if (fn.msix !== null) await setMsixEnabled(target.config, fn, false);
      try {
        await clearIntxDisable(target.config, fn);
        const got = latch.arm((e) => e.kind === 'intx', irqTimeout);
        await w32(R.IRQ_TYPE, T.INTX);
        await w32(R.IRQ_NUMBER, 0);
        await w32(R.COMMAND, C.RAISE_INTX_IRQ);
        const ok = await got;
        const status = await r32(R.STATUS);
        if (!ok) return { test: 'INTx', status: 'fail', detail: `no Assert_INTx within ${irqTimeout / 1e6} ms (STATUS ${hex(status)})` };
        return { test: 'INTx', status: (status & S.IRQ_RAISED) !== 0 ? 'pass' : 'fail', detail: 'Assert_INTx received' };
      } finally {
        if (fn.msix !== null && msixVectors.length > 0) await setMsixEnabled(target.config, fn, true);
      }
    });

    if ((options.msi ?? true) && fn.msi !== null) {
      await step('MSI', () => msiTest(target, latch, irqTimeout, w32, msixVectors.length > 0));
    }

    await step('MSI-X', async () => {
      if (msixVectors.length === 0) return { test: 'MSI-X', status: 'skip', detail: 'no MSI-X vectors allocated' };
      let ok = 0;
      const failedAt: number[] = [];
      for (let i = 1; i <= msixVectors.length; i++) {
        const got = latch.arm((e) => e.kind === 'msix' && e.index === i - 1, irqTimeout);
        await w32(R.IRQ_TYPE, T.MSIX);
        await w32(R.IRQ_NUMBER, i);
        await w32(R.COMMAND, C.RAISE_MSIX_IRQ);
        if (await got) ok++;
        else failedAt.push(i);
      }
      return {
        test: `MSI-X vectors 1-${msixVectors.length}`,
        status: ok === msixVectors.length ? 'pass' : 'fail',
        detail: `${ok}/${msixVectors.length} delivered${failedAt.length > 0 ? `; missing ${failedAt.slice(0, 8).join(', ')}` : ''}`,
      };
    });

    // ---- transfers
    const irq = msixVectors.length > 0 ? { type: T.MSIX, match: (e: IrqEvent) => e.kind === 'msix' && e.index === 0 } : { type: T.INTX, match: (e: IrqEvent) => e.kind === 'intx' };
    if (msixVectors.length === 0 && fn.msix !== null) await setMsixEnabled(target.config, fn, false);
    const xfer: Xfer = { target, latch, w32, r32, irq, timeoutNs: xferTimeout };
    const sizes = options.sizes ?? PCITEST_SIZES;
    for (const useDma of options.dmaModes ?? [false, true]) {
      for (const op of ['READ', 'WRITE', 'COPY'] as const) {
        for (const size of sizes) {
          const name = `${op} ${sizeName(size)}${useDma ? ' DMA' : ''}`;
          await step(name, async () => {
            const r = await transfer(xfer, op, size, useDma);
            return { test: name, status: r.ok ? 'pass' : 'fail', detail: r.detail };
          });
        }
      }
    }
    const tpBytes = options.throughputBytes ?? 16 * 1024 * 1024;
    if (tpBytes > 0) {
      for (const op of ['WRITE', 'READ'] as const) {
        const name = `${op} ${sizeName(tpBytes)} DMA (throughput)`;
        await step(name, async () => {
          const r = await transfer(xfer, op, tpBytes, true);
          if (r.ok) {
            throughput.push({
              direction: op === 'WRITE' ? 'host→device' : 'device→host',
              bytes: tpBytes,
              ns: r.ns,
              mbPerSecond: r.ns > 0 ? tpBytes / (r.ns / 1e9) / 1e6 : Infinity,
            });
          }
          return { test: name, status: r.ok ? 'pass' : 'fail', detail: r.detail };
        });
      }
    }
  } finally {
    unsubscribeIntx();
    for (const v of msixVectors) if (target.interrupts.has(v)) target.interrupts.setHandler(v, undefined);
  }
  const passed = rows.every((r) => r.status !== 'fail');
  log.info({ passed, rows: rows.length, failed: rows.filter((r) => r.status === 'fail').length }, 'link test finished');
  return { bdf: fn.bdf, rows, throughput, passed };
}

async function clearIntxDisable(config: ConfigAccess, fn: EnumeratedFunction): Promise<void> {
  const dw = await config.cfgRead(fn.bdf, PCI_CFG.COMMAND >> 2);
  const cmd = dw & 0xffff;
  if ((cmd & PCI_COMMAND.INTX_DISABLE) !== 0) await writeConfig(config, fn.bdf, PCI_CFG.COMMAND, 2, cmd & ~PCI_COMMAND.INTX_DISABLE);
}

function barByIndex(fn: EnumeratedFunction, index: number): EnumeratedBar | null | 'upper' {
  if (fn.bars.some((b) => b.kind === 'mem64' && b.index + 1 === index)) return 'upper';
  return fn.bars.find((b) => b.index === index) ?? null;
}

/** The bytes of a BAR the tests may touch: the test register BAR only up to MAGIC. */
function testedSize(bar: EnumeratedBar): number {
  return bar.index === TEST_REG_BAR ? 4 : bar.size;
}

async function barTest(fn: EnumeratedFunction, index: number, mmio: LinktestMmio): Promise<LinktestRow> {
  const test = `BAR${index}`;
  const bar = barByIndex(fn, index);
  if (bar === 'upper') return { test, status: 'skip', detail: `upper half of 64-bit BAR${index - 1}` };
  if (bar === null) return { test, status: 'skip', detail: 'the function has no such BAR' };
  if (bar.address === null || bar.kind === 'io') return { test, status: 'skip', detail: bar.kind === 'io' ? 'I/O BAR' : 'not assigned' };
  const size = testedSize(bar);
  const chunk = Math.min(BAR_CHUNK, size);
  const pattern = new Uint8Array(chunk).fill(barPattern(index));
  for (let off = 0; off < size; off += chunk) {
    await mmio.write(bar.address + off, pattern);
    const back = await mmio.read(bar.address + off, chunk);
    const bad = firstDifference(pattern, back);
    if (bad >= 0) {
      return { test, status: 'fail', detail: `offset ${hex(off + bad)}: read ${hex(back[bad] ?? 0)}, wrote ${hex(pattern[bad] ?? 0)}` };
    }
  }
  return { test, status: 'pass', detail: `${bar.size} bytes at ${hex(bar.address)}${size < bar.size ? ' (first DW: the register block)' : ''}` };
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Pattern byte in the top byte, the (partial) offset in the rest, per DW. */
function offsetPattern(index: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  for (let j = 0; j + 4 <= size; j += 4) dv.setUint32(j, ((barPattern(index) << 24) | (j & 0x00ffffff)) >>> 0, true);
  return out;
}

async function consecutiveBarTest(fn: EnumeratedFunction, mmio: LinktestMmio): Promise<LinktestRow> {
  const test = 'consecutive BARs';
  const bars = fn.bars.filter((b) => b.kind !== 'io' && b.address !== null);
  if (bars.length === 0) return { test, status: 'skip', detail: 'no memory BARs' };
  for (const b of bars) {
    const data = offsetPattern(b.index, testedSize(b));
    for (let off = 0; off < data.length; off += BAR_CHUNK) await mmio.write(b.address! + off, data.subarray(off, off + BAR_CHUNK));
  }
  for (const b of bars) {
    const data = offsetPattern(b.index, testedSize(b));
    for (let off = 0; off < data.length; off += BAR_CHUNK) {
      const want = data.subarray(off, off + BAR_CHUNK);
      const got = await mmio.read(b.address! + off, want.length);
      const bad = firstDifference(want, got);
      if (bad >= 0) {
        const at = (off + bad) & ~3;
        const dv = new DataView(got.buffer, got.byteOffset, got.byteLength);
        const seen = dv.getUint32((bad & ~3), true);
        return { test, status: 'fail', detail: `BAR${b.index} offset ${hex(at)}: got ${hex(seen)}` };
      }
    }
  }
  return { test, status: 'pass', detail: `${bars.length} BARs written, then all read back` };
}

async function msiTest(
  target: LinktestTarget,
  latch: IrqLatch,
  timeoutNs: number,
  w32: (off: number, v: number) => Promise<void>,
  restoreMsix: boolean,
): Promise<LinktestRow> {
  const fn = target.fn;
  const msi = fn.msi!;
  const n = Math.min(msi.vectorsCapable, 32);
  let block: InterruptVector | undefined;
  if (fn.msix !== null) await setMsixEnabled(target.config, fn, false);
  try {
    block = target.interrupts.allocate(n, fn.bdf, (index) => latch.fire({ kind: 'msi', index }));
    await configureMsi(target.config, fn, block, n);
    let ok = 0;
    const missing: number[] = [];
    for (let i = 1; i <= n; i++) {
      const got = latch.arm((e) => e.kind === 'msi' && e.index === i - 1, timeoutNs);
      await w32(R.IRQ_TYPE, T.MSI);
      await w32(R.IRQ_NUMBER, i);
      await w32(R.COMMAND, C.RAISE_MSI_IRQ);
      if (await got) ok++;
      else missing.push(i);
    }
    return {
      test: `MSI vectors 1-${n}`,
      status: ok === n ? 'pass' : 'fail',
      detail: `${ok}/${n} delivered${missing.length > 0 ? `; missing ${missing.slice(0, 8).join(', ')}` : ''}`,
    };
  } finally {
    await configureMsi(target.config, fn, null);
    if (block !== undefined) target.interrupts.release([block]);
    if (restoreMsix && fn.msix !== null) await setMsixEnabled(target.config, fn, true);
  }
}

interface Xfer {
  target: LinktestTarget;
  latch: IrqLatch;
  w32: (off: number, v: number) => Promise<void>;
  r32: (off: number) => Promise<number>;
  irq: { type: number; match: (e: IrqEvent) => boolean };
  timeoutNs: number;
}

/**
 * One pcitest transfer. READ: the endpoint writes random data to a host buffer (COMMAND_WRITE)
 * and reports its checksum; WRITE: the host fills a buffer and gives its checksum, the endpoint
 * reads and checks it (COMMAND_READ); COPY: the endpoint copies one host buffer to another.
 */
async function transfer(x: Xfer, op: 'READ' | 'WRITE' | 'COPY', size: number, useDma: boolean): Promise<{ ok: boolean; ns: number; detail: string }> {
  const { target, w32, r32 } = x;
  const ram = target.ram;
  const src = op === 'READ' ? null : ram.allocate(size, 4096);
  let dst: number | null = null;
  try {
    dst = op === 'WRITE' ? null : ram.allocate(size, 4096);
    let srcCrc = 0;
    if (src !== null) {
      const data = new Uint8Array(size);
      fillPattern(data, target.rng.u32(), 0);
      ram.writeBytes(src, data);
      srcCrc = epfTestChecksum(data);
      await w32(R.SRC_ADDR_LO, src >>> 0);
      await w32(R.SRC_ADDR_HI, Math.floor(src / 0x1_0000_0000));
    }
    if (dst !== null) {
      ram.fill(dst, size, 0);
      await w32(R.DST_ADDR_LO, dst >>> 0);
      await w32(R.DST_ADDR_HI, Math.floor(dst / 0x1_0000_0000));
    }
    if (op === 'WRITE') await w32(R.CHECKSUM, srcCrc);
    await w32(R.SIZE, size);
    await w32(R.FLAGS, useDma ? PCI_EPF_TEST_FLAGS.USE_DMA : 0);
    await w32(R.IRQ_TYPE, x.irq.type);
    await w32(R.IRQ_NUMBER, x.irq.type === T.INTX ? 0 : 1);
    const got = x.latch.arm(x.irq.match, x.timeoutNs);
    const t0 = target.clock.nowNs();
    await w32(R.COMMAND, op === 'READ' ? C.WRITE : op === 'WRITE' ? C.READ : C.COPY);
    const ok = await got;
    const ns = target.clock.nowNs() - t0;
    const status = await r32(R.STATUS);
    if (!ok) return { ok: false, ns, detail: `no interrupt within ${x.timeoutNs / 1e6} ms (STATUS ${hex(status)})` };
    const rate = ns > 0 ? ` in ${durationText(ns)}` : '';
    const n = `${size} byte${size === 1 ? '' : 's'}`;
    if (op === 'WRITE') {
      const good = (status & S.READ_SUCCESS) !== 0;
      return { ok: good, ns, detail: good ? `endpoint read and checked ${n}${rate}` : `endpoint reports checksum mismatch or failure (STATUS ${hex(status)})` };
    }
    const data = ram.readBytes(dst!, size);
    const crc = epfTestChecksum(data);
    if (op === 'READ') {
      const expected = await r32(R.CHECKSUM);
      const good = (status & S.WRITE_SUCCESS) !== 0 && crc === expected;
      return { ok: good, ns, detail: good ? `endpoint wrote ${n}, checksum ok${rate}` : `STATUS ${hex(status)}, crc ${hex(crc)} vs CHECKSUM ${hex(expected)}` };
    }
    const good = (status & S.COPY_SUCCESS) !== 0 && crc === srcCrc;
    return { ok: good, ns, detail: good ? `endpoint copied ${n}${rate}` : `STATUS ${hex(status)}, crc ${hex(crc)} vs ${hex(srcCrc)}` };
  } finally {
    if (src !== null) ram.free(src);
    if (dst !== null) ram.free(dst);
  }
}

// ---------------------------------------------------------------------------------------------
// presentation

/** The pass/fail table and the throughput lines. */
export function formatLinktestReport(report: LinktestReport): string {
  const width = Math.max(4, ...report.rows.map((r) => r.test.length));
  const lines = [`link test of ${formatBdf(report.bdf)}`, `  ${'test'.padEnd(width)}  result  detail`, `  ${'-'.repeat(width)}  ------  ------`];
  for (const r of report.rows) lines.push(`  ${r.test.padEnd(width)}  ${r.status.toUpperCase().padEnd(6)}  ${r.detail}`);
  const failed = report.rows.filter((r) => r.status === 'fail').length;
  const passed = report.rows.filter((r) => r.status === 'pass').length;
  const skipped = report.rows.filter((r) => r.status === 'skip').length;
  lines.push(`  ${passed} passed, ${failed} failed, ${skipped} skipped`);
  for (const t of report.throughput) {
    const what = t.direction === 'host→device' ? 'host→device (endpoint DMA-reads host memory, pcitest WRITE)' : 'device→host (endpoint DMA-writes host memory, pcitest READ)';
    lines.push(`  throughput ${what}: ${t.mbPerSecond.toFixed(1)} MB/s (${sizeName(t.bytes)} in ${(t.ns / 1e6).toFixed(1)} ms)`);
  }
  return `${lines.join('\n')}\n`;
}

/** Checks a report and throws ERR_REQUEST naming the failed rows (for callers that want an exception). */
export function assertLinktestPassed(report: LinktestReport): void {
  const failed = report.rows.filter((r) => r.status === 'fail');
  if (failed.length > 0) throw new TlpwireError('ERR_REQUEST', `link test failed: ${failed.map((r) => r.test).join(', ')}`);
}
