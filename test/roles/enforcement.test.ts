import { describe, expect, it } from 'vitest';
import { TlpwireError } from '../../src/core/index.js';
import { ITEM, PROTOCOL_VERSION } from '../../src/link/index.js';
import { enumerateDevice, type EnumeratedFunction, type EnumerationResult } from '../../src/pci/index.js';
import { completionTlp, encodeTlp, memWriteTlp } from '../../src/tlp/index.js';
import { batch, item } from '../link/helpers.js';
import { simPair, type SimPair } from './sim.js';

// Written out from the specs (PCIe §7.5.1.1.3, §7.5.3.4/5, §7.8.4; pci_endpoint_test.c).
const COMMAND_REG = 0x04;
const CMD_MEM = 1 << 1;
const CMD_BME = 1 << 2;
const STATUS_RECEIVED_MASTER_ABORT = 1 << 13;
const DEVCTL = 0x08;
const DEVSTA = 0x0a;
const DEVCTL_INITIATE_FLR = 0x8000;
const DEVSTA_CED = 1 << 0;
const DEVSTA_NFED = 1 << 1;
const DEVSTA_FED = 1 << 2;
const DEVSTA_URD = 1 << 3;
const AER_UNCOR_STATUS = 0x04;
const AER_COR_STATUS = 0x10;
const UNC_COMP_TIME = 1 << 14;
const UNC_UNX_COMP = 1 << 16;
const UNC_MALF_TLP = 1 << 18;
const UNC_UNSUP = 1 << 20;
const COR_ADV_NFAT = 1 << 13;
const EPF = { MAGIC: 0x0, COMMAND: 0x4, STATUS: 0x8, SRC_LO: 0xc, SRC_HI: 0x10, SIZE: 0x1c, CHECKSUM: 0x20, IRQ_TYPE: 0x24, IRQ_NUMBER: 0x28 };
const EPF_COMMAND_READ = 1 << 3;
const EPF_STATUS_READ_FAIL = 1 << 1;

async function enumerated(s: SimPair): Promise<EnumerationResult> {
  return s.settle(enumerateDevice(s.config, { bus: s.port.bus, mmio: s.mmio, interrupts: s.rc.interrupts, maxPayloadSize: 256 }));
}

function bar0(f: EnumeratedFunction): number {
  return f.bars.find((b) => b.index === 0)!.address!;
}

async function cfg16(s: SimPair, bdf: number, offset: number): Promise<number> {
  const dw = await s.settle(s.config.cfgRead(bdf, offset >> 2));
  return (dw >>> ((offset & 2) * 8)) & 0xffff;
}

async function cfgWrite16(s: SimPair, bdf: number, offset: number, value: number): Promise<void> {
  await s.settle(s.config.cfgWrite(bdf, offset >> 2, (value << ((offset & 2) * 8)) >>> 0, (offset & 2) === 0 ? 0x3 : 0xc));
}

/** The function's AER registers and Device Status, read over the link as the host's AER driver does. */
async function errorState(s: SimPair, f: EnumeratedFunction): Promise<{ uncor: number; cor: number; devsta: number }> {
  const aer = f.extendedCapabilities.find((c) => c.id === 0x0001)!.offset;
  const uncor = await s.settle(s.config.cfgRead(f.bdf, (aer + AER_UNCOR_STATUS) >> 2));
  const cor = await s.settle(s.config.cfgRead(f.bdf, (aer + AER_COR_STATUS) >> 2));
  const devsta = await cfg16(s, f.bdf, f.pcie!.capOffset + DEVSTA);
  return { uncor, cor, devsta };
}

describe('Command register enforcement end to end', () => {
  it('with Memory Space Enable clear, BAR reads complete UR (the CPU sees all ones) and the function logs it', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    const regs = bar0(f);
    expect(await s.settle(s.mmio.read32(regs + EPF.MAGIC))).toBe(0);
    const errors: string[] = [];
    s.rc.interrupts.onErrorMessage((m, src) => errors.push(`${m} ${src.requesterId.toString(16)}`));

    const cmd = await cfg16(s, f.bdf, COMMAND_REG);
    await cfgWrite16(s, f.bdf, COMMAND_REG, cmd & ~CMD_MEM);
    expect(await s.settle(s.mmio.read32(regs + EPF.MAGIC))).toBe(0xffffffff);
    const err = await s.settle(s.mmio.read(regs, 4)).catch((e: unknown) => e);
    expect((err as TlpwireError).code).toBe('ERR_CPL_UR');
    // A write with MSE clear is dropped: MAGIC keeps its value once decoding is back on.
    await s.settle(s.mmio.write32(regs + EPF.MAGIC, 0x12345678));
    await s.idle();

    const st = await errorState(s, f);
    expect(st.uncor & UNC_UNSUP).toBe(UNC_UNSUP);
    expect(st.devsta & DEVSTA_URD).toBe(DEVSTA_URD);
    // A UR answered to a read is an Advisory Non-Fatal Error (§6.2.3.2.4): Correctable Error
    // Detected, but no Message while Advisory Non-Fatal stays masked (its default). The posted
    // write has nobody to answer: with UR Reporting Enable set it is reported as ERR_NONFATAL.
    expect(st.devsta & DEVSTA_CED).toBe(DEVSTA_CED);
    expect(errors).toEqual(['ERR_NONFATAL 100']);

    await cfgWrite16(s, f.bdf, COMMAND_REG, cmd);
    expect(await s.settle(s.mmio.read32(regs + EPF.MAGIC))).toBe(0);
  });

  it('with Bus Master Enable clear, the link tester DMA fails and no request leaves the endpoint', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    const regs = bar0(f);
    const src = s.rc.ram.allocate(4096);
    const cmd = await cfg16(s, f.bdf, COMMAND_REG);
    await cfgWrite16(s, f.bdf, COMMAND_REG, cmd & ~CMD_BME);
    const c = s.ep.stack!.counters;
    const before = { mrd: c.get('tlp.sent.MRd'), mwr: c.get('tlp.sent.MWr') };
    const fired: number[] = [];
    s.rc.interrupts.setHandler(f.msix!.vectors[0]!, (i) => fired.push(i));

    // The host's "write test": the endpoint is asked to DMA-read 4 KiB and signal MSI-X vector 1.
    for (const [off, v] of [
      [EPF.SRC_LO, src],
      [EPF.SRC_HI, 0],
      [EPF.SIZE, 4096],
      [EPF.CHECKSUM, 0],
      [EPF.IRQ_TYPE, 2],
      [EPF.IRQ_NUMBER, 1],
      [EPF.COMMAND, EPF_COMMAND_READ],
    ] as const) {
      await s.settle(s.mmio.write32(regs + off, v));
    }
    await s.idle();
    expect((await s.settle(s.mmio.read32(regs + EPF.STATUS))) & EPF_STATUS_READ_FAIL).toBe(EPF_STATUS_READ_FAIL);
    expect(c.get('tlp.sent.MRd')).toBe(before.mrd);
    expect(c.get('tlp.sent.MWr')).toBe(before.mwr);
    expect(fired).toEqual([]);
    // The MSI-X message waits in the Pending Bit Array ...
    expect(s.built.device.function(0)!.msixTable!.isPending(0)).toBe(true);
    const dmaErr = await s.ep.dmaPort(0).read(src, 4).catch((e: unknown) => e);
    expect((dmaErr as TlpwireError).code).toBe('ERR_REQUEST');

    // ... and leaves as soon as the host sets Bus Master Enable again.
    await cfgWrite16(s, f.bdf, COMMAND_REG, cmd);
    await s.idle();
    expect(fired).toEqual([0]);
    expect(c.get('tlp.sent.MWr')).toBe(before.mwr + 1);
  });
});

describe('Function Level Reset over the link', () => {
  it('a config write of Initiate FLR resets the function: decoding off, BARs and MSI-X cleared, registers back to power-on', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    const regs = bar0(f);
    const fn = s.built.device.function(0)!;
    await s.settle(s.mmio.write32(regs + EPF.SIZE, 777));
    expect(await s.settle(s.mmio.read32(regs + EPF.SIZE))).toBe(777);
    const resets = fn.resetCount;
    const devctl = await cfg16(s, f.bdf, f.pcie!.capOffset + DEVCTL);
    await cfgWrite16(s, f.bdf, f.pcie!.capOffset + DEVCTL, devctl | DEVCTL_INITIATE_FLR);

    expect(fn.resetCount).toBe(resets + 1);
    expect((await cfg16(s, f.bdf, COMMAND_REG)) & (CMD_MEM | CMD_BME)).toBe(0);
    expect(await s.settle(s.config.cfgRead(f.bdf, 0x10 >> 2))).toBe(0);
    expect(fn.msix!.enabled).toBe(false);
    // Initiate FLR reads back 0; MPS is link-specific and survives (§6.6.2).
    expect((await cfg16(s, f.bdf, f.pcie!.capOffset + DEVCTL)) & DEVCTL_INITIATE_FLR).toBe(0);
    expect(fn.pcie!.maxPayloadSizeBytes).toBe(256);
    // The old BAR address no longer decodes.
    expect(await s.settle(s.mmio.read32(regs + EPF.SIZE))).toBe(0xffffffff);

    // A new enumeration brings it back, with its registers at their power-on values.
    const again = (await enumerated(s)).functions[0]!;
    expect(await s.settle(s.mmio.read32(bar0(again) + EPF.SIZE))).toBe(0);
  });
});

describe('AER status set by real events on the endpoint', () => {
  it('a malformed TLP arriving at the endpoint sets Malformed TLP (fatal) in every function', async () => {
    const s = await simPair({ functions: [{ kind: 'linktest' }, { kind: 'linktest' }] });
    const result = await enumerated(s);
    const fatal: number[] = [];
    s.rc.interrupts.onErrorMessage((m, src) => {
      if (m === 'ERR_FATAL') fatal.push(src.requesterId);
    });
    const bad = encodeTlp(memWriteTlp({ requesterId: 0, address: bar0(result.functions[0]!), data: new Uint8Array(16) }));
    bad[3] = 9; // Length says 9 DW; 4 are carried
    s.rcTransport.send([batch(PROTOCOL_VERSION, item(ITEM.TLP, bad))]);
    await s.idle();
    expect(s.ep.stack!.link.state).toBe('up');
    for (const f of result.functions) {
      const st = await errorState(s, f);
      expect(st.uncor & UNC_MALF_TLP).toBe(UNC_MALF_TLP);
      expect(st.devsta & DEVSTA_FED).toBe(DEVSTA_FED);
    }
    // One error Message for the device, from function 0.
    expect(fatal).toEqual([0x0100]);
    // The Header Log holds the bad TLP's first DW (byte 0 in bits 31:24).
    const aer = result.functions[0]!.extendedCapabilities.find((c) => c.id === 1)!.offset;
    const log0 = await s.settle(s.config.cfgRead(0x0100, (aer + 0x1c) >> 2));
    expect(log0).toBe(((bad[0]! << 24) | (bad[1]! << 16) | (bad[2]! << 8) | bad[3]!) >>> 0);
  });

  it('a request to an address no BAR decodes sets Unsupported Request', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    expect(await s.settle(s.mmio.read32(0xd000_0000))).toBe(0xffffffff);
    const st = await errorState(s, f);
    expect(st.uncor & UNC_UNSUP).toBe(UNC_UNSUP);
    expect(st.cor & COR_ADV_NFAT).toBe(COR_ADV_NFAT);
  });

  it('a DMA read the root complex never answers times out: Completion Timeout, Non-Fatal, ERR_NONFATAL', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    const messages: string[] = [];
    s.rc.interrupts.onErrorMessage((m) => messages.push(m));
    // The root complex swallows memory reads from now on.
    const link = s.port.stack.link;
    const inner = link.onTlp;
    const innerRead = link.onMemRead;
    link.onMemRead = undefined; // every read request comes to onTlp, decoded
    link.onTlp = (t) => {
      if (t.kind !== 'MRd' && t.kind !== 'MRd64') inner(t);
    };
    const t0 = s.clock.nowNs();
    const err = await s.settle(s.ep.dmaPort(0).read(0x10_0000, 64)).catch((e: unknown) => e);
    expect((err as TlpwireError).code).toBe('ERR_CPL_TIMEOUT');
    // DevCtl2 was programmed to 260–900 ms; the endpoint waits for the top of the range.
    expect(s.clock.nowNs() - t0).toBeGreaterThanOrEqual(260_000_000);
    expect(s.clock.nowNs() - t0).toBeLessThan(1_000_000_000);
    link.onTlp = inner;
    link.onMemRead = innerRead;
    await s.idle();
    const st = await errorState(s, f);
    expect(st.uncor & UNC_COMP_TIME).toBe(UNC_COMP_TIME);
    expect(st.devsta & DEVSTA_NFED).toBe(DEVSTA_NFED);
    expect(messages).toContain('ERR_NONFATAL');
  });

  it('a completion nobody asked for is an Unexpected Completion, and a UR completion sets Received Master Abort', async () => {
    const s = await simPair();
    const f = (await enumerated(s)).functions[0]!;
    s.port.stack.link.sendTlp(completionTlp({ completerId: 0, requesterId: 0x0100, tag: 77, data: new Uint8Array(4) }));
    await s.idle();
    const st = await errorState(s, f);
    expect(st.uncor & UNC_UNX_COMP).toBe(UNC_UNX_COMP);

    // Host RAM is 64 MiB: a DMA read beyond it is unclaimed at the root complex → UR.
    const err = await s.settle(s.ep.dmaPort(0).read(0x7000_0000, 4)).catch((e: unknown) => e);
    expect((err as TlpwireError).code).toBe('ERR_CPL_UR');
    const status = (await s.settle(s.config.cfgRead(f.bdf, COMMAND_REG >> 2))) >>> 16;
    expect(status & STATUS_RECEIVED_MASTER_ABORT).toBe(STATUS_RECEIVED_MASTER_ABORT);
  });

  it("readInto reads into the caller's buffer and resolves to it; one that fails rejects as read does", async () => {
    const s = await simPair();
    await enumerated(s);
    const dma = s.ep.dmaPort(0);
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff);
    await s.settle(dma.write(0x10_0000 + 12, data) as Promise<void>);
    const dest = new Uint8Array(1000).fill(0xee);
    const got = await s.settle(dma.readInto!(0x10_0000 + 12, dest));
    expect(got).toBe(dest);
    expect(dest).toEqual(data);
    const err = await s.settle(dma.readInto!(0x7000_0000, new Uint8Array(4))).catch((e: unknown) => e);
    expect((err as TlpwireError).code).toBe('ERR_CPL_UR');
  });
});
