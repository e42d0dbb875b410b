import { describe, expect, it } from 'vitest';
import { isTlpwireError } from '../../src/core/index.js';
import { DEFAULT_FAKE_CREDITS } from './fake-link.js';
import { EP_BASE, makePair, patterned, runUntilSettled } from './harness.js';

describe('TransactionLayer', () => {
  it('returns every credit it took once traffic has drained', async () => {
    const { rc, ep, rcLink, epLink, settle, clock } = makePair({ ordering: { mode: 'adversarial', holdBack: { probability: 0.3, maxNs: 500 } } });
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      jobs.push(rc.requester.memWrite(EP_BASE + i * 1000, patterned(700, i)));
      jobs.push(rc.requester.memRead(EP_BASE + i * 900, 3000));
      jobs.push(ep.requester.memRead(i * 500, 1500));
    }
    await settle(Promise.all(jobs));
    clock.run();
    for (const link of [rcLink, epLink]) {
      expect(link.unreleased).toEqual({ P: 0, NP: 0, Cpl: 0 });
      expect(link.avail.P).toEqual(DEFAULT_FAKE_CREDITS.P);
      expect(link.avail.NP).toEqual(DEFAULT_FAKE_CREDITS.NP);
    }
    expect(rc.stats().tlpsReceived).toBeGreaterThan(0);
    expect(ep.stats().requester.tagsInUse).toBe(0);
  });

  it('a completer whose completions cannot leave stops taking reads (NP credits held)', async () => {
    const { rc, rcLink, epLink, settle, clock } = makePair({ link: { b: { credits: { NP: { hdr: 4, data: 4 } } } } });
    epLink.setAvailable('Cpl', { hdr: 0, data: 0 });
    const reads = Array.from({ length: 10 }, (_, i) => rc.requester.memRead(EP_BASE + i * 64, 64));
    clock.run({ untilNs: 100_000 });
    // Four reads went out and were taken; their credits stay with the completer.
    expect(rcLink.avail.NP.hdr).toBe(0);
    expect(epLink.unreleased.NP).toBe(4);
    expect(rc.queues.length('NP')).toBe(6);
    epLink.setAvailable('Cpl', { hdr: Infinity, data: Infinity });
    const got = await settle(Promise.all(reads));
    expect(got.length).toBe(10);
  });

  it('link down fails outstanding reads and queued writes with ERR_LINK_DOWN', async () => {
    const { rc, rcLink, clock } = makePair();
    rcLink.setAvailable('P', { hdr: 0, data: 0 });
    const codes: string[] = [];
    const note = (p: Promise<unknown>): Promise<void> =>
      p.then(
        () => void codes.push('resolved'),
        (e: unknown) => void codes.push(isTlpwireError(e) ? e.code : 'other'),
      );
    const read = note(rc.requester.memRead(EP_BASE, 64));
    const write = note(rc.requester.memWrite(EP_BASE, new Uint8Array(64)));
    const states: string[] = [];
    rc.onLinkState = (s) => states.push(s);
    rcLink.takeDown('test');
    await runUntilSettled(clock, Promise.all([read, write]));
    expect(codes.sort()).toEqual(['ERR_LINK_DOWN', 'ERR_LINK_DOWN']);
    expect(states).toEqual(['down']);
    expect(rc.requester.stats().tagsInUse).toBe(0);
    expect(rc.queues.length()).toBe(0);
  });

  it('setId changes the Requester ID used from then on', async () => {
    const { ep, settle, rcRam } = makePair();
    ep.setId(0x0300);
    expect(ep.requester.id).toBe(0x0300);
    expect(await settle(ep.requester.memRead(16, 4))).toEqual(rcRam.bytes.subarray(16, 20));
  });
});
