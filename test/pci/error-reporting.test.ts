import { describe, expect, it } from 'vitest';
import { PciFunction } from '../../src/pci/index.js';
import { cfgRead, cfgWrite } from './cfg-access.js';

// Bit positions from PCIe Base Spec §7.8.4.2 / §7.8.4.5, written out here rather than imported.
const UNC = { POISON: 1 << 12, COMP_TIME: 1 << 14, COMP_ABORT: 1 << 15, UNX_COMP: 1 << 16, MALF: 1 << 18, ECRC: 1 << 19, UNSUP: 1 << 20 };
const COR_ADV_NFAT = 1 << 13;
const DEVSTA = { CED: 1, NFED: 2, FED: 4, URD: 8 };
const STATUS = { MDPE: 1 << 8, STA: 1 << 11, RTA: 1 << 12, RMA: 1 << 13, SSE: 1 << 14, DPE: 1 << 15 };

/** A 4DW MWr header: Fmt 011 Type 00000, length 1, requester 01:00.0, tag 5, address 0x1_2345_6780. */
const MWR64 = new Uint8Array([0x60, 0x00, 0x00, 0x01, 0x01, 0x00, 0x05, 0x0f, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x67, 0x80]);

function fn(): { f: PciFunction; pcie: number; aer: number } {
  const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, bars: [{ index: 0, kind: 'mem32', size: 4096 }] });
  return { f, pcie: f.pcie?.offset ?? -1, aer: f.aer?.offset ?? -1 };
}

const devsta = (f: PciFunction, pcie: number): number => cfgRead(f, pcie + 0xa, 2) & 0xf;
const enableAll = (f: PciFunction, pcie: number): void => cfgWrite(f, pcie + 8, 2, 0x2810 | 0xf);

describe('error recording (AER + Device Status + Status)', () => {
  it('malformed TLP: fatal by default, header logged byte 0 in bits 31:24, First Error Pointer 18', () => {
    const { f, pcie, aer } = fn();
    const r = f.errors.malformedTlp(MWR64);
    expect(r).toEqual({ severity: 'fatal', advisory: false, masked: false, message: null });
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.MALF);
    expect(cfgRead(f, aer + 0x18, 4) & 0x1f).toBe(18);
    expect([0, 1, 2, 3].map((i) => cfgRead(f, aer + 0x1c + 4 * i, 4))).toEqual([0x60000001, 0x0100050f, 0x00000001, 0x23456780]);
    expect(devsta(f, pcie)).toBe(DEVSTA.FED);
    enableAll(f, pcie);
    expect(f.errors.malformedTlp(MWR64).message).toBe('ERR_FATAL');
  });

  it('the first error keeps the header log until software clears its status bit', () => {
    const { f, aer } = fn();
    f.errors.malformedTlp(MWR64);
    f.errors.ecrcError(new Uint8Array(16).fill(0x11));
    expect(cfgRead(f, aer + 0x18, 4) & 0x1f).toBe(18);
    expect(cfgRead(f, aer + 0x1c, 4)).toBe(0x60000001);
    cfgWrite(f, aer + 4, 4, UNC.MALF); // RW1C
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.ECRC);
    f.errors.poisonedTlpReceived(new Uint8Array(16).fill(0x22));
    expect(cfgRead(f, aer + 0x18, 4) & 0x1f).toBe(12);
    expect(cfgRead(f, aer + 0x1c, 4)).toBe(0x22222222);
  });

  it('unsupported request to a non-posted request is advisory non-fatal: ERR_COR only if unmasked', () => {
    const { f, pcie, aer } = fn();
    enableAll(f, pcie);
    const r = f.errors.unsupportedRequest(MWR64, { nonPosted: true });
    expect(r).toEqual({ severity: 'non-fatal', advisory: true, masked: false, message: null }); // Adv NF masked by default
    expect(devsta(f, pcie)).toBe(DEVSTA.CED | DEVSTA.URD);
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.UNSUP);
    expect(cfgRead(f, aer + 0x10, 4)).toBe(COR_ADV_NFAT);
    cfgWrite(f, aer + 0x14, 4, 0); // unmask Advisory Non-Fatal
    expect(f.errors.unsupportedRequest(MWR64, { nonPosted: true }).message).toBe('ERR_COR');
  });

  it('unsupported posted request is a non-fatal error; UR messages need UR Reporting Enable', () => {
    const { f, pcie } = fn();
    cfgWrite(f, pcie + 8, 2, 0x2810 | 0x2); // NFERE without URRE
    const r = f.errors.unsupportedRequest(MWR64, { nonPosted: false });
    expect(r).toEqual({ severity: 'non-fatal', advisory: false, masked: false, message: null });
    expect(devsta(f, pcie)).toBe(DEVSTA.NFED | DEVSTA.URD);
    cfgWrite(f, pcie + 8, 2, 0x2810 | 0x2 | 0x8);
    expect(f.errors.unsupportedRequest(MWR64, { nonPosted: false }).message).toBe('ERR_NONFATAL');
  });

  it('SERR# Enable sends non-fatal/fatal errors and sets Signaled System Error', () => {
    const { f } = fn();
    cfgWrite(f, 0x04, 2, 0x100);
    expect(f.errors.malformedTlp().message).toBe('ERR_FATAL');
    expect(cfgRead(f, 0x06, 2) & STATUS.SSE).toBe(STATUS.SSE);
  });

  it('completer abort sets Signaled Target Abort and AER Completer Abort', () => {
    const { f, aer } = fn();
    const r = f.errors.completerAbort(MWR64, { nonPosted: true });
    expect(r.advisory).toBe(true);
    expect(cfgRead(f, 0x06, 2) & STATUS.STA).toBe(STATUS.STA);
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.COMP_ABORT);
  });

  it('completion timeout: non-fatal, no header logged', () => {
    const { f, pcie, aer } = fn();
    enableAll(f, pcie);
    expect(f.errors.completionTimeout()).toEqual({ severity: 'non-fatal', advisory: false, masked: false, message: 'ERR_NONFATAL' });
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.COMP_TIME);
    expect(cfgRead(f, aer + 0x18, 4) & 0x1f).toBe(14);
    expect(cfgRead(f, aer + 0x1c, 4)).toBe(0);
    expect(devsta(f, pcie)).toBe(DEVSTA.NFED);
  });

  it('poisoned TLP sets Detected Parity Error, and Master Data Parity Error for a completion with PER', () => {
    const { f, aer } = fn();
    f.errors.poisonedTlpReceived(MWR64);
    expect(cfgRead(f, 0x06, 2) & (STATUS.DPE | STATUS.MDPE)).toBe(STATUS.DPE);
    cfgWrite(f, 0x06, 2, 0xffff);
    cfgWrite(f, 0x04, 2, 0x40); // Parity Error Response
    f.errors.poisonedTlpReceived(MWR64, { completion: true });
    expect(cfgRead(f, 0x06, 2) & (STATUS.DPE | STATUS.MDPE)).toBe(STATUS.DPE | STATUS.MDPE);
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.POISON);
  });

  it('unexpected completion is advisory when non-fatal, a real error when made fatal', () => {
    const { f, pcie, aer } = fn();
    enableAll(f, pcie);
    expect(f.errors.unexpectedCompletion(MWR64).advisory).toBe(true);
    cfgWrite(f, aer + 0xc, 4, 0x00462030 | UNC.UNX_COMP);
    expect(f.errors.unexpectedCompletion(MWR64)).toEqual({ severity: 'fatal', advisory: false, masked: false, message: 'ERR_FATAL' });
  });

  it('a masked error sets only its status bit: no pointer, no header, no message', () => {
    const { f, pcie, aer } = fn();
    enableAll(f, pcie);
    cfgWrite(f, aer + 8, 4, UNC.MALF);
    expect(f.errors.malformedTlp(MWR64)).toEqual({ severity: 'fatal', advisory: false, masked: true, message: null });
    expect(cfgRead(f, aer + 4, 4)).toBe(UNC.MALF);
    expect(cfgRead(f, aer + 0x18, 4) & 0x1f).toBe(0);
    expect(cfgRead(f, aer + 0x1c, 4)).toBe(0);
    expect(devsta(f, pcie)).toBe(DEVSTA.FED); // Device Status ignores the AER mask
  });

  it('correctable errors and received UR/CA completions', () => {
    const { f, pcie, aer } = fn();
    enableAll(f, pcie);
    expect(f.errors.correctable(1 << 6).message).toBe('ERR_COR');
    expect(cfgRead(f, aer + 0x10, 4)).toBe(1 << 6);
    cfgWrite(f, aer + 0x10, 4, 0xffffffff);
    expect(cfgRead(f, aer + 0x10, 4)).toBe(0);
    f.errors.receivedUnsupportedRequestCompletion();
    f.errors.receivedCompleterAbortCompletion();
    expect(cfgRead(f, 0x06, 2) & (STATUS.RMA | STATUS.RTA)).toBe(STATUS.RMA | STATUS.RTA);
  });

  it('a function without AER still reports through Device Status and messages', () => {
    const f = new PciFunction({ vendorId: 1, deviceId: 2, classCode: 0, aer: false });
    const pcie = f.pcie?.offset ?? -1;
    enableAll(f, pcie);
    expect(f.errors.malformedTlp().message).toBe('ERR_FATAL');
    expect(f.errors.unsupportedRequest(undefined, { nonPosted: true }).message).toBe('ERR_COR');
    expect(devsta(f, pcie)).toBe(DEVSTA.FED | DEVSTA.CED | DEVSTA.URD);
  });
});
