import { Counters, TlpwireError, errorMessage, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import { connectTransport, listenTransport, type Transport, type TransportServer } from '../link/index.js';
import type { DmaPort, DmaWriteOptions } from '../memory/index.js';
import type { InterruptMessage, PciDevice, PciFunction } from '../pci/index.js';
import { MSG_CODE, MSG_ROUTING } from '../spec/index.js';
import {
  DEFAULT_TRANSACTION_CONFIG,
  forEachEnabledRun,
  type CompleterTarget,
  type ConfigTarget,
  type OrderingConfig,
  type Requester,
  type TransactionConfig,
} from '../transaction/index.js';
import { FunctionRequesters } from './function-requesters.js';
import { LinkStack, type LinkStackOptions } from './link-stack.js';

export interface EndpointOptions {
  clock: Clock;
  rng?: Rng;
  logger?: Logger;
  /** The PCI functions this endpoint hosts (device number 0 on its link). */
  device?: PciDevice;
  transaction?: Partial<TransactionConfig>;
  ordering?: OrderingConfig;
  link?: LinkStackOptions['link'];
}

/**
 * The endpoint: one PCI device (up to eight functions) behind one link. Config requests reach
 * the functions' config space, memory requests their BARs (when Memory Space is enabled); the
 * functions' DMA and interrupts leave through the requester (only while Bus Master is enabled).
 */
export class Endpoint {
  readonly counters = new Counters();
  private readonly log: Logger;
  private server: TransportServer | undefined;
  private current: LinkStack | undefined;
  /** Per-function requesters and error routing of the current link (when there is a device). */
  private functionPorts: FunctionRequesters | undefined;
  /** Bus/device captured from the last CfgWr0 (§2.2.6.2), as the Requester ID base. */
  private busDevice = 0;
  onLinkUp: (stack: LinkStack) => void = () => {};
  onLinkDown: (reason: string) => void = () => {};

  constructor(private readonly opts: EndpointOptions) {
    this.log = (opts.logger ?? silentLogger).child({ role: 'ep' });
    for (const [n, fn] of opts.device?.functions ?? []) this.wireFunction(n, fn);
  }

  get stack(): LinkStack | undefined {
    return this.current;
  }

  async listen(url: string): Promise<string> {
    const server = await listenTransport(url, { logger: this.log });
    this.server = server;
    server.onConnection = (t) => {
      if (this.current !== undefined && this.current.link.state !== 'down') {
        this.log.warn({ remote: t.remote }, 'a second root complex tried to connect; refused');
        t.close('endpoint already has a root complex');
        return;
      }
      this.attach(t);
    };
    return server.url;
  }

  async connect(url: string): Promise<LinkStack> {
    const t = await connectTransport(url, { logger: this.log });
    return this.attach(t);
  }

  attach(transport: Transport): LinkStack {
    const stack = new LinkStack(transport, {
      clock: this.opts.clock,
      role: 'ep',
      logger: this.log,
      transaction: { requesterId: 0, ...this.opts.transaction },
      ...(this.opts.rng === undefined ? {} : { rng: this.opts.rng }),
      ...(this.opts.ordering === undefined ? {} : { ordering: this.opts.ordering }),
      ...(this.opts.link === undefined ? {} : { link: this.opts.link }),
    });
    this.current = stack;
    const device = this.opts.device;
    let ports: FunctionRequesters | undefined;
    if (device !== undefined) {
      const base = { ...DEFAULT_TRANSACTION_CONFIG, requesterId: 0, ...this.opts.transaction };
      ports = new FunctionRequesters(device, stack, this.opts.clock, base, this.log);
      this.functionPorts = ports;
      stack.tl.completer.setConfigTarget(this.configTarget(device));
      stack.tl.completer.addMemoryTarget(this.barTarget(device));
      stack.tl.completer.onConfigWrite0 = (bdf) => {
        this.busDevice = bdf & 0xfff8;
        stack.tl.setId(this.busDevice);
        ports?.setBusDevice(this.busDevice);
      };
    }
    stack.tl.onLinkState = (state, reason) => {
      if (state === 'up') {
        this.log.info({ remote: transport.remote }, 'link up');
        ports?.linkUp();
        this.onLinkUp(stack);
      } else if (state === 'down') {
        this.log.info({ remote: transport.remote, reason }, 'link down');
        if (this.current === stack) this.current = undefined;
        ports?.linkDown(reason ?? 'closed');
        if (this.functionPorts === ports) this.functionPorts = undefined;
        // The card loses power with its link: functions return to their power-on state.
        for (const [, fn] of device?.functions ?? []) fn.powerOnReset();
        this.onLinkDown(reason ?? 'closed');
      }
    };
    stack.link.start();
    return stack;
  }

  /**
   * DMA as function `fn` issues it: refused while Bus Master Enable is clear (a function with
   * BME clear issues no request at all). Without a device, raw DMA with Requester ID 0.
   */
  dmaPort(fnNumber = 0): DmaPort {
    const fn = this.opts.device?.function(fnNumber) ?? undefined;
    const stackOrThrow = (): LinkStack => {
      const s = this.current;
      if (s === undefined || s.link.state !== 'up') throw new TlpwireError('ERR_LINK_DOWN', 'no link to a root complex');
      if (fn !== undefined && !fn.busMasterEnabled) throw new TlpwireError('ERR_REQUEST', `function ${fnNumber} has Bus Master Enable clear`);
      return s;
    };
    // A function's failed request sets its Received Master/Target Abort bits.
    const failed = (e: unknown): never => {
      this.functionPorts?.requestFailed(fnNumber, e);
      throw e;
    };
    return {
      read: (address, length) => {
        try {
          return this.requesterOf(stackOrThrow(), fnNumber).memRead(address, length).catch(failed);
        } catch (e) {
          return Promise.reject(e);
        }
      },
      readInto: (address, dest) => {
        try {
          return this.requesterOf(stackOrThrow(), fnNumber).memReadInto(address, dest).catch(failed);
        } catch (e) {
          return Promise.reject(e);
        }
      },
      write: (address, data, o?: DmaWriteOptions) => {
        try {
          return this.requesterOf(stackOrThrow(), fnNumber).memWrite(address, data, {
            ...(o?.relaxedOrdering === true ? { ro: true } : {}),
            ...(o?.zeroCopy === true ? { zeroCopy: true } : {}),
          });
        } catch (e) {
          return Promise.reject(e);
        }
      },
    };
  }

  /** Function n's requester on `stack` (the link's own one when the endpoint has no device). */
  private requesterOf(stack: LinkStack, fnNumber: number): Requester {
    const ports = this.functionPorts;
    return ports !== undefined && this.current === stack ? ports.requester(fnNumber) : stack.tl.requester;
  }

  async close(): Promise<void> {
    this.current?.close('endpoint shutting down');
    if (this.server !== undefined) await this.server.close();
  }

  private wireFunction(n: number, fn: PciFunction): void {
    fn.onInterruptMessage = (msg: InterruptMessage) => {
      const s = this.current;
      if (s === undefined || s.link.state !== 'up') return;
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, msg.data >>> 0, true);
      this.requesterOf(s, n).memWrite(msg.address, b).catch((e: unknown) => this.log.debug({ err: errorMessage(e) }, 'interrupt write lost'));
    };
    fn.onIntx = (asserted, pin) => {
      const s = this.current;
      if (s === undefined || s.link.state !== 'up') return;
      const base = asserted ? MSG_CODE.ASSERT_INTA : MSG_CODE.DEASSERT_INTA;
      this.requesterOf(s, n)
        .sendMessage({ messageCode: base + ((pin - 1) & 3), routing: MSG_ROUTING.LOCAL })
        .catch((e: unknown) => this.log.debug({ err: errorMessage(e) }, 'INTx message lost'));
    };
  }

  private configTarget(device: PciDevice): ConfigTarget {
    return {
      configRead: (bdf, register) => {
        if (((bdf >> 3) & 0x1f) !== 0) return undefined;
        return device.configRead(bdf & 7, register) ?? undefined;
      },
      configWrite: (bdf, register, value, be) => {
        if (((bdf >> 3) & 0x1f) !== 0) return false;
        return device.configWrite(bdf & 7, register, value, be);
      },
    };
  }

  private barTarget(device: PciDevice): CompleterTarget {
    return {
      claims: (address, length) => device.claims(address, length) !== null,
      read: (address, length) => {
        const hit = device.claims(address, length);
        const data = hit === null ? null : (device.function(hit.function)?.memoryRead(address, length) ?? null);
        if (data === null) throw new TlpwireError('ERR_REQUEST', `BAR read at 0x${address.toString(16)} failed`);
        return data;
      },
      write: (address, data, firstBe, lastBe) => {
        const hit = device.claims(address, data.length);
        if (hit === null) return;
        const f = device.function(hit.function);
        if (f === null) return;
        // Only the enabled bytes reach the register block.
        forEachEnabledRun(address, data, firstBe, lastBe, (a, bytes) => {
          f.memoryWrite(a, bytes);
        });
      },
    };
  }
}
