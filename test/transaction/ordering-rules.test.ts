import { describe, expect, it } from 'vitest';
import { mayPass, orderingColumnOf } from '../../src/transaction/index.js';
import { cfgWr, cpl, mrd, msg, mwr } from './tlp-fixtures.js';

// Each row from SPEC-FACTS "Ordering" / PCIe §2.4.1 Table 2-42 (row = later, column = earlier).
describe('mayPass follows the ordering table', () => {
  it('classifies TLPs into the table columns', () => {
    expect([mwr(), msg(), mrd(), cfgWr(), cpl()].map(orderingColumnOf)).toEqual([
      'posted',
      'posted',
      'read',
      'npWithData',
      'completion',
    ]);
  });

  it('A2: a posted request passes a posted one only with RO, or IDO and a different Requester ID', () => {
    expect(mayPass(mwr(), mwr())).toBe(false);
    expect(mayPass(msg(), mwr())).toBe(false);
    expect(mayPass(mwr({ ro: true }), mwr())).toBe(true);
    expect(mayPass(mwr({ ido: true, requesterId: 2 }), mwr({ requesterId: 1 }))).toBe(true);
    expect(mayPass(mwr({ ido: true, requesterId: 1 }), mwr({ requesterId: 1 }))).toBe(false);
    // The earlier write's attributes do not matter.
    expect(mayPass(mwr(), mwr({ ro: true }))).toBe(false);
  });

  it('B2: a read passes a posted request only with IDO and a different Requester ID (RO does not help)', () => {
    expect(mayPass(mrd(), mwr())).toBe(false);
    expect(mayPass(mrd({ ro: true }), mwr())).toBe(false);
    expect(mayPass(mrd({ ido: true, requesterId: 3 }), mwr({ requesterId: 1 }))).toBe(true);
    expect(mayPass(mrd({ ido: true, requesterId: 1 }), mwr({ requesterId: 1 }))).toBe(false);
  });

  it('C2: a non-posted request with data passes a posted one with RO or IDO+different ID', () => {
    expect(mayPass(cfgWr(), mwr())).toBe(false);
    expect(mayPass(cfgWr({ ro: true }), mwr())).toBe(true);
    expect(mayPass(cfgWr({ ido: true, requesterId: 5 }), mwr())).toBe(true);
  });

  it('D2: a completion passes a posted request with RO, IDO (Completer ID vs Requester ID), or as an I/O/config write completion', () => {
    expect(mayPass(cpl(), mwr())).toBe(false);
    expect(mayPass(cpl({ ro: true }), mwr())).toBe(true);
    expect(mayPass(cpl({ ido: true, completerId: 2 }), mwr({ requesterId: 1 }))).toBe(true);
    expect(mayPass(cpl({ ido: true, completerId: 1, requesterId: 9 }), mwr({ requesterId: 1 }))).toBe(false);
    expect(mayPass(cpl({ withData: false }), mwr(), { ioCfgWriteCompletion: true })).toBe(true);
    expect(mayPass(cpl({ withData: false }), mwr())).toBe(false);
  });

  it('A3/A4/A5, D3/D4: posted passes non-posted and completions; completions pass non-posted', () => {
    for (const earlier of [mrd(), cfgWr(), cpl()]) expect(mayPass(mwr(), earlier)).toBe(true);
    expect(mayPass(cpl(), mrd())).toBe(true);
    expect(mayPass(cpl(), cfgWr())).toBe(true);
  });

  it('B3-C5: reads and non-posted writes may pass reads, non-posted writes and completions', () => {
    for (const later of [mrd(), cfgWr()]) for (const earlier of [mrd(), cfgWr(), cpl()]) expect(mayPass(later, earlier)).toBe(true);
  });

  it('D5: completions of different transactions pass each other, parts of one transaction never', () => {
    expect(mayPass(cpl({ tag: 1 }), cpl({ tag: 2 }))).toBe(true);
    expect(mayPass(cpl({ requesterId: 1, tag: 1 }), cpl({ requesterId: 2, tag: 1 }))).toBe(true);
    expect(mayPass(cpl({ tag: 1 }), cpl({ tag: 1 }))).toBe(false);
    expect(mayPass(cpl({ tag: 1, ro: true }), cpl({ tag: 1 }))).toBe(false);
  });

  it('different traffic classes are unordered', () => {
    expect(mayPass(mwr({ tc: 1 }), mwr({ tc: 0 }))).toBe(true);
    expect(mayPass(mrd({ tc: 2 }), mwr({ tc: 0 }))).toBe(true);
  });
});
