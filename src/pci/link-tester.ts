/**
 * The link tester: a PCI function with the register block and behaviour of Linux's PCI endpoint
 * test function (pci-epf-test), so the host side of pcitest's matrix can run against it.
 *
 *   BAR0 (test register BAR)                        BAR1..BAR5: plain memory for the BAR test
 *   0x000 MAGIC        0x020 CHECKSUM               (512, 1024, 16384, 131072, 1048576 bytes)
 *   0x004 COMMAND      0x024 IRQ_TYPE
 *   0x008 STATUS       0x028 IRQ_NUMBER
 *   0x00c SRC lo/hi    0x02c FLAGS (USE_DMA)
 *   0x014 DST lo/hi    0x030 CAPS (read-only)
 *   0x01c SIZE
 *   0x080 MSI-X table (16 B per vector), then the PBA
 *
 * Directions are the endpoint's (see src/spec/pci-epf-test.ts): READ = DMA read of host memory
 * at SRC and compare crc32_le with CHECKSUM; WRITE = random bytes DMA-written to DST, their
 * checksum stored in CHECKSUM; COPY = read SRC, write DST. After each, STATUS gets the result
 * bit, then IRQ_RAISED, then the interrupt of IRQ_TYPE/IRQ_NUMBER is raised.
 *
 * The register block and the decoding are synchronous. The work itself (`processCommand`) is
 * asynchronous and goes through the `dma` and `irq` ports, which the endpoint role implements with
 * real MRd/MWr TLPs and INTx/MSI/MSI-X; tests use in-memory fakes.
 */
import { TlpwireError, type Clock, type Rng } from '../core/index.js';
import {
  PCI_CLASS,
  PCI_EPF_TEST_BAR_SIZES,
  PCI_EPF_TEST_CAPS,
  PCI_EPF_TEST_COMMAND,
  PCI_EPF_TEST_FLAGS,
  PCI_EPF_TEST_HOWTO_IDS,
  PCI_EPF_TEST_IRQ_TYPE,
  PCI_EPF_TEST_REG,
  PCI_EPF_TEST_STATUS,
  PCI_INTERRUPT_PIN,
  PCI_MSI_MAX_VECTORS,
  PCI_MSIX_MAX_VECTORS,
} from '../spec/index.js';
import { OverlayRegion, type BarRegion } from './bar-region.js';
import { epfTestChecksum } from './crc32.js';
import type { InterruptMessage } from './msi-capability.js';
import { msixPbaBytes, msixTableBytes } from './msix.js';
import type { PcieCapabilityOptions } from './pcie-capability.js';
import { PciFunction, type BarDefinition, type BarKind } from './pci-function.js';

// The register map, re-exported so users of the link tester need only this layer.
export {
  PCI_EPF_TEST_BAR_SIZES,
  PCI_EPF_TEST_CAPS,
  PCI_EPF_TEST_COMMAND,
  PCI_EPF_TEST_FLAGS,
  PCI_EPF_TEST_IRQ_TYPE,
  PCI_EPF_TEST_REG,
  PCI_EPF_TEST_STATUS,
} from '../spec/index.js';

export type LinkTestKind = 'raise-irq' | 'read' | 'write' | 'copy';

/** A decoded COMMAND write, with the registers it uses. */
export interface LinkTestOperation {
  kind: LinkTestKind;
  /** The COMMAND value that asked for it. */
  command: number;
  src: number;
  dst: number;
  size: number;
  irqType: number;
  /** 1-based for MSI/MSI-X (vector = irqNumber − 1), as the host driver writes it. */
  irqNumber: number;
  useDma: boolean;
}

export type LinkTestDecode = { ok: true; op: LinkTestOperation } | { ok: false; reason: string };

/** The endpoint's view of host memory (the DMA engine: MRd/MWr TLPs). Rejects on UR/CA/timeout. */
export interface LinkTesterDma {
  read(address: number, length: number): Promise<Uint8Array>;
  write(address: number, data: Uint8Array): Promise<void>;
}

/** Raises an interrupt: type PCI_EPF_TEST_IRQ_TYPE.*, number as in IRQ_NUMBER. */
export interface LinkTesterIrq {
  raise(type: number, number: number): Promise<void>;
}

const TWO_32 = 0x1_0000_0000;

/** The 128-byte register block at offset 0 of the test register BAR. */
export class LinkTesterRegisters implements BarRegion {
  private readonly bytes = new Uint8Array(PCI_EPF_TEST_REG.BLOCK_SIZE);
  /** Called when the host writes a non-zero COMMAND (schedule `processCommand`). */
  onCommand: () => void = () => {};

  constructor(private readonly caps: number) {
    this.reset();
  }

  read(offset: number, length: number): Uint8Array {
    return this.bytes.slice(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    const capsAt = PCI_EPF_TEST_REG.CAPS;
    let touchedCommand = false;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at < 0 || at >= this.bytes.length) continue;
      // CAPS is the endpoint's to set; the host only reads it.
      if (at >= capsAt && at < capsAt + 4) continue;
      this.bytes[at] = data[i] ?? 0;
      if (at >= PCI_EPF_TEST_REG.COMMAND && at < PCI_EPF_TEST_REG.COMMAND + 4) touchedCommand = true;
    }
    if (touchedCommand && this.get(PCI_EPF_TEST_REG.COMMAND) !== 0) this.onCommand();
  }

  reset(): void {
    this.bytes.fill(0);
    this.set(PCI_EPF_TEST_REG.CAPS, this.caps);
  }

  /** A 32-bit register (endpoint side). */
  get(reg: number): number {
    const b = this.bytes;
    return ((b[reg] ?? 0) | ((b[reg + 1] ?? 0) << 8) | ((b[reg + 2] ?? 0) << 16) | ((b[reg + 3] ?? 0) << 24)) >>> 0;
  }

  set(reg: number, value: number): void {
    for (let i = 0; i < 4; i++) this.bytes[reg + i] = (value >>> (8 * i)) & 0xff;
  }

  get status(): number {
    return this.get(PCI_EPF_TEST_REG.STATUS);
  }

  /** ORs bits into STATUS (the endpoint reporting a result). */
  setStatus(bits: number): void {
    this.set(PCI_EPF_TEST_REG.STATUS, (this.status | bits) >>> 0);
  }

  /**
   * Takes the pending command as the endpoint's command handler does: reads COMMAND, clears
   * COMMAND and STATUS, and decodes it. Null when COMMAND is 0.
   */
  takeCommand(): LinkTestDecode | null {
    const command = this.get(PCI_EPF_TEST_REG.COMMAND);
    if (command === 0) return null;
    this.set(PCI_EPF_TEST_REG.COMMAND, 0);
    this.set(PCI_EPF_TEST_REG.STATUS, 0);
    return decodeLinkTestCommand(command, (reg) => this.get(reg));
  }
}

/** Decodes a COMMAND value against the other registers (read through `reg`). */
export function decodeLinkTestCommand(command: number, reg: (offset: number) => number): LinkTestDecode {
  const R = PCI_EPF_TEST_REG;
  const C = PCI_EPF_TEST_COMMAND;
  const irqType = reg(R.IRQ_TYPE);
  if (irqType > PCI_EPF_TEST_IRQ_TYPE.MSIX) return { ok: false, reason: `unknown IRQ type ${irqType}` };
  let kind: LinkTestKind;
  switch (command) {
    case C.RAISE_INTX_IRQ:
    case C.RAISE_MSI_IRQ:
    case C.RAISE_MSIX_IRQ:
      kind = 'raise-irq';
      break;
    case C.READ:
      kind = 'read';
      break;
    case C.WRITE:
      kind = 'write';
      break;
    case C.COPY:
      kind = 'copy';
      break;
    default:
      return { ok: false, reason: `invalid command 0x${command.toString(16)}` };
  }
  return {
    ok: true,
    op: {
      kind,
      command,
      src: reg(R.SRC_ADDR_HI) * TWO_32 + reg(R.SRC_ADDR_LO),
      dst: reg(R.DST_ADDR_HI) * TWO_32 + reg(R.DST_ADDR_LO),
      size: reg(R.SIZE),
      irqType,
      irqNumber: reg(R.IRQ_NUMBER),
      useDma: (reg(R.FLAGS) & PCI_EPF_TEST_FLAGS.USE_DMA) !== 0,
    },
  };
}

export interface LinkTesterOptions {
  dma: LinkTesterDma;
  irq: LinkTesterIrq;
  /** Random source for the WRITE test's data. */
  rng: Rng;
  /** Measures each transfer when given. */
  clock?: Clock;
  vendorId?: number;
  deviceId?: number;
  /** MSI vectors offered (1..32, a power of two); 0 for no MSI. Default 32. */
  msiVectors?: number;
  /** MSI-X vectors offered (1..2048); 0 for no MSI-X. Default 32. */
  msixVectors?: number;
  /** BAR kinds; default six 32-bit BARs. With 64-bit BARs only the even indices exist. */
  barKind?: Extract<BarKind, 'mem32' | 'mem64'>;
  /** Largest SIZE the endpoint accepts (it buffers the data). Default 16 MiB. */
  maxTransferSize?: number;
  /** Whether FLAGS.USE_DMA is honoured; when false such commands are ignored, as in Linux. */
  dmaSupported?: boolean;
  serialNumber?: bigint;
  pcie?: PcieCapabilityOptions;
}

/** What one processed command did. */
export interface LinkTestOutcome {
  op: LinkTestDecode;
  status: number;
  /** Whether an interrupt was actually raised. */
  irqRaised: boolean;
  /** Time the transfer took on the given clock (0 without a clock). */
  elapsedNs: number;
}

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

export class LinkTesterFunction {
  readonly pci: PciFunction;
  readonly registers: LinkTesterRegisters;
  readonly testRegBar = 0;
  /** Where the MSI-X table sits in the test register BAR. */
  readonly msixTableOffset: number = PCI_EPF_TEST_REG.BLOCK_SIZE;
  private readonly dma: LinkTesterDma;
  private readonly irq: LinkTesterIrq;
  private readonly rng: Rng;
  private readonly clock: Clock | null;
  private readonly maxTransferSize: number;
  private readonly dmaSupported: boolean;
  private running = false;

  constructor(options: LinkTesterOptions) {
    this.dma = options.dma;
    this.irq = options.irq;
    this.rng = options.rng;
    this.clock = options.clock ?? null;
    this.maxTransferSize = options.maxTransferSize ?? 16 * 1024 * 1024;
    this.dmaSupported = options.dmaSupported ?? true;
    const msiVectors = options.msiVectors ?? 32;
    const msixVectors = options.msixVectors ?? 32;
    if (!Number.isInteger(msiVectors) || msiVectors < 0 || msiVectors > PCI_MSI_MAX_VECTORS) {
      throw new TlpwireError('ERR_CONFIG', `link tester MSI vectors ${msiVectors}`);
    }
    if (!Number.isInteger(msixVectors) || msixVectors < 0 || msixVectors > PCI_MSIX_MAX_VECTORS) {
      throw new TlpwireError('ERR_CONFIG', `link tester MSI-X vectors ${msixVectors}`);
    }

    const caps =
      PCI_EPF_TEST_CAPS.UNALIGNED_ACCESS |
      PCI_EPF_TEST_CAPS.INTX |
      (msiVectors > 0 ? PCI_EPF_TEST_CAPS.MSI : 0) |
      (msixVectors > 0 ? PCI_EPF_TEST_CAPS.MSIX : 0);
    this.registers = new LinkTesterRegisters(caps);
    this.registers.onCommand = () => this.onCommandWritten();

    // Test register BAR: registers, then the MSI-X table and PBA (as pci-epf-test lays it out).
    const tableBytes = msixVectors > 0 ? msixTableBytes(msixVectors) : 0;
    const pbaOffset = this.msixTableOffset + tableBytes;
    const regBarBytes = PCI_EPF_TEST_REG.BLOCK_SIZE + tableBytes + (msixVectors > 0 ? msixPbaBytes(msixVectors) : 0);
    const kind = options.barKind ?? 'mem32';
    const step = kind === 'mem64' ? 2 : 1;
    const bars: BarDefinition[] = [];
    for (let i = 0; i < PCI_EPF_TEST_BAR_SIZES.length; i += step) {
      const size = PCI_EPF_TEST_BAR_SIZES[i] ?? 512;
      if (i === this.testRegBar) {
        bars.push({
          index: i,
          kind,
          size: Math.max(size, nextPow2(regBarBytes)),
          region: new OverlayRegion(null).map(0, PCI_EPF_TEST_REG.BLOCK_SIZE, this.registers),
        });
      } else {
        bars.push({ index: i, kind, size });
      }
    }
    this.pci = new PciFunction({
      vendorId: options.vendorId ?? PCI_EPF_TEST_HOWTO_IDS.VENDOR_ID,
      deviceId: options.deviceId ?? PCI_EPF_TEST_HOWTO_IDS.DEVICE_ID,
      classCode: PCI_CLASS.OTHERS,
      interruptPin: PCI_INTERRUPT_PIN.INTA,
      bars,
      ...(msiVectors > 0 ? { msi: { vectors: msiVectors, address64: true } } : {}),
      ...(msixVectors > 0
        ? {
            msix: {
              vectors: msixVectors,
              tableBar: this.testRegBar,
              tableOffset: this.msixTableOffset,
              pbaBar: this.testRegBar,
              pbaOffset,
            },
          }
        : {}),
      ...(options.pcie !== undefined ? { pcie: options.pcie } : {}),
      ...(options.serialNumber !== undefined ? { serialNumber: options.serialNumber } : {}),
    });
  }

  /** Called when the host writes COMMAND; by default nothing (the owner polls `processCommand`). */
  onCommandWritten: () => void = () => {};

  /** True while a command is being processed. */
  get busy(): boolean {
    return this.running;
  }

  /**
   * Processes the command in COMMAND, if any, as pci-epf-test's command handler does, and keeps
   * going while the host has written another. Returns the outcomes (empty when there was none).
   * Never rejects on the host's input: a bad address or a failed DMA becomes a STATUS bit.
   */
  async processCommand(): Promise<LinkTestOutcome[]> {
    if (this.running) return [];
    this.running = true;
    const outcomes: LinkTestOutcome[] = [];
    try {
      for (;;) {
        const decoded = this.registers.takeCommand();
        if (decoded === null) break;
        outcomes.push(await this.run(decoded));
      }
    } finally {
      this.running = false;
    }
    return outcomes;
  }

  private async run(decoded: LinkTestDecode): Promise<LinkTestOutcome> {
    const regs = this.registers;
    if (!decoded.ok) return { op: decoded, status: regs.status, irqRaised: false, elapsedNs: 0 };
    const op = decoded.op;
    if (op.useDma && !this.dmaSupported) {
      return { op: decoded, status: regs.status, irqRaised: false, elapsedNs: 0 };
    }
    const S = PCI_EPF_TEST_STATUS;
    const start = this.clock?.nowNs() ?? 0;
    switch (op.kind) {
      case 'raise-irq':
        break;
      case 'read': {
        const data = await this.fetch(op.src, op.size);
        if (data === null) regs.setStatus(S.READ_FAIL);
        else regs.setStatus(epfTestChecksum(data) === regs.get(PCI_EPF_TEST_REG.CHECKSUM) ? S.READ_SUCCESS : S.READ_FAIL);
        break;
      }
      case 'write': {
        if (!this.addressOk(op.dst, op.size)) {
          regs.setStatus(S.DST_ADDR_INVALID | S.WRITE_FAIL);
          break;
        }
        const data = new Uint8Array(op.size);
        for (let i = 0; i < data.length; i += 4) {
          const r = this.rng.u32();
          for (let b = 0; b < 4 && i + b < data.length; b++) data[i + b] = (r >>> (8 * b)) & 0xff;
        }
        regs.set(PCI_EPF_TEST_REG.CHECKSUM, epfTestChecksum(data));
        regs.setStatus((await this.store(op.dst, data)) ? S.WRITE_SUCCESS : S.WRITE_FAIL);
        break;
      }
      case 'copy': {
        if (!this.addressOk(op.dst, op.size)) {
          regs.setStatus(S.DST_ADDR_INVALID | S.COPY_FAIL);
          break;
        }
        const data = await this.fetch(op.src, op.size);
        regs.setStatus(data !== null && (await this.store(op.dst, data)) ? S.COPY_SUCCESS : S.COPY_FAIL);
        break;
      }
    }
    const elapsedNs = (this.clock?.nowNs() ?? 0) - start;
    // STATUS is final before the interrupt is raised: the host's handler reads it (pci-epf-test
    // orders it the same way).
    regs.setStatus(S.IRQ_RAISED);
    const irqRaised = await this.raise(op.irqType, op.irqNumber);
    return { op: decoded, status: regs.status, irqRaised, elapsedNs };
  }

  /** DMA-reads [address, address + size); null (with SRC_ADDR_INVALID if so) on failure. */
  private async fetch(address: number, size: number): Promise<Uint8Array | null> {
    if (!this.addressOk(address, size)) {
      this.registers.setStatus(PCI_EPF_TEST_STATUS.SRC_ADDR_INVALID);
      return null;
    }
    if (!this.pci.busMasterEnabled) return null;
    try {
      const data = await this.dma.read(address, size);
      return data.length === size ? data : null;
    } catch {
      return null;
    }
  }

  private async store(address: number, data: Uint8Array): Promise<boolean> {
    if (!this.pci.busMasterEnabled) return false;
    try {
      await this.dma.write(address, data);
      return true;
    } catch {
      return false;
    }
  }

  /** The endpoint cannot map a zero-sized, oversized or beyond-2^53 buffer (pci_epc_map_addr fails). */
  private addressOk(address: number, size: number): boolean {
    return size > 0 && size <= this.maxTransferSize && Number.isSafeInteger(address + size);
  }

  private async raise(type: number, number: number): Promise<boolean> {
    const T = PCI_EPF_TEST_IRQ_TYPE;
    let count: number;
    if (type === T.INTX) count = 1;
    else if (type === T.MSI) count = this.pci.msi?.enabled === true ? this.pci.msi.vectorsEnabled : 0;
    else count = this.pci.msix?.enabled === true ? this.pci.msix.vectors : 0;
    // pci-epf-test refuses a vector beyond those the host enabled (and MSI/MSI-X numbers are 1-based).
    if (type !== T.INTX && (number < 1 || number > count)) return false;
    try {
      await this.irq.raise(type, type === T.INTX ? 0 : number);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The `irq` port implemented on a PciFunction: INTx pulses the interrupt level (the function's
 * `onIntx` sends Assert_INTx then Deassert_INTx), MSI and MSI-X build the message from the
 * function's capability and table and write it with `memoryWrite` (a posted MWr of one DW).
 * A held message (masked, BME clear) is sent later through the function's `onInterruptMessage`.
 */
export function functionInterrupts(
  fn: PciFunction,
  memoryWrite: (address: number, data: Uint8Array) => Promise<void>,
): LinkTesterIrq {
  const send = (msg: InterruptMessage | null): Promise<void> => {
    if (msg === null) return Promise.resolve();
    const dw = new Uint8Array(4);
    new DataView(dw.buffer).setUint32(0, msg.data >>> 0, true);
    return memoryWrite(msg.address, dw);
  };
  return {
    raise(type: number, number: number): Promise<void> {
      if (type === PCI_EPF_TEST_IRQ_TYPE.INTX) {
        fn.setInterruptLevel(true);
        fn.setInterruptLevel(false);
        return Promise.resolve();
      }
      if (type === PCI_EPF_TEST_IRQ_TYPE.MSI) return send(fn.raiseMsi(number - 1));
      if (type === PCI_EPF_TEST_IRQ_TYPE.MSIX) return send(fn.raiseMsix(number - 1));
      return Promise.reject(new TlpwireError('ERR_CONFIG', `unknown interrupt type ${type}`));
    },
  };
}
