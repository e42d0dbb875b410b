import { describe, expect, it } from 'vitest';
import { PciFunction, type PcieCapabilityOptions } from '../../src/pci/index.js';
import { isTlpwireError } from '../../src/core/index.js';
import { cfgRead, cfgWrite } from './cfg-access.js';

function make(pcie: PcieCapabilityOptions = {}): { f: PciFunction; cap: number } {
  const f = new PciFunction({ vendorId: 0x1234, deviceId: 0x5678, classCode: 0xff0000, pcie });
  const cap = f.capabilities.find(0x10);
  if (cap === null || f.pcie === null) throw new Error('no PCIe capability');
  return { f, cap };
}

describe('PCI Express capability (endpoint, v2)', () => {
  it('advertises version 2, type endpoint, and the Device Capabilities it was built with', () => {
    const { f, cap } = make({ maxPayloadSupported: 1024, extendedTag: true, flr: true });
    expect(cfgRead(f, cap + 2, 2)).toBe(0x0002); // version 2, type 0 (PCI Express Endpoint)
    const devcap = cfgRead(f, cap + 4, 4);
    expect(devcap & 0x7).toBe(3); // 1024 bytes
    expect(devcap & 0x20).toBe(0x20); // Extended Tag Field Supported
    expect(devcap & 0x8000).toBe(0x8000); // Role-Based Error Reporting
    expect((devcap >>> 28) & 1).toBe(1); // FLR capable
    const { f: g, cap: c2 } = make({ maxPayloadSupported: 128, extendedTag: false, flr: false });
    expect(cfgRead(g, c2 + 4, 4) & (0x7 | 0x20 | 0x10000000)).toBe(0);
  });

  it('Device Control has spec defaults and decodes MPS, MRRS, RO, NS, Extended Tag', () => {
    const { f, cap } = make();
    const p = f.pcie;
    expect(cfgRead(f, cap + 8, 2)).toBe(0x2810); // RO + NS enabled, MPS 128, MRRS 512
    expect([p?.maxPayloadSizeBytes, p?.maxReadRequestSizeBytes]).toEqual([128, 512]);
    expect([p?.relaxedOrderingEnabled, p?.noSnoopEnabled, p?.extendedTagEnabled]).toEqual([true, true, false]);
    // MPS 256 (001), MRRS 4096 (101), Extended Tag, RO and NS off, all error enables on.
    cfgWrite(f, cap + 8, 2, (1 << 5) | (5 << 12) | 0x100 | 0xf);
    expect([p?.maxPayloadSizeBytes, p?.maxReadRequestSizeBytes]).toEqual([256, 4096]);
    expect([p?.relaxedOrderingEnabled, p?.noSnoopEnabled, p?.extendedTagEnabled]).toEqual([false, false, true]);
    expect(p?.errorReporting).toEqual({ correctable: true, nonFatal: true, fatal: true, unsupportedRequest: true });
    expect(p?.tagLimit).toBe(256);
    // Phantom Functions and Aux Power PM are not implemented: hardwired 0.
    cfgWrite(f, cap + 8, 2, 0x0600);
    expect(cfgRead(f, cap + 8, 2) & 0x0600).toBe(0);
  });

  it('Extended Tag Field Enable is hardwired 0 when not supported', () => {
    const { f, cap } = make({ extendedTag: false });
    cfgWrite(f, cap + 8, 2, 0x100);
    expect(cfgRead(f, cap + 8, 2) & 0x100).toBe(0);
    expect(f.pcie?.tagLimit).toBe(32);
  });

  it('Initiate FLR reads 0 and triggers the reset only on an FLR-capable function', () => {
    const { f, cap } = make();
    let resets = 0;
    f.onReset = () => resets++;
    cfgWrite(f, cap + 8, 2, 0x8000 | 0x2810);
    expect(resets).toBe(1);
    expect(cfgRead(f, cap + 8, 2) & 0x8000).toBe(0);
    // A DW write that does not enable byte 1 does not touch the bit.
    f.configWrite((cap + 8) >> 2, 0x8000, 0x1);
    expect(resets).toBe(1);
    const { f: g, cap: c2 } = make({ flr: false });
    g.onReset = () => resets++;
    cfgWrite(g, c2 + 8, 2, 0x8000);
    expect(resets).toBe(1);
  });

  it('Device Status error bits are RW1C and set by hardware; Transactions Pending is RO', () => {
    const { f, cap } = make();
    f.pcie?.setDeviceStatus(0x0f);
    f.pcie?.setTransactionsPending(true);
    expect(cfgRead(f, cap + 0xa, 2)).toBe(0x2f);
    cfgWrite(f, cap + 0xa, 2, 0x25);
    expect(cfgRead(f, cap + 0xa, 2)).toBe(0x2a);
    // Writing Device Control through a full DW with zeros in the status half clears nothing.
    f.configWrite((cap + 8) >> 2, 0x2810, 0xf);
    expect(cfgRead(f, cap + 0xa, 2)).toBe(0x2a);
  });

  it('Link Capabilities and Status report the nominal speed and width; the link can retrain lower', () => {
    const { f, cap } = make({ linkSpeedGts: 16, linkWidth: 8 });
    const lnkcap = cfgRead(f, cap + 0xc, 4);
    expect(lnkcap & 0xf).toBe(4); // 16 GT/s is the 4th entry of the Supported Link Speeds Vector
    expect((lnkcap >> 4) & 0x3f).toBe(8);
    expect(cfgRead(f, cap + 0x2c, 4)).toBe(0b11110); // 2.5, 5, 8, 16 GT/s supported
    expect(cfgRead(f, cap + 0x12, 2) & 0x3ff).toBe(4 | (8 << 4));
    f.pcie?.setLinkStatus(8, 4);
    expect([f.pcie?.linkSpeedGts, f.pcie?.linkWidth]).toEqual([8, 4]);
    expect(cfgRead(f, cap + 0x12, 2) & 0x3ff).toBe(3 | (4 << 4));
    let code: string | undefined;
    try {
      f.pcie?.setLinkStatus(32, 4);
    } catch (e) {
      code = isTlpwireError(e) ? e.code : 'other';
    }
    expect(code).toBe('ERR_CONFIG');
    // Link Status is hardware state: software writes do not change it.
    cfgWrite(f, cap + 0x12, 2, 0xffff);
    expect(cfgRead(f, cap + 0x12, 2) & 0x3ff).toBe(3 | (4 << 4));
  });

  it('Device Capabilities 2 / Control 2: completion timeout ranges, disable, 10-bit tags', () => {
    const { f, cap } = make({ completionTimeoutRanges: ['B', 'C'], completionTimeoutDisable: true });
    const devcap2 = cfgRead(f, cap + 0x24, 4);
    expect(devcap2 & 0x1f).toBe(0b10110); // ranges B and C, disable supported
    expect((devcap2 >>> 16) & 3).toBe(3); // 10-bit tag completer and requester
    const p = f.pcie;
    expect(p?.completionTimeout).toEqual({ disabled: false, rangeNs: [50_000, 50_000_000] });
    cfgWrite(f, cap + 0x28, 2, 0b0110); // range B, 65–210 ms
    expect(p?.completionTimeout.rangeNs).toEqual([65_000_000, 210_000_000]);
    cfgWrite(f, cap + 0x28, 2, 0b0001); // range A is not supported: default range applies
    expect(p?.completionTimeout.rangeNs).toEqual([50_000, 50_000_000]);
    cfgWrite(f, cap + 0x28, 2, 0x10 | 0x1000);
    expect(p?.completionTimeout.disabled).toBe(true);
    expect(p?.tag10BitRequesterEnabled).toBe(true);
    expect(p?.tagLimit).toBe(768);
  });

  it('without completion timeout ranges or disable support, Device Control 2 timeout bits are RO 0', () => {
    const { f, cap } = make({
      completionTimeoutRanges: [],
      completionTimeoutDisable: false,
      tag10BitRequester: false,
      tag10BitCompleter: false,
    });
    cfgWrite(f, cap + 0x28, 2, 0xffff);
    expect(cfgRead(f, cap + 0x28, 2)).toBe(0);
  });

  it('refuses a 10-bit tag requester that is not a 10-bit tag completer', () => {
    let code: string | undefined;
    try {
      make({ tag10BitRequester: true, tag10BitCompleter: false });
    } catch (e) {
      code = isTlpwireError(e) ? e.code : 'other';
    }
    expect(code).toBe('ERR_CONFIG');
  });

  it('FLR keeps Max_Payload_Size and Link Control, resets the rest of Device Control', () => {
    const { f, cap } = make();
    cfgWrite(f, cap + 8, 2, (2 << 5) | 0x0f);
    cfgWrite(f, cap + 0x10, 2, 0x48); // RCB 128, Common Clock Configuration
    cfgWrite(f, cap + 0x28, 2, 0x1005);
    f.functionLevelReset();
    expect(cfgRead(f, cap + 8, 2)).toBe(0x2810 | (2 << 5));
    expect(cfgRead(f, cap + 0x10, 2)).toBe(0x48);
    expect(cfgRead(f, cap + 0x28, 2)).toBe(0);
  });
});
