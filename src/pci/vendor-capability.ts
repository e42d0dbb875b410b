/**
 * A vendor-specific capability (ID 0x09, PCI Code and ID Assignment §2):
 *
 *   +0x00 ID 0x09 | +0x01 next | +0x02 length | +0x03.. vendor-defined
 *
 * The list manager places it and links it; this writes the length and the initial body, all
 * read-only. A user of the capability (the virtio PCI transport, for its `virtio_pci_cap`s)
 * redefines the fields it needs writable with `space.define(cap.offset + x, …)` and hooks writes
 * with `space.onWrite`.
 */
import { TlpwireError } from '../core/index.js';
import { PCI_CAP_ID, PCI_VNDR } from '../spec/index.js';
import type { CapabilityList } from './capability-list.js';
import type { ConfigSpace } from './config-space.js';

export interface VendorCapabilityOptions {
  /** Capability length in bytes (header included), 3..(room left). */
  length: number;
  /** Bytes from offset 3 onward (at most length − 3); the rest is zero. */
  body?: Uint8Array;
  at?: number;
}

export class VendorCapability {
  readonly offset: number;
  readonly length: number;

  constructor(
    readonly space: ConfigSpace,
    caps: CapabilityList,
    options: VendorCapabilityOptions,
  ) {
    const { length } = options;
    const body = options.body ?? new Uint8Array(0);
    if (!Number.isInteger(length) || length < 3 || length > 0xc0 || body.length > length - 3) {
      throw new TlpwireError('ERR_CONFIG', `bad vendor capability length ${length} (body ${body.length} bytes)`);
    }
    this.length = length;
    this.offset = caps.add(PCI_CAP_ID.VENDOR_SPECIFIC, length, options.at === undefined ? {} : { at: options.at });
    space.define(this.offset + PCI_VNDR.LENGTH, 1, length);
    for (let i = 3; i < length; i++) space.define(this.offset + i, 1, body[i - 3] ?? 0);
  }
}
