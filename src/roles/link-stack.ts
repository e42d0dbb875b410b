import { Counters, silentLogger, type Clock, type Logger, type Rng } from '../core/index.js';
import { Link, type LinkOptions, type Transport } from '../link/index.js';
import {
  DEFAULT_TRANSACTION_CONFIG,
  TransactionLayer,
  type OrderingConfig,
  type TransactionConfig,
} from '../transaction/index.js';

export interface LinkStackOptions {
  clock: Clock;
  rng?: Rng;
  logger?: Logger;
  role: 'rc' | 'ep';
  name?: string;
  transaction?: Partial<TransactionConfig>;
  ordering?: OrderingConfig;
  link?: Partial<Omit<LinkOptions, 'clock' | 'logger' | 'role' | 'counters'>>;
}

/** One side of one link: the data link and the transaction layer above it, sharing counters. */
export class LinkStack {
  readonly link: Link;
  readonly tl: TransactionLayer;
  readonly counters = new Counters();

  constructor(transport: Transport, opts: LinkStackOptions) {
    const logger = opts.logger ?? silentLogger;
    const config: TransactionConfig = { ...DEFAULT_TRANSACTION_CONFIG, ...opts.transaction };
    this.link = new Link(transport, {
      ...opts.link,
      clock: opts.clock,
      logger,
      counters: this.counters,
      role: opts.role,
      ...(opts.name === undefined ? {} : { name: opts.name }),
      tag10Bit: config.tag10Bit,
    });
    this.tl = new TransactionLayer(this.link, {
      clock: opts.clock,
      logger,
      counters: this.counters,
      config,
      ...(opts.rng === undefined ? {} : { rng: opts.rng }),
      ...(opts.ordering === undefined ? {} : { ordering: opts.ordering }),
    });
  }

  start(): Promise<void> {
    this.link.start();
    return this.link.whenUp();
  }

  close(reason?: string): void {
    this.link.close(reason);
  }
}
