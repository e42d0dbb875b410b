import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs `tlpwire ARGV…` in this process through main(argv, io), capturing both streams. */
export async function runCli(...argv: string[]): Promise<CliRun> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  };
  const code = await main(argv, io);
  return { code, out, err };
}
