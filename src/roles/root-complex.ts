import { Counters, TlpwireError, errorMessage, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import { listenTransport, connectTransport, type Transport, type TransportServer } from '../link/index.js';
import { HostRam, Iommu, type IommuMode } from '../memory/index.js';
import type { OrderingConfig, TransactionConfig } from '../transaction/index.js';
import { HostMemoryTarget } from './host-memory-target.js';
import { InterruptController } from './interrupts.js';
import { LinkStack, type LinkStackOptions } from './link-stack.js';

export interface RootComplexOptions {
  clock: Clock;
  rng?: Rng;
  logger?: Logger;
  /** Host RAM size in bytes. */
  memoryBytes: number;
  /** IOMMU mode for devices nobody configured (default disabled: DMA is physical). */
  iommuMode?: IommuMode;
  transaction?: Partial<TransactionConfig>;
  ordering?: OrderingConfig;
  link?: LinkStackOptions['link'];
}

/** One root port: a link to one endpoint, behind its own bus number. */
export class RootPort {
  constructor(
    readonly index: number,
    readonly bus: number,
    readonly stack: LinkStack,
    readonly remote: string,
  ) {}

  get tl() {
    return this.stack.tl;
  }
}

/**
 * The root complex: host RAM behind an IOMMU, one root port per connected endpoint. Devices'
 * DMA lands in host RAM through the completer; the CPU reaches devices through each port's
 * requester (config, MMIO).
 */
export class RootComplex {
  readonly ram: HostRam;
  readonly iommu: Iommu;
  readonly counters = new Counters();
  readonly ports: RootPort[] = [];
  /** MSI/MSI-X window (before host RAM on every port), INTx and error Messages. */
  readonly interrupts: InterruptController;
  private readonly log: Logger;
  private server: TransportServer | undefined;
  private nextIndex = 0;
  /** A port's link came up (after the handshake). */
  onPortUp: (port: RootPort) => void = () => {};
  /** A port's link went down; the port is removed. */
  onPortDown: (port: RootPort, reason: string) => void = () => {};

  constructor(private readonly opts: RootComplexOptions) {
    this.log = (opts.logger ?? silentLogger).child({ role: 'rc' });
    this.ram = new HostRam({ size: opts.memoryBytes });
    this.iommu = new Iommu({ ram: this.ram, defaultMode: opts.iommuMode ?? 'disabled', clock: opts.clock, logger: this.log });
    this.interrupts = new InterruptController(this.log);
  }

  /** Accepts endpoints on `url` (ws://, tcp://, unix:); resolves with the real URL. */
  async listen(url: string): Promise<string> {
    const server = await listenTransport(url, { logger: this.log });
    this.server = server;
    server.onConnection = (t) => {
      this.attach(t);
    };
    return server.url;
  }

  /** Connects to an endpoint that listens. */
  async connect(url: string): Promise<RootPort> {
    const t = await connectTransport(url, { logger: this.log });
    return this.attach(t);
  }

  /** Attaches a transport as a new root port (also used by the simulator with in-memory pairs). */
  attach(transport: Transport): RootPort {
    // The lowest bus number no live port uses, so an endpoint that comes back gets its old one.
    let bus = 1;
    while (this.ports.some((p) => p.bus === bus)) bus++;
    const stack = new LinkStack(transport, {
      clock: this.opts.clock,
      role: 'rc',
      logger: this.log,
      transaction: { requesterId: 0, ...this.opts.transaction },
      ...(this.opts.rng === undefined ? {} : { rng: this.opts.rng }),
      ...(this.opts.ordering === undefined ? {} : { ordering: this.opts.ordering }),
      ...(this.opts.link === undefined ? {} : { link: this.opts.link }),
    });
    const port = new RootPort(this.nextIndex++, bus, stack, transport.remote);
    // Interrupt messages first: an MWr into the window must never reach host RAM.
    stack.tl.completer.addMemoryTarget(this.interrupts.target);
    stack.tl.completer.addMemoryTarget(new HostMemoryTarget(this.iommu, this.counters, this.log));
    stack.tl.onMessage = (msg) => this.interrupts.handleMessage(port.index, msg);
    this.ports.push(port);
    stack.tl.onLinkState = (state, reason) => {
      if (state === 'up') {
        this.log.info({ port: port.index, remote: port.remote, partner: stack.link.partner?.role }, 'link up');
        try {
          this.onPortUp(port);
        } catch (e) {
          this.log.error({ err: errorMessage(e) }, 'port-up handler failed');
        }
      } else if (state === 'down') {
        const i = this.ports.indexOf(port);
        if (i >= 0) this.ports.splice(i, 1);
        this.interrupts.portDown(port.index);
        this.log.info({ port: port.index, remote: port.remote, reason }, 'link down');
        this.onPortDown(port, reason ?? 'closed');
      }
    };
    stack.link.start();
    return port;
  }

  /** Waits for the first port whose link is up. */
  whenPortUp(): Promise<RootPort> {
    const up = this.ports.find((p) => p.stack.link.state === 'up');
    if (up !== undefined) return Promise.resolve(up);
    return new Promise((resolve) => {
      const prev = this.onPortUp;
      this.onPortUp = (p) => {
        this.onPortUp = prev;
        prev(p);
        resolve(p);
      };
    });
  }

  async close(): Promise<void> {
    for (const p of [...this.ports]) p.stack.close('root complex shutting down');
    if (this.server !== undefined) await this.server.close();
  }

  static checkMemorySize(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 1 << 20) {
      throw new TlpwireError('ERR_USAGE', `host memory must be at least 1M, got ${bytes}`);
    }
  }
}
