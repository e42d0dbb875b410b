import { describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import {
  NOTIFICATION_SITES,
  SITES_NEEDED_BY_STRESS,
  SITES_NEEDED_WITH_NOTIFICATIONS,
  SITE_NOT_NEEDED,
  matrixCells,
  runMatrix,
  type MatrixCellResult,
} from '../../src/sim/index.js';
import { BARRIER_SITE_NAMES } from '../../src/virtio/index.js';

async function cli(argv: readonly string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const io: CliIo = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      out += t;
    },
  };
  return { code: await main(argv, io), out };
}

/**
 * The short matrix: every cell of `tlpwire stress --matrix`, bounded by ring operations instead
 * of seconds (two seeds each), so the verdicts do not depend on how loaded the machine is.
 */
async function shortMatrix(): Promise<MatrixCellResult[]> {
  const cells = matrixCells();
  const platforms = await runMatrix({
    cells: cells.filter((c) => c.group === 'platforms'),
    secondsPerCell: 600,
    seedsPerCell: 2,
    opsPerSeed: 15_000,
    nowMs: () => performance.now(),
  });
  const ablation = await runMatrix({
    cells: cells.filter((c) => c.group === 'ablation'),
    secondsPerCell: 600,
    seedsPerCell: 2,
    opsPerSeed: 40_000,
    nowMs: () => performance.now(),
  });
  const notifications = await runMatrix({
    cells: cells.filter((c) => c.group === 'notifications'),
    secondsPerCell: 600,
    seedsPerCell: 2,
    opsPerSeed: 20_000,
    nowMs: () => performance.now(),
  });
  return [...platforms, ...ablation, ...notifications];
}

describe('the stress matrix (short)', () => {
  let results: MatrixCellResult[] = [];
  const cell = (host: string, device: string, barriers: string): MatrixCellResult => {
    const r = results.find((x) => x.cell.group === 'platforms' && x.cell.config.hostPlatform === host && x.cell.config.devicePlatform === device && x.cell.barriers === barriers);
    if (r === undefined) throw new Error(`no cell ${host}/${device}/${barriers}`);
    return r;
  };

  it('runs 12 platform cells, one ablation cell per named site, and the notification cells', async () => {
    results = await shortMatrix();
    expect(results.filter((r) => r.cell.group === 'platforms')).toHaveLength(12);
    expect(results.filter((r) => r.cell.group === 'ablation').map((r) => r.cell.site)).toEqual(BARRIER_SITE_NAMES);
    expect(results.filter((r) => r.cell.group === 'notifications').map((r) => r.cell.site)).toEqual([undefined, ...NOTIFICATION_SITES]);
  }, 120_000);

  it('weak barriers fail on weak platforms, found within a few thousand ring operations', () => {
    for (const [h, d] of [
      ['weak', 'weak'],
      ['weak', 'tso'],
      ['tso', 'weak'],
    ]) {
      const r = cell(h!, d!, 'weak');
      expect(r.verdict, r.cell.label).toBe('fail');
      expect(r.failure!.ringOps).toBeLessThan(15_000);
      expect(r.corruptions + r.stalls).toBe(1);
    }
  });

  it('weak barriers pass on tso host and tso device (the hypervisor case)', () => {
    const r = cell('tso', 'tso', 'weak');
    expect(r.verdict).toBe('pass');
    expect(r.ringOps).toBeGreaterThanOrEqual(30_000);
  });

  it('strict barriers and ORDER_PLATFORM negotiation pass on every platform', () => {
    for (const h of ['tso', 'weak']) {
      for (const d of ['tso', 'weak']) {
        for (const b of ['strict', 'negotiated']) {
          const r = cell(h, d, b);
          expect(r.verdict, `${r.cell.label}: ${r.failure?.message ?? ''}`).toBe('pass');
          expect(r.seeds).toBe(2);
          expect(r.ringOps).toBeGreaterThanOrEqual(30_000);
          expect(r.doorbells + r.interrupts).toBe(0);
        }
      }
    }
  });

  it('each site the stress setup needs fails when removed alone; every other one says why it is not needed', () => {
    for (const r of results.filter((x) => x.cell.group === 'ablation')) {
      const site = r.cell.site!;
      if (SITES_NEEDED_BY_STRESS.includes(site)) {
        expect(r.verdict, site).toBe('fail');
        expect(r.siteRuns, site).toBeGreaterThan(0);
      } else {
        expect(r.verdict, `${site}: ${r.failure?.message ?? ''}`).toBe('pass');
        expect(SITE_NOT_NEEDED[site].length).toBeGreaterThan(40);
        // "never runs" is only claimed for sites the runs never reached
        if (/never runs/.test(SITE_NOT_NEEDED[site])) expect(r.siteRuns, site).toBe(0);
        else expect(r.siteRuns, site).toBeGreaterThan(0);
      }
    }
  });

  it('with notifications on, strict barriers pass and removing a handshake site loses a wakeup (a stall)', () => {
    const n = results.filter((x) => x.cell.group === 'notifications');
    const base = n.find((x) => x.cell.site === undefined)!;
    expect(base.verdict, base.failure?.message).toBe('pass');
    expect(base.doorbells).toBeGreaterThan(0);
    expect(base.interrupts).toBeGreaterThan(0);
    for (const r of n.filter((x) => x.cell.site !== undefined)) {
      const site = r.cell.site!;
      if (SITES_NEEDED_WITH_NOTIFICATIONS.includes(site)) {
        expect(r.verdict, site).toBe('fail');
        expect(r.failure!.kind, site).toBe('stall');
      } else {
        // driver.get.mb-after-used-event: our driver never stores used_event in get_buf
        expect(r.verdict, site).toBe('pass');
        expect(r.siteRuns, site).toBe(0);
      }
    }
    expect(results.every((r) => r.verdict === r.cell.expected)).toBe(true);
  });

  it("every failing cell's printed command line reproduces the same failure", async () => {
    const failing = results.filter((r) => r.failure !== undefined);
    expect(failing.length).toBe(3 + SITES_NEEDED_BY_STRESS.length + SITES_NEEDED_WITH_NOTIFICATIONS.length);
    for (const r of failing) {
      const f = r.failure!;
      const { code, out } = await cli(f.argv);
      expect(code, f.argv.join(' ')).toBe(1);
      expect(out).toContain(`FAIL  ${f.kind}: ${f.message}`);
      expect(out).toContain(`after ${f.ringOps.toLocaleString('en-US')} ring operations, at ${f.timeNs.toLocaleString('en-US')} ns`);
    }
  }, 120_000);
});
