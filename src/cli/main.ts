import { Command, CommanderError } from 'commander';
import { TlpwireError, errorMessage } from '../core/index.js';
import { processIo, type CliIo } from './io.js';
import { registerTlpCommands } from './tlp-command.js';
import { registerRcCommands } from './rc-command.js';
import { registerEpCommands } from './ep-command.js';
import { registerLinktestCommands } from './linktest-command.js';
import { registerDemoCommands } from './demo-command.js';
import { registerLitmusCommands } from './litmus-command.js';
import { registerStressCommands } from './stress-command.js';

/** Exit codes: 0 ok, 1 the job failed, 2 usage errors (bad flags, bad input). */
export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;

/**
 * Parses argv (without node and the script) and runs the command. Never throws for a user
 * mistake: it prints one line and returns the exit code.
 */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let code = EXIT_OK;
  const program = new Command();
  program
    .name('tlpwire')
    .description(
      'PCI Express between machines over sockets: a root complex and an endpoint exchange real PCIe ' +
        'TLPs over WebSocket/TCP/Unix links; the endpoint is a virtio-net card (or a link tester).',
    )
    .version('0.1.0', '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError('(run with --help for usage)');

  const setCode = (c: number): void => {
    code = c;
  };
  registerTlpCommands(program, io, setCode);
  registerRcCommands(program, io, setCode);
  registerEpCommands(program, io, setCode);
  registerLinktestCommands(program, io, setCode);
  registerDemoCommands(program, io, setCode);
  registerLitmusCommands(program, io, setCode);
  registerStressCommands(program, io, setCode);

  try {
    await program.parseAsync(argv as string[], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return EXIT_OK;
      }
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof TlpwireError) {
      io.err(`tlpwire: ${e.message}\n`);
      return e.code === 'ERR_USAGE' || e.code === 'ERR_BAD_URL' ? EXIT_USAGE : EXIT_FAIL;
    }
    io.err(`tlpwire: ${errorMessage(e)}\n`);
    return EXIT_FAIL;
  }
  return code;
}
