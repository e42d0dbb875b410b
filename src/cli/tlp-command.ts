import type { Command } from 'commander';
import type { CliIo } from './io.js';

/** `tlpwire tlp decode|encode` (filled in by the TLP codec work). */
export function registerTlpCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  const tlp = program.command('tlp').description('encode and decode PCIe TLPs (hex <-> JSON)');
  void tlp;
  void io;
  void setCode;
}
