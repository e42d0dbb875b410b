import { describe, expect, it } from 'vitest';
import {
  LinkTesterFunction,
  crc32Le,
  decodeLinkTestCommand,
  epfTestChecksum,
  functionInterrupts,
  type LinkTesterDma,
  type LinkTesterOptions,
  type InterruptMessage,
} from '../../src/pci/index.js';
import { SeededRng } from '../../src/core/index.js';
import { cfgWrite } from './cfg-access.js';

// Register offsets and bits as pci_endpoint_test.c defines them (written out, not imported).
const REG = { MAGIC: 0x0, COMMAND: 0x4, STATUS: 0x8, SRC_LO: 0xc, SRC_HI: 0x10, DST_LO: 0x14, DST_HI: 0x18, SIZE: 0x1c, CHECKSUM: 0x20, IRQ_TYPE: 0x24, IRQ_NUMBER: 0x28, FLAGS: 0x2c, CAPS: 0x30 };
const CMD = { INTX: 1, MSI: 2, MSIX: 4, READ: 8, WRITE: 16, COPY: 32 };
const ST = { READ_OK: 1, READ_FAIL: 2, WRITE_OK: 4, WRITE_FAIL: 8, COPY_OK: 16, COPY_FAIL: 32, IRQ: 64, SRC_BAD: 128, DST_BAD: 256 };

/** Bit-at-a-time CRC-32 (reflected 0xEDB88320, seed ~0, no final XOR): the test's own crc32_le. */
function refCrc32Le(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return c >>> 0;
}

/** Host memory plus the DMA port the endpoint role would implement with MRd/MWr TLPs. */
class FakeHost implements LinkTesterDma {
  readonly mem = new Uint8Array(4 << 20);
  readonly calls: string[] = [];
  failAt: number | null = null;

  read(address: number, length: number): Promise<Uint8Array> {
    this.calls.push(`read ${address.toString(16)} ${length}`);
    if (this.failAt !== null && address <= this.failAt && this.failAt < address + length) {
      return Promise.reject(new Error('UR'));
    }
    return Promise.resolve(this.mem.slice(address, address + length));
  }

  write(address: number, data: Uint8Array): Promise<void> {
    this.calls.push(`write ${address.toString(16)} ${data.length}`);
    if (this.failAt !== null && address <= this.failAt && this.failAt < address + data.length) {
      return Promise.reject(new Error('UR'));
    }
    this.mem.set(data, address);
    return Promise.resolve();
  }
}

const BAR0 = 0xfe00_0000;

function setup(extra: Partial<LinkTesterOptions> = {}) {
  const host = new FakeHost();
  const irqs: [number, number][] = [];
  const t = new LinkTesterFunction({
    dma: host,
    irq: {
      raise: (type, n) => {
        irqs.push([type, n]);
        return Promise.resolve();
      },
    },
    rng: new SeededRng(42),
    ...extra,
  });
  const f = t.pci;
  for (let i = 0; i < 6; i++) cfgWrite(f, 0x10 + 4 * i, 4, BAR0 + i * 0x10_0000);
  cfgWrite(f, 0x04, 2, 0x6);
  const w32 = (reg: number, v: number): void => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    expect(f.memoryWrite(BAR0 + reg, b)).toBe(true);
  };
  const r32 = (reg: number): number => {
    const b = f.memoryRead(BAR0 + reg, 4);
    return b === null ? -1 : new DataView(b.buffer, b.byteOffset).getUint32(0, true);
  };
  return { host, irqs, t, f, w32, r32 };
}

function fill(mem: Uint8Array, at: number, n: number, seed: number): Uint8Array {
  const rng = new SeededRng(seed);
  for (let i = 0; i < n; i++) mem[at + i] = rng.u32() & 0xff;
  return mem.subarray(at, at + n);
}

describe('crc32_le', () => {
  it('matches the CRC-32 check value and an independent bitwise implementation', () => {
    const check = new TextEncoder().encode('123456789');
    expect(epfTestChecksum(check)).toBe((~0xcbf43926) >>> 0);
    expect(epfTestChecksum(new Uint8Array(0))).toBe(0xffffffff);
    const data = fill(new Uint8Array(5000), 0, 5000, 7);
    expect(epfTestChecksum(data)).toBe(refCrc32Le(data));
    expect(crc32Le(0, new Uint8Array([0]))).toBe(0);
  });
});

describe('link tester register block', () => {
  it('MAGIC is read/write, CAPS is read-only and advertises unaligned access, MSI, MSI-X, INTx', () => {
    const { w32, r32 } = setup();
    w32(REG.MAGIC, 0xa0a0a0a0);
    expect(r32(REG.MAGIC)).toBe(0xa0a0a0a0);
    expect(r32(REG.CAPS)).toBe(0b1111);
    w32(REG.CAPS, 0);
    expect(r32(REG.CAPS)).toBe(0b1111);
    const { r32: r2 } = setup({ msiVectors: 0, msixVectors: 0 });
    expect(r2(REG.CAPS)).toBe(0b1001);
  });

  it('every BAR passes the pcitest pattern test, and BAR0 holds the MSI-X table after the registers', () => {
    const { f, t } = setup();
    const sizes = [0, 1, 2, 3, 4, 5].map((i) => f.decodeBar(i)?.size);
    expect(sizes).toEqual([1024, 512, 1024, 16384, 131072, 1048576]);
    expect(t.pci.msix?.tableOffset).toBe(0x80);
    expect(t.pci.msix?.pbaOffset).toBe(0x80 + 32 * 16);
    const pattern = new Uint8Array([0xa0, 0xa0, 0xa0, 0xa0]);
    for (let bar = 1; bar < 6; bar++) {
      const base = BAR0 + bar * 0x10_0000;
      const size = f.decodeBar(bar)?.size ?? 0;
      for (let o = 0; o < size; o += 4) f.memoryWrite(base + o, pattern);
      let mismatches = 0;
      for (let o = 0; o < size; o += 4) {
        const got = f.memoryRead(base + o, 4);
        if (got === null || got.some((b) => b !== 0xa0)) mismatches++;
      }
      expect(mismatches, `BAR${bar}`).toBe(0);
    }
  });

  it('64-bit BARs: only even BAR numbers exist', () => {
    const t = new LinkTesterFunction({
      dma: new FakeHost(),
      irq: { raise: () => Promise.resolve() },
      rng: new SeededRng(1),
      barKind: 'mem64',
    });
    expect(t.pci.barDefinitions.map((b) => [b.index, b.kind])).toEqual([
      [0, 'mem64'],
      [2, 'mem64'],
      [4, 'mem64'],
    ]);
  });
});

describe('decodeLinkTestCommand', () => {
  const regs = (values: Record<number, number>) => (off: number) => values[off] ?? 0;

  it('decodes each command with its registers', () => {
    const r = regs({ [REG.SRC_LO]: 0x1000, [REG.SRC_HI]: 0x2, [REG.DST_LO]: 0x3000, [REG.SIZE]: 1025, [REG.IRQ_TYPE]: 2, [REG.IRQ_NUMBER]: 7, [REG.FLAGS]: 1 });
    const kinds = [CMD.INTX, CMD.MSI, CMD.MSIX, CMD.READ, CMD.WRITE, CMD.COPY].map((c) => {
      const d = decodeLinkTestCommand(c, r);
      return d.ok ? d.op.kind : d.reason;
    });
    expect(kinds).toEqual(['raise-irq', 'raise-irq', 'raise-irq', 'read', 'write', 'copy']);
    const d = decodeLinkTestCommand(CMD.COPY, r);
    expect(d).toEqual({
      ok: true,
      op: { kind: 'copy', command: CMD.COPY, src: 0x2_0000_1000, dst: 0x3000, size: 1025, irqType: 2, irqNumber: 7, useDma: true },
    });
  });

  it('refuses several command bits at once and unknown IRQ types', () => {
    expect(decodeLinkTestCommand(CMD.READ | CMD.WRITE, regs({})).ok).toBe(false);
    expect(decodeLinkTestCommand(1 << 9, regs({})).ok).toBe(false);
    expect(decodeLinkTestCommand(CMD.READ, regs({ [REG.IRQ_TYPE]: 3 }))).toEqual({ ok: false, reason: 'unknown IRQ type 3' });
  });
});

describe('LinkTesterFunction with fake DMA and IRQ', () => {
  const SIZES = [1, 1024, 1025, 1024000, 1024001];

  for (const useDma of [false, true]) {
    for (const size of SIZES) {
      it(`host write test (COMMAND_READ: endpoint reads host memory), ${size} bytes, DMA ${useDma}`, async () => {
        const { host, irqs, t, w32, r32 } = setup();
        const src = 0x10_0003; // unaligned on purpose: CAPS says unaligned access is fine
        const data = fill(host.mem, src, size, size);
        w32(REG.CHECKSUM, refCrc32Le(data));
        w32(REG.SRC_LO, src);
        w32(REG.SRC_HI, 0);
        w32(REG.SIZE, size);
        w32(REG.FLAGS, useDma ? 1 : 0);
        w32(REG.IRQ_TYPE, 0);
        w32(REG.IRQ_NUMBER, 0);
        w32(REG.COMMAND, CMD.READ);
        const [outcome] = await t.processCommand();
        expect(r32(REG.STATUS)).toBe(ST.READ_OK | ST.IRQ);
        expect(r32(REG.COMMAND)).toBe(0);
        expect(outcome?.irqRaised).toBe(true);
        expect(host.calls).toEqual([`read ${src.toString(16)} ${size}`]);
        expect(irqs).toEqual([[0, 0]]);
      });

      it(`host read test (COMMAND_WRITE: endpoint writes host memory), ${size} bytes, DMA ${useDma}`, async () => {
        const { host, t, w32, r32 } = setup();
        const dst = 0x20_0000;
        w32(REG.DST_LO, dst);
        w32(REG.SIZE, size);
        w32(REG.FLAGS, useDma ? 1 : 0);
        w32(REG.IRQ_TYPE, 0);
        w32(REG.COMMAND, CMD.WRITE);
        await t.processCommand();
        expect(r32(REG.STATUS)).toBe(ST.WRITE_OK | ST.IRQ);
        expect(r32(REG.CHECKSUM)).toBe(refCrc32Le(host.mem.subarray(dst, dst + size)));
        expect(host.mem[dst + size]).toBe(0);
      });

      it(`host copy test, ${size} bytes, DMA ${useDma}`, async () => {
        const { host, t, w32, r32 } = setup();
        const src = 0x1000;
        const dst = 0x20_0001;
        const data = fill(host.mem, src, size, size + 1);
        const crc = refCrc32Le(data);
        w32(REG.SRC_LO, src);
        w32(REG.DST_LO, dst);
        w32(REG.SIZE, size);
        w32(REG.FLAGS, useDma ? 1 : 0);
        w32(REG.COMMAND, CMD.COPY);
        await t.processCommand();
        expect(r32(REG.STATUS)).toBe(ST.COPY_OK | ST.IRQ);
        expect(refCrc32Le(host.mem.subarray(dst, dst + size))).toBe(crc);
      });
    }
  }

  it('a wrong checksum fails the READ; a failed DMA fails the operation', async () => {
    const { host, t, w32, r32 } = setup();
    fill(host.mem, 0x1000, 64, 1);
    w32(REG.CHECKSUM, 0x1234);
    w32(REG.SRC_LO, 0x1000);
    w32(REG.SIZE, 64);
    w32(REG.COMMAND, CMD.READ);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.READ_FAIL | ST.IRQ);
    host.failAt = 0x30_0000;
    w32(REG.DST_LO, 0x30_0000);
    w32(REG.COMMAND, CMD.WRITE);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.WRITE_FAIL | ST.IRQ);
    w32(REG.SRC_LO, 0x30_0000);
    w32(REG.DST_LO, 0x1000);
    w32(REG.COMMAND, CMD.COPY);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.COPY_FAIL | ST.IRQ);
  });

  it('zero, oversized and beyond-2^53 buffers are invalid addresses; no DMA is attempted', async () => {
    const { host, t, w32, r32 } = setup({ maxTransferSize: 4096 });
    w32(REG.SIZE, 0);
    w32(REG.COMMAND, CMD.READ);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.SRC_BAD | ST.READ_FAIL | ST.IRQ);
    w32(REG.SIZE, 4097);
    w32(REG.COMMAND, CMD.WRITE);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.DST_BAD | ST.WRITE_FAIL | ST.IRQ);
    w32(REG.SIZE, 16);
    w32(REG.SRC_HI, 0xffff_ffff);
    w32(REG.COMMAND, CMD.COPY);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.SRC_BAD | ST.COPY_FAIL | ST.IRQ);
    expect(host.calls).toEqual([]);
  });

  it('with Bus Master Enable clear the function issues no DMA at all', async () => {
    const { host, t, f, w32, r32 } = setup();
    cfgWrite(f, 0x04, 2, 0x2);
    w32(REG.SRC_LO, 0x1000);
    w32(REG.SIZE, 16);
    w32(REG.COMMAND, CMD.READ);
    await t.processCommand();
    w32(REG.DST_LO, 0x1000);
    w32(REG.COMMAND, CMD.WRITE);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(ST.WRITE_FAIL | ST.IRQ);
    expect(host.calls).toEqual([]);
  });

  it('raises MSI/MSI-X only for vectors the host enabled (1-based), and INTx as number 0', async () => {
    const { irqs, t, f, w32, r32 } = setup();
    const msi = f.msi?.offset ?? -1;
    w32(REG.IRQ_TYPE, 1);
    w32(REG.IRQ_NUMBER, 1);
    w32(REG.COMMAND, CMD.MSI);
    const [o1] = await t.processCommand();
    expect(o1?.irqRaised).toBe(false); // MSI not enabled by the host
    expect(r32(REG.STATUS)).toBe(ST.IRQ); // pci-epf-test sets IRQ_RAISED before checking
    cfgWrite(f, msi + 2, 2, 0x1 | (2 << 4)); // 4 vectors
    w32(REG.IRQ_NUMBER, 4);
    w32(REG.COMMAND, CMD.MSI);
    await t.processCommand();
    w32(REG.IRQ_NUMBER, 5);
    w32(REG.COMMAND, CMD.MSI);
    await t.processCommand();
    cfgWrite(f, (f.msix?.offset ?? -1) + 2, 2, 0x8000);
    w32(REG.IRQ_TYPE, 2);
    w32(REG.IRQ_NUMBER, 32);
    w32(REG.COMMAND, CMD.MSIX);
    await t.processCommand();
    w32(REG.IRQ_TYPE, 0);
    w32(REG.IRQ_NUMBER, 9);
    w32(REG.COMMAND, CMD.INTX);
    await t.processCommand();
    expect(irqs).toEqual([
      [1, 4],
      [2, 32],
      [0, 0],
    ]);
  });

  it('ignores USE_DMA commands when DMA is not supported, and unknown IRQ types', async () => {
    const { host, irqs, t, w32, r32 } = setup({ dmaSupported: false });
    w32(REG.SIZE, 4);
    w32(REG.FLAGS, 1);
    w32(REG.COMMAND, CMD.READ);
    const [o] = await t.processCommand();
    expect(o?.irqRaised).toBe(false);
    w32(REG.FLAGS, 0);
    w32(REG.IRQ_TYPE, 3);
    w32(REG.COMMAND, CMD.READ);
    await t.processCommand();
    expect(r32(REG.STATUS)).toBe(0);
    expect(host.calls).toEqual([]);
    expect(irqs).toEqual([]);
  });

  it('tells its owner when COMMAND is written and drains commands written meanwhile', async () => {
    const { t, w32 } = setup();
    let notified = 0;
    t.onCommandWritten = () => notified++;
    w32(REG.SIZE, 1);
    w32(REG.COMMAND, 0);
    expect(notified).toBe(0);
    w32(REG.COMMAND, CMD.WRITE);
    expect(notified).toBe(1);
    const first = t.processCommand();
    expect(t.busy).toBe(true);
    expect(await t.processCommand()).toEqual([]); // already running
    w32(REG.COMMAND, CMD.INTX);
    const outcomes = await first;
    expect(outcomes.map((o) => (o.op.ok ? o.op.op.kind : 'bad'))).toEqual(['write', 'raise-irq']);
    expect(t.busy).toBe(false);
  });

  it('measures transfers on the given clock', async () => {
    let now = 1000;
    const clock = { nowNs: () => (now += 500), setTimer: () => ({ cancel: () => {} }), defer: (fn: () => void) => fn() };
    const { t, w32 } = setup({ clock });
    w32(REG.SIZE, 8);
    w32(REG.COMMAND, CMD.WRITE);
    const [o] = await t.processCommand();
    expect(o?.elapsedNs).toBe(500);
  });

  it('FLR clears the registers but keeps CAPS', () => {
    const { f, w32 } = setup();
    w32(REG.MAGIC, 0x1234);
    f.functionLevelReset();
    for (let i = 0; i < 6; i++) cfgWrite(f, 0x10 + 4 * i, 4, BAR0 + i * 0x10_0000);
    cfgWrite(f, 0x04, 2, 0x2);
    const b = f.memoryRead(BAR0, 0x34);
    const view = b === null ? null : new DataView(b.buffer, b.byteOffset);
    expect(view?.getUint32(REG.MAGIC, true)).toBe(0);
    expect(view?.getUint32(REG.CAPS, true)).toBe(0b1111);
  });
});

describe('functionInterrupts (the irq port on a PciFunction)', () => {
  it('MSI-X and MSI become one-DW memory writes of the message; INTx pulses the wire', async () => {
    const { t, f } = setup();
    const writes: [number, number[]][] = [];
    const irq = functionInterrupts(f, (address, data) => {
      writes.push([address, [...data]]);
      return Promise.resolve();
    });
    // Program MSI-X vector 1 (table at BAR0 + 0x80) and enable MSI-X.
    const entry = BAR0 + 0x80 + 16;
    f.memoryWrite(entry, new Uint8Array([0x00, 0x10, 0xe0, 0xfe]));
    f.memoryWrite(entry + 8, new Uint8Array([0x42, 0x00, 0x00, 0x00]));
    f.memoryWrite(entry + 12, new Uint8Array([0, 0, 0, 0]));
    cfgWrite(f, (f.msix?.offset ?? -1) + 2, 2, 0x8000);
    await irq.raise(2, 2);
    expect(writes).toEqual([[0xfee0_1000, [0x42, 0, 0, 0]]]);
    // Vector 0 is masked: nothing now, the message comes out when unmasked.
    const released: InterruptMessage[] = [];
    f.onInterruptMessage = (m) => released.push(m);
    await irq.raise(2, 1);
    expect(writes).toHaveLength(1);
    f.memoryWrite(BAR0 + 0x80 + 12, new Uint8Array([0, 0, 0, 0]));
    expect(released.map((m) => m.vector)).toEqual([0]);
    cfgWrite(f, (f.msix?.offset ?? -1) + 2, 2, 0);

    const msi = f.msi?.offset ?? -1;
    cfgWrite(f, msi + 4, 4, 0xfee0_2000);
    cfgWrite(f, msi + 0xc, 2, 0x4460);
    cfgWrite(f, msi + 2, 2, 0x1 | (5 << 4));
    await irq.raise(1, 3);
    expect(writes[1]).toEqual([0xfee0_2000, [0x62, 0x44, 0, 0]]);
    cfgWrite(f, msi + 2, 2, 0);

    const wire: boolean[] = [];
    f.onIntx = (a) => wire.push(a);
    await irq.raise(0, 0);
    expect(wire).toEqual([true, false]);
    await expect(irq.raise(7, 1)).rejects.toThrow(/unknown interrupt type/);
    expect(t.pci).toBe(f);
  });
});
