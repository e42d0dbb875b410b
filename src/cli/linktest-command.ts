/**
 * `tlpwire linktest`: a root complex that runs pcitest's matrix against the first endpoint and
 * exits 0 only if every row passes. The same as `tlpwire rc … --linktest --once`.
 */
import type { Command } from 'commander';
import type { CliIo } from './io.js';
import { addRcFlags, rcOptionsFromFlags, runRcCommand, type RcFlags } from './rc-command.js';

const LINKTEST_HELP = `
Runs Linux pcitest's matrix against a link tester function (tlpwire ep --function linktest):
BAR0..BAR5 patterns, the consecutive-BAR test, INTx, MSI and every MSI-X vector, READ/WRITE/COPY
of 1, 1024, 1025, 1024000 and 1024001 bytes without and with the DMA flag, and the DMA throughput
in each direction. Prints the tree, the pass/fail table, and exits 0 only if every row passes.

Examples:
  $ tlpwire ep --listen ws://0.0.0.0:5301 &            # on the endpoint machine
  $ tlpwire linktest --connect ws://10.0.0.2:5301      # on the host machine
  $ tlpwire linktest --listen tcp://0.0.0.0:5301       # or wait for an endpoint to connect
`;

export function registerLinktestCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  const cmd = program
    .command('linktest')
    .description('test a link end to end: enumerate the first endpoint and run the pcitest matrix (exit 0 if all pass)')
    .addHelpText('after', LINKTEST_HELP);
  addRcFlags(cmd).action(async (flags: RcFlags) => {
    const o = rcOptionsFromFlags({ ...flags, once: true }, true);
    setCode(await runRcCommand(o, io, 'linktest'));
  });
}
