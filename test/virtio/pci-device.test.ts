import { describe, expect, it } from 'vitest';
import { VirtioPciDevice, VIRTIO_REGION, featureBit, type VirtioDeviceImpl } from '../../src/virtio/index.js';
import { VIRTIO_COMMON, VIRTIO_F, VIRTIO_STATUS } from '../../src/spec/index.js';

function device(opts: { orderPlatform?: boolean; accessPlatform?: boolean } = {}) {
  const events: string[] = [];
  const impl: VirtioDeviceImpl = {
    deviceId: 1,
    features: featureBit(5),
    numQueues: 2,
    maxQueueSize: 256,
    configSize: 8,
    readConfig: (off, len) => new Uint8Array(len).fill(off),
    writeConfig: () => {},
    start: (ctx) => events.push(`start ${ctx.queues.filter(Boolean).length}`),
    kick: (q) => events.push(`kick ${q}`),
    reset: () => events.push('reset'),
  };
  const dev = new VirtioPciDevice({ impl, memory: { read: async () => new Uint8Array(0), write: () => {}, barrier: () => {} }, ...opts });
  const bar = dev.pci.barRegion(0)!;
  const w = (off: number, size: 1 | 2 | 4, v: number) => {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = (v >>> (8 * i)) & 0xff;
    bar.write(VIRTIO_REGION.COMMON + off, b);
  };
  const r = (off: number, size: 1 | 2 | 4) => {
    const b = bar.read(VIRTIO_REGION.COMMON + off, size);
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + b[i]!;
    return v;
  };
  const offered = (): bigint => {
    w(VIRTIO_COMMON.DEVICE_FEATURE_SELECT, 4, 0);
    const lo = r(VIRTIO_COMMON.DEVICE_FEATURE, 4);
    w(VIRTIO_COMMON.DEVICE_FEATURE_SELECT, 4, 1);
    return (BigInt(r(VIRTIO_COMMON.DEVICE_FEATURE, 4)) << 32n) | BigInt(lo);
  };
  const accept = (f: bigint) => {
    w(VIRTIO_COMMON.DRIVER_FEATURE_SELECT, 4, 0);
    w(VIRTIO_COMMON.DRIVER_FEATURE, 4, Number(f & 0xffffffffn));
    w(VIRTIO_COMMON.DRIVER_FEATURE_SELECT, 4, 1);
    w(VIRTIO_COMMON.DRIVER_FEATURE, 4, Number(f >> 32n));
    w(VIRTIO_COMMON.DEVICE_STATUS, 1, VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK);
    return (r(VIRTIO_COMMON.DEVICE_STATUS, 1) & VIRTIO_STATUS.FEATURES_OK) !== 0;
  };
  return { dev, w, r, offered, accept, events };
}

describe('virtio PCI device: common configuration and feature negotiation', () => {
  it('a real PCI card offers VERSION_1, ACCESS_PLATFORM and ORDER_PLATFORM by default; older cards can leave them out', () => {
    const f = device().offered();
    for (const b of [VIRTIO_F.VERSION_1, VIRTIO_F.ACCESS_PLATFORM, VIRTIO_F.ORDER_PLATFORM, VIRTIO_F.EVENT_IDX, VIRTIO_F.INDIRECT_DESC, 5]) {
      expect((f >> BigInt(b)) & 1n).toBe(1n);
    }
    const old = device({ orderPlatform: false, accessPlatform: false }).offered();
    expect((old >> BigInt(VIRTIO_F.ORDER_PLATFORM)) & 1n).toBe(0n);
    expect((old >> BigInt(VIRTIO_F.ACCESS_PLATFORM)) & 1n).toBe(0n);
  });

  it('FEATURES_OK sticks only for a subset of what was offered that includes VERSION_1', () => {
    const a = device();
    expect(a.accept(a.offered())).toBe(true);
    const b = device();
    expect(b.accept(b.offered() & ~featureBit(VIRTIO_F.VERSION_1))).toBe(false);
    const c = device({ orderPlatform: false });
    expect(c.accept(c.offered() | featureBit(VIRTIO_F.ORDER_PLATFORM))).toBe(false);
    const d = device();
    // a driver that ignores ORDER_PLATFORM is accepted (the device "MAY fail or run slower")
    expect(d.accept(d.offered() & ~featureBit(VIRTIO_F.ORDER_PLATFORM))).toBe(true);
  });

  it('writing 0 to device_status resets it; queue fields are per queue_select and size is fixed once enabled', () => {
    const { w, r, events, accept, offered } = device();
    accept(offered());
    w(VIRTIO_COMMON.QUEUE_SELECT, 2, 1);
    expect(r(VIRTIO_COMMON.QUEUE_SIZE, 2)).toBe(256);
    w(VIRTIO_COMMON.QUEUE_SIZE, 2, 64);
    w(VIRTIO_COMMON.QUEUE_DESC_LO, 4, 0x1000);
    w(VIRTIO_COMMON.QUEUE_ENABLE, 2, 1);
    w(VIRTIO_COMMON.QUEUE_SIZE, 2, 32);
    expect(r(VIRTIO_COMMON.QUEUE_SIZE, 2)).toBe(64);
    expect(r(VIRTIO_COMMON.QUEUE_NOTIFY_OFF, 2)).toBe(1);
    w(VIRTIO_COMMON.QUEUE_SELECT, 2, 0);
    expect(r(VIRTIO_COMMON.QUEUE_ENABLE, 2)).toBe(0);
    expect(r(VIRTIO_COMMON.NUM_QUEUES, 2)).toBe(2);
    w(VIRTIO_COMMON.DEVICE_STATUS, 1, 0);
    expect(r(VIRTIO_COMMON.DEVICE_STATUS, 1)).toBe(0);
    expect(events).toContain('reset');
    w(VIRTIO_COMMON.QUEUE_SELECT, 2, 1);
    expect(r(VIRTIO_COMMON.QUEUE_ENABLE, 2)).toBe(0);
  });

  it('a queue size that is not a power of two makes DRIVER_OK end in DEVICE_NEEDS_RESET, not a crash', () => {
    const { w, r, accept, offered, dev } = device();
    accept(offered());
    w(VIRTIO_COMMON.QUEUE_SELECT, 2, 0);
    w(VIRTIO_COMMON.QUEUE_SIZE, 2, 100);
    w(VIRTIO_COMMON.QUEUE_ENABLE, 2, 1);
    w(VIRTIO_COMMON.DEVICE_STATUS, 1, VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK | VIRTIO_STATUS.DRIVER_OK);
    expect(r(VIRTIO_COMMON.DEVICE_STATUS, 1) & VIRTIO_STATUS.DEVICE_NEEDS_RESET).toBe(VIRTIO_STATUS.DEVICE_NEEDS_RESET);
    expect(dev.needsResetReason).toMatch(/power of two/);
  });
});
