/**
 * Config space dumps in the format of `lspci -xxxx`, which pciutils reads back with `lspci -F`:
 *
 *   01:00.0 optional description          ← "BB:DD.F " (the space is required), or "DDDD:BB:DD.F "
 *   00: 4c 10 00 b5 06 04 10 00 …         ← offset in hex (at least 2 digits), 16 bytes
 *   …
 *   ff0: 00 00 …
 *                                          ← a blank line ends the device
 *
 * Bytes are lower-case hex separated by single spaces; 64, 256 or 4096 bytes per device.
 */
import { TlpwireError } from '../core/index.js';

export interface ConfigDumpEntry {
  domain?: number;
  bus: number;
  device: number;
  function: number;
  config: Uint8Array;
  /** Text after the address on the device line (lspci ignores it). */
  description?: string;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** The address of a function as lspci prints it: "BB:DD.F" or "DDDD:BB:DD.F". */
export function formatPciAddress(a: { domain?: number; bus: number; device: number; function: number }): string {
  const domain = a.domain ?? 0;
  const bdf = `${hex2(a.bus)}:${hex2(a.device)}.${a.function}`;
  return domain === 0 ? bdf : `${domain.toString(16).padStart(4, '0')}:${bdf}`;
}

function check(e: ConfigDumpEntry): void {
  const ok =
    Number.isInteger(e.bus) &&
    e.bus >= 0 &&
    e.bus <= 0xff &&
    Number.isInteger(e.device) &&
    e.device >= 0 &&
    e.device <= 0x1f &&
    Number.isInteger(e.function) &&
    e.function >= 0 &&
    e.function <= 7 &&
    (e.domain === undefined || (Number.isInteger(e.domain) && e.domain >= 0 && e.domain <= 0xfffff));
  if (!ok) throw new TlpwireError('ERR_CONFIG', `bad PCI address ${e.bus}:${e.device}.${e.function}`);
  if (e.config.length !== 64 && e.config.length !== 256 && e.config.length !== 4096) {
    throw new TlpwireError('ERR_CONFIG', `a config dump holds 64, 256 or 4096 bytes, not ${e.config.length}`);
  }
  if (e.description !== undefined && /[\r\n]/.test(e.description)) {
    throw new TlpwireError('ERR_CONFIG', 'a device description must be one line');
  }
}

/** Formats functions' config spaces as `lspci -xxxx` does. */
export function formatConfigDump(entries: readonly ConfigDumpEntry[]): string {
  const lines: string[] = [];
  for (const e of entries) {
    check(e);
    lines.push(`${formatPciAddress(e)} ${e.description ?? ''}`);
    for (let off = 0; off < e.config.length; off += 16) {
      let line = `${hex2(off)}:`;
      for (let i = 0; i < 16; i++) line += ` ${hex2(e.config[off + i] ?? 0)}`;
      lines.push(line);
    }
    lines.push('');
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

const DEVICE_LINE = /^(?:([0-9a-f]{4,5}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7]) /i;
const DATA_LINE = /^([0-9a-f]{2,8}):((?: [0-9a-f]{2})*)$/i;

/**
 * Reads a dump back (what `lspci -F` accepts: device lines, data lines, blank lines). Bytes not
 * present read as 0xff, as in pciutils; the image is 256 bytes unless an offset ≥ 256 appears.
 */
export function parseConfigDump(text: string): ConfigDumpEntry[] {
  const out: ConfigDumpEntry[] = [];
  let cur: { entry: ConfigDumpEntry; bytes: Uint8Array; len: number } | null = null;
  const finish = (): void => {
    if (cur === null) return;
    cur.entry.config = cur.bytes.slice(0, cur.len > 256 ? 4096 : 256);
    out.push(cur.entry);
    cur = null;
  };
  const lines = text.split('\n');
  lines.forEach((raw, lineNo) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const dev = DEVICE_LINE.exec(line);
    if (dev !== null) {
      finish();
      const description = line.slice(dev[0].length);
      const entry: ConfigDumpEntry = {
        bus: parseInt(dev[2] ?? '0', 16),
        device: parseInt(dev[3] ?? '0', 16),
        function: parseInt(dev[4] ?? '0', 10),
        config: new Uint8Array(0),
      };
      if (dev[1] !== undefined) entry.domain = parseInt(dev[1], 16);
      if (description !== '') entry.description = description;
      cur = { entry, bytes: new Uint8Array(4096).fill(0xff), len: 0 };
      return;
    }
    if (line === '') {
      finish();
      return;
    }
    const data = DATA_LINE.exec(line);
    if (data === null || cur === null) {
      throw new TlpwireError('ERR_CONFIG', `config dump line ${lineNo + 1} is malformed: ${JSON.stringify(line)}`);
    }
    let at = parseInt(data[1] ?? '0', 16);
    const c: { bytes: Uint8Array; len: number } = cur;
    for (const byte of (data[2] ?? '').trim().split(' ').filter((b) => b !== '')) {
      if (at >= 4096) throw new TlpwireError('ERR_CONFIG', `config dump line ${lineNo + 1} goes past 4096 bytes`);
      c.bytes[at++] = parseInt(byte, 16);
      c.len = Math.max(c.len, at);
    }
  });
  finish();
  return out;
}
