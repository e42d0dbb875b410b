/**
 * A benchmark child process (the raw baseline's sink and source, the DMA root complex and
 * endpoint): node with the benchmark's flags, commands one per line on its stdin, answers one per
 * line on its stdout. Waiting for an answer fails with a message when the child exits first,
 * never hangs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { peerNodeArgs } from './dist.js';
import type { PeerEvent } from './dma-pattern.js';

export class BenchChild {
  private readonly lines: AsyncIterator<string>;
  /** Its exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** Rejects, saying how, when it exits. */
  readonly died: Promise<never>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    this.died = new Promise((_, reject) =>
      child.once('exit', (code, signal) => reject(new Error(`${name} exited (${signal ?? `code ${code}`})`))),
    );
    this.died.catch(() => {}); // reported where it is awaited
    // A write racing the child's exit fails with EPIPE: the exit is what gets reported.
    child.stdin!.on('error', () => {});
  }

  /** Starts bench/`script` (a path relative to this folder) with `args`. */
  static spawn(name: string, script: string, args: readonly string[], extraNodeArgs: readonly string[] = []): BenchChild {
    const path = fileURLToPath(new URL(script, import.meta.url));
    return new BenchChild(name, spawn(process.execPath, [...peerNodeArgs(extraNodeArgs), path, ...args], { stdio: ['pipe', 'pipe', 'inherit'] }));
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Its next line on stdout; throws if it exits, or `alsoDied` rejects, first. */
  async line(what: string, alsoDied?: Promise<never>): Promise<string> {
    const next = this.lines.next().then((n) => {
      if (n.done === true) return this.exited.then((code) => Promise.reject(new Error(`${this.name} exited (code ${code}) while ${what} was awaited`)));
      return n.value;
    });
    return Promise.race(alsoDied === undefined ? [next] : [next, alsoDied]);
  }

  /** Its next event of `kind` (PeerEvent lines; other lines are skipped); its error or its exit is thrown. */
  async expect<K extends PeerEvent['event']>(kind: K): Promise<Extract<PeerEvent, { event: K }>> {
    for (;;) {
      let e: PeerEvent;
      try {
        e = JSON.parse(await this.line(kind)) as PeerEvent;
      } catch (err) {
        if (err instanceof SyntaxError) continue; // not ours
        throw err;
      }
      if (e.event === 'error') throw new Error(`${this.name} failed: ${e.message}`);
      if (e.event === kind) return e as Extract<PeerEvent, { event: K }>;
    }
  }

  /** Closes its stdin (it ends then) and waits for its exit code. */
  async end(): Promise<number | null> {
    this.child.stdin!.end();
    return this.exited;
  }

  kill(): void {
    this.child.kill();
  }
}
