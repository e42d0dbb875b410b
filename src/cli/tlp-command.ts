import type { Command } from 'commander';
import { errorMessage, isTlpwireError } from '../core/index.js';
import { bytesToHex, decodeTlp, encodeTlp, hexToBytes, tlpFromJson, tlpToJson } from '../tlp/index.js';
import type { CliIo } from './io.js';

const EXIT_USAGE = 2;

const TLP_HELP = `
Examples:
  $ tlpwire tlp decode 0010004091633bff167124c8
  {"kind":"MRd","fmt":0,"type":0,"tc":1,...,"lengthDw":64,"requesterId":37219,"tag":59,...}
  $ tlpwire tlp encode '{"kind":"MWr","requesterId":256,"address":"0x1000","data":"deadbeef"}'
  400000010100000f00001000deadbeef

A TLP is written as PCIe puts it on the wire (non-flit mode, no framing, sequence number or
LCRC): 3 or 4 big-endian header DWs, the payload, then the ECRC digest DW when TD is set.
`;

const DECODE_HELP = `
Each argument is one whole TLP in hex: an optional 0x prefix, and bytes optionally separated by
spaces, ':', '_' or '-'. Prints one compact JSON object per TLP, one per line, in argument order.
Payloads print as "data" (hex), 64-bit addresses as "address":"0x…".

A TLP that does not decode prints one line on stderr naming the argument (counted from 1), the
error code and the byte offset of the problem; the other arguments are still decoded and the
exit code is 2.

Examples:
  $ tlpwire tlp decode 0010004091633bff167124c8
  $ tlpwire tlp decode "0x4a000001 01000004 01003b00 deadbeef"      # a CplD
  $ tlpwire tlp decode 00:10:00:40:91:63:3b:ff:16:71:24:c8 040000010000010f00080004
`;

const ENCODE_HELP = `
Each argument is one TLP as a JSON object with the fields "tlpwire tlp decode" prints
("kind" is required; "fmt" and "type" are optional and must agree with it). Omitted bits are
false/0, lengthDw comes from "data", firstBe defaults to 15 (and lastBe to 15 for multi-DW
memory requests), status to "SC". A given "ecrc" must match unless --fix-ecrc.
Prints one lowercase hex line per TLP. Errors go to stderr as for decode; exit code 2.

Examples:
  $ tlpwire tlp encode '{"kind":"MRd","requesterId":37219,"tag":59,"tc":1,"lengthDw":64,"address":"0x167124c8"}'
  0010004091633bff167124c8
  $ tlpwire tlp encode '{"kind":"CfgRd0","requesterId":0,"tag":1,"bus":1,"device":0,"function":0,"register":0}'
  $ tlpwire tlp encode '{"kind":"Msg","requesterId":256,"routing":4,"messageCode":32}'   # Assert_INTA
  $ tlpwire tlp decode "$(tlpwire tlp encode '{"kind":"MWr64","address":"0x100000000","data":"01020304"}')"
`;

function describeError(e: unknown): string {
  if (isTlpwireError(e)) {
    return e.offset === undefined ? `${e.code}: ${e.message}` : `${e.code} at byte ${e.offset}: ${e.message}`;
  }
  return `ERR_INTERNAL: ${errorMessage(e)}`;
}

/** `tlpwire tlp decode|encode`. */
export function registerTlpCommands(program: Command, io: CliIo, setCode: (c: number) => void): void {
  const tlp = program
    .command('tlp')
    .description('encode and decode PCIe TLPs (hex <-> JSON)')
    .addHelpText('after', TLP_HELP);

  tlp
    .command('decode')
    .description('decode TLPs given in hex into one JSON object per line')
    .argument('<hex...>', 'one TLP per argument, in hex')
    .addHelpText('after', DECODE_HELP)
    .action((hexes: string[]) => {
      hexes.forEach((hex, i) => {
        try {
          io.out(`${JSON.stringify(tlpToJson(decodeTlp(hexToBytes(hex))))}\n`);
        } catch (e) {
          io.err(`tlpwire tlp decode: argument ${i + 1}: ${describeError(e)}\n`);
          setCode(EXIT_USAGE);
        }
      });
    });

  tlp
    .command('encode')
    .description('encode TLPs given as JSON objects into one hex line each')
    .argument('<json...>', 'one TLP per argument, as a JSON object')
    .option('--fix-ecrc', 'compute the ECRC instead of checking a given "ecrc"')
    .addHelpText('after', ENCODE_HELP)
    .action((jsons: string[], opts: { fixEcrc?: boolean }) => {
      jsons.forEach((text, i) => {
        try {
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch (e) {
            throw new SyntaxError(`not valid JSON: ${errorMessage(e)}`);
          }
          const tlpObj = tlpFromJson(parsed, { recomputeEcrc: opts.fixEcrc === true });
          io.out(`${bytesToHex(encodeTlp(tlpObj))}\n`);
        } catch (e) {
          const detail = e instanceof SyntaxError ? `ERR_USAGE: ${e.message}` : describeError(e);
          io.err(`tlpwire tlp encode: argument ${i + 1}: ${detail}\n`);
          setCode(EXIT_USAGE);
        }
      });
    });
}
