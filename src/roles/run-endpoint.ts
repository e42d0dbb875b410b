/**
 * `tlpwire ep` as a library call: build the functions, host them behind one link (listening, or
 * connecting with optional retries), and keep serving until told to stop.
 */
import { TlpwireError, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import type { TransactionConfig } from '../transaction/index.js';
import { Endpoint } from './endpoint.js';
import { buildDevice, type BuiltDevice, type FunctionSpec } from './functions.js';
import { openNetBackends } from './virtio-net-function.js';
import { StopSignal, dialThenLoop, isCleanClose, type RetryPolicy, type RunExit } from './retry.js';

export interface EndpointRunOptions {
  /** Exactly one of listen / connect. */
  listen?: string;
  connect?: string;
  /** Keep (re)connecting with backoff (connect only). */
  retry?: RetryPolicy;
  /** The functions, function 0 first. */
  functions: readonly FunctionSpec[];
  /** Stop after the first link session ends. */
  once?: boolean;
  clock: Clock;
  rng: Rng;
  logger?: Logger;
  transaction?: Partial<TransactionConfig>;
  /** The listening URL (with the real port). */
  onListening?: (url: string) => void;
}

export interface EndpointHandle {
  endpoint: Endpoint;
  device: BuiltDevice;
  /** The URL listened on (listen mode). */
  url: string | undefined;
  /** Resolves when the run ends by itself (see EndpointRunOptions) or after close(). */
  done: Promise<RunExit>;
  /** Closes the link (telling the partner) and the listener. */
  close(reason?: string): Promise<void>;
}

/**
 * Starts an endpoint. Rejects when it cannot start: a bad function spec or URL (ERR_USAGE,
 * ERR_BAD_URL), a port in use (ERR_ADDRESS_IN_USE), an unreachable peer without --retry
 * (ERR_TRANSPORT).
 */
export async function runEndpoint(o: EndpointRunOptions): Promise<EndpointHandle> {
  if ((o.listen === undefined) === (o.connect === undefined)) {
    throw new TlpwireError('ERR_USAGE', 'give exactly one of --listen URL or --connect URL');
  }
  if (o.retry !== undefined && o.connect === undefined) throw new TlpwireError('ERR_USAGE', '--retry needs --connect');
  const log = (o.logger ?? silentLogger).child({ role: 'ep' });
  const netBackends = await openNetBackends(o.functions, o.clock, log);
  const built = buildDevice(o.functions, { clock: o.clock, rng: o.rng, logger: log, netBackends });
  const endpoint = new Endpoint({
    clock: o.clock,
    rng: o.rng,
    logger: o.logger ?? silentLogger,
    device: built.device,
    ...(o.transaction === undefined ? {} : { transaction: o.transaction }),
  });
  built.bindEndpoint(endpoint);
  for (const [n, f] of built.functions.entries()) log.debug({ fn: n }, `function ${n}: ${f.description}`);

  const stop = new StopSignal();
  let finish: (exit: RunExit) => void = () => {};
  const done = new Promise<RunExit>((resolve) => {
    finish = resolve;
  });
  let closing: Promise<void> | undefined;
  const close = (reason = 'endpoint shutting down'): Promise<void> => {
    closing ??= (async () => {
      stop.stop();
      endpoint.stack?.close(reason);
      await endpoint.close();
      built.close();
      finish({ code: 0 });
    })();
    return closing;
  };

  let url: string | undefined;
  if (o.listen !== undefined) {
    url = await endpoint.listen(o.listen);
    log.info({ url }, 'listening for a root complex');
    o.onListening?.(url);
    // A connection whose link never came up (a stranger, a failed handshake) is not a session.
    let sessionUp = false;
    endpoint.onLinkUp = () => {
      sessionUp = true;
    };
    endpoint.onLinkDown = (reason) => {
      if (!sessionUp) return;
      sessionUp = false;
      if (o.once === true) {
        finish(isCleanClose(reason) ? { code: 0 } : { code: 1, error: new TlpwireError('ERR_LINK_DOWN', `link lost: ${reason}`) });
        void close();
      } else {
        log.info('waiting for a root complex');
      }
    };
  } else {
    const target = o.connect!;
    const connectOnce = async (): Promise<{ whenDown(): Promise<string> }> => {
      const stack = await endpoint.connect(target);
      return { whenDown: () => stack.link.whenDown() };
    };
    // Without --retry an unreachable root complex is an error the caller reports.
    const loop = await dialThenLoop({ what: target, connect: connectOnce, retry: o.retry, once: o.once === true, clock: o.clock, log, stop });
    void loop.done.then(async (exit) => {
      finish(exit);
      await close();
    });
  }
  return { endpoint, device: built, url, done, close };
}
