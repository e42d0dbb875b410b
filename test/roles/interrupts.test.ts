import { describe, expect, it } from 'vitest';
import { InterruptController } from '../../src/roles/index.js';
import { messageTlp, type MsgTlp } from '../../src/tlp/index.js';

const BASE = 0xfee0_0000;

function dw(v: number): Uint8Array {
  return new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);
}

function msg(code: number, requesterId = 0x0100): MsgTlp {
  return messageTlp({ requesterId, messageCode: code, routing: 4 }) as MsgTlp;
}

describe('InterruptController', () => {
  it('claims exactly the interrupt window, so it can sit before host RAM', () => {
    const ic = new InterruptController();
    expect(ic.target.claims(BASE, 4, 0)).toBe(true);
    expect(ic.target.claims(BASE + 0x10_0000 - 4, 4, 0)).toBe(true);
    expect(ic.target.claims(BASE - 4, 4, 0)).toBe(false);
    expect(ic.target.claims(BASE + 0x10_0000, 4, 0)).toBe(false);
  });

  it('dispatches an MSI-X write by address and checks its data', () => {
    const ic = new InterruptController();
    const [a, b] = ic.allocateMsix(0x0100, 2);
    expect(a).toMatchObject({ address: BASE, data: 0 });
    expect(b).toMatchObject({ address: BASE + 4, data: 1 });
    const got: [string, number, number][] = [];
    ic.setHandler(a!, (i, rid) => got.push(['a', i, rid]));
    ic.setHandler(b!, (i, rid) => got.push(['b', i, rid]));
    ic.target.write(b!.address, dw(b!.data), 0xf, 0, 0x0100);
    ic.target.write(a!.address, dw(a!.data), 0xf, 0, 0x0101);
    expect(got).toEqual([
      ['b', 0, 0x0100],
      ['a', 0, 0x0101],
    ]);
    // Wrong data, a partial write, an unallocated address: spurious, nobody called.
    ic.target.write(a!.address, dw(5), 0xf, 0, 0x0100);
    ic.target.write(a!.address, dw(a!.data), 0x3, 0, 0x0100);
    ic.target.write(BASE + 0x400, dw(0), 0xf, 0, 0x0100);
    expect(got).toHaveLength(2);
    expect(ic.counters.get('msi.spurious')).toBe(3);
  });

  it('gives an MSI block data values aligned to its size, and reports which vector fired', () => {
    const ic = new InterruptController();
    ic.allocate(1, 0);
    const block = ic.allocate(8, 0x0100);
    expect(block.data % 8).toBe(0);
    const got: number[] = [];
    ic.setHandler(block, (i) => got.push(i));
    for (const v of [0, 7, 3]) ic.target.write(block.address, dw(block.data + v), 0xf, 0, 0x0100);
    ic.target.write(block.address, dw(block.data + 8), 0xf, 0, 0x0100);
    expect(got).toEqual([0, 7, 3]);
    expect(ic.firedCount(block)).toBe(3);
  });

  it('reuses released vectors, and releases everything of an owner', () => {
    const ic = new InterruptController();
    const v = ic.allocateMsix(0x0100, 4);
    ic.allocateMsix(0x0200, 1);
    ic.releaseOwner(0x0100);
    expect(v.every((x) => !ic.has(x))).toBe(true);
    const again = ic.allocate(4, 0x0300);
    expect(again.id).toBe(0);
  });

  it('turns INTx Assert/Deassert into edges per port, requester and pin', () => {
    const ic = new InterruptController();
    const edges: string[] = [];
    ic.onIntx((asserted, pin, src) => edges.push(`${src.port}:${src.requesterId.toString(16)}:${pin}:${asserted ? 'on' : 'off'}`));
    ic.handleMessage(0, msg(0x20));
    ic.handleMessage(0, msg(0x20)); // repeated Assert: no new edge
    ic.handleMessage(1, msg(0x21, 0x0200));
    expect(ic.intxAsserted(0, 0x0100, 1)).toBe(true);
    ic.handleMessage(0, msg(0x24));
    ic.portDown(1);
    expect(ic.intxAsserted(1, 0x0200, 2)).toBe(false);
    expect(edges).toEqual(['0:100:1:on', '1:200:2:on', '0:100:1:off']);
  });

  it('reports error Messages', () => {
    const ic = new InterruptController();
    const got: string[] = [];
    ic.onErrorMessage((m, src) => got.push(`${m}@${src.port}`));
    ic.handleMessage(2, msg(0x30));
    ic.handleMessage(2, msg(0x31));
    ic.handleMessage(2, msg(0x33));
    expect(got).toEqual(['ERR_COR@2', 'ERR_NONFATAL@2', 'ERR_FATAL@2']);
  });
});
