import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SeededRng } from '../../src/core/index.js';
import { parseConfigDump } from '../../src/pci/index.js';
import { RealClock, runEndpoint, runRootComplex, type PortEnumeration } from '../../src/roles/index.js';
import { tempDirs } from '../support/temp-dir.js';

const tempDir = tempDirs();

const hasLspci = spawnSync('lspci', ['--version'], { encoding: 'utf8' }).status === 0;

/** Runs an rc and an ep in this process over a Unix socket and returns the dump and what was enumerated. */
async function dumpOfTwoFunctions(): Promise<{ text: string; e: PortEnumeration; path: string }> {
  const dir = tempDir('tlpwire-dump-');
  const path = join(dir, 'config.txt');
  const clock = new RealClock();
  let got: (e: PortEnumeration) => void = () => {};
  let dumpedResolve: () => void = () => {};
  const dumped = new Promise<void>((r) => {
    dumpedResolve = r;
  });
  const enumerated = new Promise<PortEnumeration>((r) => (got = r));
  const rc = await runRootComplex({
    listen: `unix:${join(dir, 'link.sock')}`,
    memoryBytes: 16 << 20,
    dumpConfigPath: path,
    clock,
    rng: new SeededRng(1),
    onEnumerated: (e) => got(e),
    onConfigDump: () => dumpedResolve(),
  });
  const ep = await runEndpoint({ connect: rc.url!, functions: [{ kind: 'linktest' }, { kind: 'linktest', params: { bars: '64', msix: '8' } }], clock, rng: new SeededRng(2) });
  try {
    const e = await enumerated;
    await dumped;
    return { text: readFileSync(path, 'utf8'), e, path };
  } finally {
    await ep.close();
    await rc.close();
  }
}

describe('tlpwire rc --dump-config', () => {
  it('writes every function as 4096 bytes of lspci -xxxx text equal to its config space', async () => {
    const { text, e } = await dumpOfTwoFunctions();
    const entries = parseConfigDump(text);
    expect(entries.map((x) => `${x.bus}:${x.device}.${x.function}`)).toEqual(['1:0.0', '1:0.1']);
    for (const x of entries) {
      expect(x.config).toHaveLength(4096);
      const dv = new DataView(x.config.buffer, x.config.byteOffset);
      // Vendor/device and BAR0 as enumeration left them.
      const f = e.result.functions[x.function]!;
      expect(dv.getUint16(0, true)).toBe(0x104c);
      expect(dv.getUint16(2, true)).toBe(0xb500);
      expect((dv.getUint32(0x10, true) & ~0xf) >>> 0).toBe(f.bars[0]!.address! >>> 0);
    }
    expect(text.split('\n')[0]).toMatch(/^01:00\.0 /);
  }, 20_000);

  it(hasLspci ? "decodes with pciutils' lspci -F FILE -vvv -nn: IDs, class, BARs, PCIe, MSI-X, PM, AER, DSN" : 'lspci -F decode — skipped: lspci (pciutils) is not installed', async ({ skip }) => {
    if (!hasLspci) skip();
    const { e, path } = await dumpOfTwoFunctions();
    const r = spawnSync('lspci', ['-F', path, '-vvv', '-nn'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const out = r.stdout;
    const [f0, f1] = e.result.functions;
    expect(out).toContain('01:00.0 Unassigned class [ff00]: Texas Instruments Device [104c:b500]');
    expect(out).toContain('01:00.1 Unassigned class [ff00]: Texas Instruments Device [104c:b500]');
    expect(out).toContain('Control: I/O- Mem+ BusMaster+');
    for (const b of f0!.bars) expect(out).toContain(`Region ${b.index}: Memory at ${b.address!.toString(16)} (32-bit, non-prefetchable)`);
    for (const b of f1!.bars) expect(out).toContain(`Region ${b.index}: Memory at ${b.address!.toString(16)} (64-bit, non-prefetchable)`);
    expect(out).toContain('Power Management version 3');
    expect(out).toContain('MSI: Enable- Count=1/32 Maskable- 64bit+');
    expect(out).toContain('Express (v2) Endpoint');
    expect(out).toContain('MaxPayload 256 bytes, MaxReadReq 512 bytes');
    expect(out).toContain('Completion Timeout: 260ms to 900ms');
    expect(out).toContain('10BitTagReq+');
    expect(out).toContain('MSI-X: Enable+ Count=32 Masked-');
    expect(out).toContain('Vector table: BAR=0 offset=00000080');
    expect(out).toContain('PBA: BAR=0 offset=00000280');
    expect(out).toContain('MSI-X: Enable+ Count=8 Masked-');
    expect(out).toContain('Advanced Error Reporting');
    expect(out).toContain('Device Serial Number 74-6c-70-77-00-00-00-00');
    expect(out).toContain('Device Serial Number 74-6c-70-77-00-00-00-01');
  }, 20_000);
});
