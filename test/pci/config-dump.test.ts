import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LinkTesterFunction,
  PciDevice,
  PciFunction,
  formatConfigDump,
  formatPciAddress,
  parseConfigDump,
} from '../../src/pci/index.js';
import { SeededRng, isTlpwireError } from '../../src/core/index.js';
import { cfgWrite } from './cfg-access.js';

/** A 256-byte image built by hand: IDs, command/status, class, one BAR, a cap pointer, the pin. */
function handImage(): Uint8Array {
  const b = new Uint8Array(256);
  b.set([0x86, 0x80, 0xd3, 0x10, 0x07, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00, 0x02], 0);
  b.set([0x00, 0x00, 0xa0, 0xfe], 0x10);
  b[0x34] = 0xc8;
  b[0x3c] = 0x0b;
  b[0x3d] = 0x01;
  b.set([0x01, 0xd0, 0x22, 0xc8], 0xc8);
  b[0xff] = 0xee;
  return b;
}

// Written out by hand in lspci -xxx layout; not produced by the code under test.
const HAND_TEXT = [
  '00:19.0 Ethernet controller: Intel Corporation 82574L',
  '00: 86 80 d3 10 07 04 10 00 00 00 00 02 00 00 00 00',
  '10: 00 00 a0 fe 00 00 00 00 00 00 00 00 00 00 00 00',
  '20: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '30: 00 00 00 00 c8 00 00 00 00 00 00 00 0b 01 00 00',
  '40: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '50: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '60: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '70: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '80: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  '90: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  'a0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  'b0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  'c0: 00 00 00 00 00 00 00 00 01 d0 22 c8 00 00 00 00',
  'd0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  'e0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
  'f0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ee',
  '',
  '',
].join('\n');

describe('formatConfigDump (lspci -xxxx format)', () => {
  it('matches a hand-written dump byte for byte', () => {
    const text = formatConfigDump([
      { bus: 0, device: 0x19, function: 0, config: handImage(), description: 'Ethernet controller: Intel Corporation 82574L' },
    ]);
    expect(text).toBe(HAND_TEXT);
  });

  it('writes "BB:DD.F " with the trailing space, 256 lines of 16 bytes for 4096 bytes, a blank line after each device', () => {
    const a = new Uint8Array(4096);
    a[0x100] = 0x01;
    a[0x102] = 0x02;
    a[0xfff] = 0xab;
    const text = formatConfigDump([
      { bus: 0x1f, device: 0x1d, function: 7, config: a },
      { domain: 0x10, bus: 2, device: 0, function: 1, config: new Uint8Array(256) },
    ]);
    const lines = text.split('\n');
    expect(lines[0]).toBe('1f:1d.7 ');
    expect(lines[1]).toBe('00: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00');
    expect(lines[16]).toBe('f0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00');
    expect(lines[17]).toBe('100: 01 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00');
    expect(lines[256]).toBe('ff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ab');
    expect(lines[257]).toBe('');
    expect(lines[258]).toBe('0010:02:00.1 ');
    expect(lines[259]).toBe('00: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00');
    expect(lines.length).toBe(258 + 1 + 16 + 2);
    expect(text.endsWith('\n\n')).toBe(true);
    expect(formatPciAddress({ bus: 1, device: 2, function: 3 })).toBe('01:02.3');
  });

  it('refuses bad addresses and sizes', () => {
    const bad = [
      { bus: 256, device: 0, function: 0, config: new Uint8Array(256) },
      { bus: 0, device: 32, function: 0, config: new Uint8Array(256) },
      { bus: 0, device: 0, function: 8, config: new Uint8Array(256) },
      { bus: 0, device: 0, function: 0, config: new Uint8Array(100) },
      { bus: 0, device: 0, function: 0, config: new Uint8Array(256), description: 'two\nlines' },
    ];
    for (const e of bad) {
      let code: string | undefined;
      try {
        formatConfigDump([e]);
      } catch (err) {
        code = isTlpwireError(err) ? err.code : 'other';
      }
      expect(code).toBe('ERR_CONFIG');
    }
    expect(formatConfigDump([])).toBe('');
  });
});

describe('parseConfigDump', () => {
  it('reads the hand-written dump', () => {
    const [e, ...rest] = parseConfigDump(HAND_TEXT);
    expect(rest).toEqual([]);
    expect(e?.bus).toBe(0);
    expect(e?.device).toBe(0x19);
    expect(e?.description).toBe('Ethernet controller: Intel Corporation 82574L');
    expect([...(e?.config ?? [])]).toEqual([...handImage()]);
  });

  it('round-trips any dump (property)', () => {
    const entryArb = fc.record({
      bus: fc.integer({ min: 0, max: 255 }),
      device: fc.integer({ min: 0, max: 31 }),
      function: fc.integer({ min: 0, max: 7 }),
      config: fc.oneof(fc.uint8Array({ minLength: 256, maxLength: 256 }), fc.uint8Array({ minLength: 4096, maxLength: 4096 })),
    });
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 4 }), (entries) => {
        expect(parseConfigDump(formatConfigDump(entries))).toEqual(entries);
      }),
      { numRuns: 50 },
    );
  });

  it('rejects garbage with a line number', () => {
    expect(() => parseConfigDump('01:00.0 \n00: zz\n')).toThrow(/line 2/);
    expect(() => parseConfigDump('00: 00 11\n')).toThrow(/line 1/);
  });
});

const hasLspci = spawnSync('lspci', ['--version'], { encoding: 'utf8' }).status === 0;

describe('lspci -F decodes our dumps', () => {
  it.skipIf(!hasLspci)(
    'IDs, class, BARs, PCIe, MSI, MSI-X, PM, AER, DSN decode with pciutils (skipped when lspci is not installed: apt-get install pciutils)',
    () => {
      const tester = new LinkTesterFunction({
        dma: { read: (_a, l) => Promise.resolve(new Uint8Array(l)), write: () => Promise.resolve() },
        irq: { raise: () => Promise.resolve() },
        rng: new SeededRng(1),
        serialNumber: 0x0011_2233_4455_6677n,
      });
      const lt = tester.pci;
      const bases = [0xfe00_0000, 0xfe00_1000, 0xfe00_2000, 0xfe01_0000, 0xfe10_0000, 0xfe20_0000];
      bases.forEach((b, i) => cfgWrite(lt, 0x10 + 4 * i, 4, b));
      cfgWrite(lt, 0x04, 2, 0x6);
      cfgWrite(lt, (lt.msix?.offset ?? 0) + 2, 2, 0x8000);
      lt.errors.malformedTlp(new Uint8Array([0x40, 0, 0, 1, 0, 0, 0, 0x0f, 0xfe, 0, 0, 0]));

      const nic0 = new PciFunction({
        vendorId: 0x1af4,
        deviceId: 0x1041,
        revisionId: 1,
        classCode: 0x020000,
        subsystemVendorId: 0x1af4,
        subsystemId: 0x1100,
        bars: [{ index: 4, kind: 'mem64', size: 0x4000, prefetchable: true }],
        msix: { vectors: 3, tableBar: 4, tableOffset: 0x2000, pbaBar: 4, pbaOffset: 0x3000 },
        pcie: { linkSpeedGts: 16, linkWidth: 8 },
      });
      const nic1 = new PciFunction({ vendorId: 0x1af4, deviceId: 0x1041, revisionId: 1, classCode: 0x020000 });
      new PciDevice([nic0, nic1]);
      cfgWrite(nic0, 0x20, 4, 0xe000_0000);
      cfgWrite(nic0, 0x04, 2, 0x6);

      const dir = mkdtempSync(join(tmpdir(), 'tlpwire-lspci-'));
      try {
        const file = join(dir, 'dump.txt');
        writeFileSync(
          file,
          formatConfigDump([
            { bus: 1, device: 0, function: 0, config: lt.config.snapshot() },
            { bus: 2, device: 0, function: 0, config: nic0.config.snapshot() },
            { bus: 2, device: 0, function: 1, config: nic1.config.snapshot() },
          ]),
        );
        const run = spawnSync('lspci', ['-F', file, '-vvv', '-nn'], { encoding: 'utf8' });
        expect(run.status).toBe(0);
        const out = run.stdout;
        const [ltOut = '', nicOut = '', nic1Out = ''] = out.split(/\n(?=\d\d:\d\d\.\d )/);
        const expectLines = (text: string, lines: (string | RegExp)[]): void => {
          for (const l of lines) {
            if (typeof l === 'string') expect(text, `missing: ${l}`).toContain(l);
            else expect(text).toMatch(l);
          }
        };
        expectLines(ltOut, [
          '01:00.0 Unassigned class [ff00]',
          '[104c:b500]',
          'Control: I/O- Mem+ BusMaster+',
          'Region 0: Memory at fe000000 (32-bit, non-prefetchable)',
          'Region 5: Memory at fe200000 (32-bit, non-prefetchable)',
          'Power Management version 3',
          /MSI: Enable- Count=1\/32 Maskable- 64bit\+/,
          'Express (v2) Endpoint',
          'MaxPayload 512 bytes',
          'ExtTag+',
          'FLReset+',
          'LnkCap:\tPort #0, Speed 8GT/s, Width x4',
          'LnkSta:\tSpeed 8GT/s, Width x4',
          'Completion Timeout: Range ABCD, TimeoutDis+',
          '10BitTagComp+ 10BitTagReq+',
          'MSI-X: Enable+ Count=32 Masked-',
          'Vector table: BAR=0 offset=00000080',
          'PBA: BAR=0 offset=00000280',
          'Advanced Error Reporting',
          /UESta:.*MalfTLP\+/,
          /UESvrt:.*MalfTLP\+/,
          'First Error Pointer: 12',
          'HeaderLog: 40000001 0000000f fe000000 00000000',
          'Device Serial Number 00-11-22-33-44-55-66-77',
        ]);
        expectLines(nicOut, [
          '02:00.0 Ethernet controller [0200]',
          '[1af4:1041] (rev 01)',
          'Subsystem: Red Hat, Inc. Device [1af4:1100]',
          'Region 4: Memory at e0000000 (64-bit, prefetchable)',
          'LnkCap:\tPort #0, Speed 16GT/s, Width x8',
          'MSI-X: Enable- Count=3 Masked-',
          'Vector table: BAR=4 offset=00002000',
          'PBA: BAR=4 offset=00003000',
        ]);
        expect(nic1Out).toContain('02:00.1 Ethernet controller [0200]');
        expect(out).not.toContain('<ignored>');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
