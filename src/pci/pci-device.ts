/**
 * A PCI device: up to eight functions behind one device number. Function 0 must exist (software
 * probes it first); when more than one function exists, every function's Header Type has the
 * Multi-Function bit set (§7.5.1.1.9), so software scans functions 1..7.
 */
import { TlpwireError } from '../core/index.js';
import { PCI_CFG, PCI_HEADER_TYPE } from '../spec/index.js';
import type { BarHit, PciFunction } from './pci-function.js';

export const PCI_MAX_FUNCTIONS = 8;

export interface DeviceBarHit extends BarHit {
  function: number;
}

export class PciDevice {
  private readonly fns: (PciFunction | undefined)[];

  /** `functions[n]` is function n; gaps are allowed except at 0. */
  constructor(functions: readonly (PciFunction | undefined)[]) {
    if (functions.length === 0 || functions.length > PCI_MAX_FUNCTIONS || functions[0] === undefined) {
      throw new TlpwireError('ERR_CONFIG', 'a device has function 0 and at most 8 functions');
    }
    this.fns = [...functions];
    const present = this.fns.filter((f): f is PciFunction => f !== undefined);
    if (new Set(present).size !== present.length) {
      throw new TlpwireError('ERR_CONFIG', 'the same PciFunction appears twice in a device');
    }
    if (present.length > 1) {
      for (const f of present) f.config.setDefaultBits(PCI_CFG.HEADER_TYPE, 1, PCI_HEADER_TYPE.MULTI_FUNCTION);
    }
  }

  get multiFunction(): boolean {
    return this.fns.filter((f) => f !== undefined).length > 1;
  }

  function(n: number): PciFunction | null {
    return this.fns[n] ?? null;
  }

  /** [function number, function] for every present function, in order. */
  get functions(): [number, PciFunction][] {
    const out: [number, PciFunction][] = [];
    this.fns.forEach((f, n) => {
      if (f !== undefined) out.push([n, f]);
    });
    return out;
  }

  /** A configuration read; null when the function does not exist (the completer answers UR). */
  configRead(fn: number, register: number): number | null {
    return this.fns[fn]?.configRead(register) ?? null;
  }

  /** A configuration write; false when the function does not exist. */
  configWrite(fn: number, register: number, value: number, byteEnables: number): boolean {
    const f = this.fns[fn];
    if (f === undefined) return false;
    f.configWrite(register, value, byteEnables);
    return true;
  }

  /** The function and BAR that decode a memory access, or null (UR). */
  claims(address: number, length = 1): DeviceBarHit | null {
    for (const [n, f] of this.functions) {
      const hit = f.claims(address, length);
      if (hit !== null) return { function: n, ...hit };
    }
    return null;
  }
}
