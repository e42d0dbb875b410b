// The link layer: transports, batching, the training handshake and flow-control credits.
export type { LinkPort, LinkState, LinkCapabilities } from './port.js';
export type { Transport, TransportServer, TransportOptions } from './transport.js';
export { Link, DEFAULT_CREDITS, DEFAULT_SCALES, type LinkOptions } from './link.js';
export {
  PROTOCOL_VERSION,
  PROTOCOL_NAME,
  ITEM,
  MAX_MESSAGE_BYTES,
  DEFAULT_BATCH_BYTES,
  FEATURE_SCALED_FC,
  WS_SUBPROTOCOL,
} from './constants.js';
export {
  tlpCredits,
  rawTlpCredits,
  dataCreditsFor,
  mayTransmit,
  counterBits,
  maxCredits,
  TxCredits,
  RxCredits,
  type CreditType,
  type ScaleFactor,
  type CreditValues,
  type CreditScales,
  type CreditAdvertisement,
} from './credits.js';
export { RecordParser, recordPrefix } from './record-parser.js';
export { joinBytes } from './framing.js';
export { parseLinkUrl, formatLinkUrl, type LinkUrl, type LinkScheme } from './url.js';
export { listenTransport, connectTransport } from './connect.js';
export { createMemoryTransportPair, type MemoryTransport, type MemoryTransportOptions } from './memory-transport.js';
