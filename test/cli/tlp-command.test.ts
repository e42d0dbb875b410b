import { describe, expect, it } from 'vitest';
import { runCli } from '../support/run-cli.js';

const run = runCli;

describe('tlpwire tlp decode', () => {
  it('decodes the SPEC-FACTS MRd into one compact JSON line', async () => {
    const r = await run('tlp', 'decode', '0010004091633bff167124c8');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const lines = r.out.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('');
    expect(lines[0]).not.toMatch(/\s/);
    expect(JSON.parse(lines[0]!)).toMatchObject({ kind: 'MRd', tc: 1, lengthDw: 64, requesterId: 37219, tag: 59, firstBe: 15, lastBe: 15, address: '0x167124c8' });
  });

  it('accepts 0x prefixes and separators, one output line per argument', async () => {
    const r = await run('tlp', 'decode', '0x0010004091633bff167124c8', '00 10 00 40 91:63:3b:ff 16-71-24-c8');
    expect(r.code).toBe(0);
    const [a, b] = r.out.trim().split('\n');
    expect(a).toBe(b);
  });

  it('reports a bad argument on stderr with its index, code and offset, keeps going, and exits 2', async () => {
    const r = await run('tlp', 'decode', '0010004091633bff167124c8', '00100041', 'xyz', '0000000100000fff00001000');
    expect(r.code).toBe(2);
    const outLines = r.out.trim().split('\n');
    expect(outLines).toHaveLength(1);
    const errLines = r.err.trim().split('\n');
    expect(errLines).toHaveLength(3);
    expect(errLines[0]).toMatch(/argument 2: ERR_TLP_TRUNCATED at byte 4/);
    expect(errLines[1]).toMatch(/argument 3: ERR_USAGE/);
    expect(errLines[2]).toMatch(/argument 4: ERR_TLP_BYTE_ENABLES at byte 7/);
  });

  it('shows help with examples', async () => {
    const r = await run('tlp', 'decode', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Examples:/);
    expect(r.out).toMatch(/tlpwire tlp decode 0010004091633bff167124c8/);
  });
});

describe('tlpwire tlp encode', () => {
  it('encodes JSON to lowercase hex, one line per argument', async () => {
    const r = await run(
      'tlp',
      'encode',
      '{"kind":"MRd","requesterId":37219,"tag":59,"tc":1,"lengthDw":64,"address":"0x167124c8"}',
      '{"kind":"MWr","requesterId":256,"address":"0x1000","data":"DEADBEEF"}',
    );
    expect(r.code).toBe(0);
    expect(r.out).toBe('0010004091633bff167124c8\n400000010100000f00001000deadbeef\n');
  });

  it('decode then encode gives back the same bytes, including the digest and reserved bits', async () => {
    const inputs = ['0010004091633bff167124c8', '0010804091633bff167124c898301051', '04000001 0000010f 0100f003', '0a000000 01000004 000001ff'];
    for (const hex of inputs) {
      const dec = await run('tlp', 'decode', hex);
      expect(dec.code).toBe(0);
      const enc = await run('tlp', 'encode', dec.out.trim());
      expect(enc.code).toBe(0);
      expect(enc.out.trim()).toBe(hex.replace(/\s/g, ''));
    }
  });

  it('checks a given ecrc, or recomputes it with --fix-ecrc', async () => {
    const bad = '{"kind":"MRd","address":"0x1000","td":true,"ecrc":1}';
    const r = await run('tlp', 'encode', bad);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/argument 1: ERR_TLP_ECRC/);
    const fixed = await run('tlp', 'encode', '--fix-ecrc', bad);
    expect(fixed.code).toBe(0);
    const back = await run('tlp', 'decode', fixed.out.trim());
    expect(back.code).toBe(0);
  });

  it('reports bad JSON and bad fields per argument and exits 2', async () => {
    const r = await run('tlp', 'encode', '{oops', '{"kind":"MRd","address":"0x1000"}', '{"kind":"CfgRd0","bus":300}');
    expect(r.code).toBe(2);
    expect(r.out).toBe('000000010000000f00001000\n');
    const errLines = r.err.trim().split('\n');
    expect(errLines[0]).toMatch(/argument 1: ERR_USAGE: not valid JSON/);
    expect(errLines[1]).toMatch(/argument 3: ERR_TLP_FIELD: field 'bus'/);
  });

  it('shows help with examples and exits 2 without arguments', async () => {
    const help = await run('tlp', 'encode', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--fix-ecrc/);
    expect(help.out).toMatch(/Examples:/);
    const none = await run('tlp', 'encode');
    expect(none.code).toBe(2);
  });
});
