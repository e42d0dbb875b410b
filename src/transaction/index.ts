// The transaction layer: ordering queues, requester, completer, and the layer that ties them to a link.
export {
  mayPass,
  orderingColumnOf,
  orderingTraits,
  orderingTraitsInto,
  idoIdOf,
  transactionKey,
  type OrderingColumn,
  type OrderingHints,
  type OrderingTraits,
  type PostedPass,
} from './ordering-rules.js';
export {
  OrderingQueues,
  REORDER_KINDS,
  type ReorderKind,
  type TlpSink,
  type OrderingMode,
  type HoldBackOptions,
  type OrderingQueuesOptions,
  type EnqueueOptions,
  type MemWriteJob,
  type OrderingQueueStats,
} from './ordering-queues.js';
export { TagPool } from './tag-pool.js';
export {
  pieceEnd,
  pieceCount,
  firstEnabledOffset,
  readByteCount,
  lowerAddressOf,
  isZeroLengthRead,
} from './split.js';
export { completionsFor, type CompletableRequest, type CompletionBuildOptions } from './completions.js';
export {
  Requester,
  cplTimeoutNs,
  type RequestOutput,
  type CplTimeoutConfig,
  type RequesterConfig,
  type RequestAttributes,
  type ReadOptions,
  type WriteOptions,
  type ConfigRequestOptions,
  type MessageRequest,
  type CompletionErrorKind,
  type CompletionErrorEvent,
  type RequesterOptions,
  type RequesterStats,
} from './requester.js';
export {
  Completer,
  forEachEnabledRun,
  type CompleterTarget,
  type ConfigTarget,
  type CompleterOptions,
  type CompletionOutput,
  type ByteSpan,
} from './completer.js';
export {
  TransactionLayer,
  DEFAULT_TRANSACTION_CONFIG,
  type TransactionConfig,
  type OrderingConfig,
  type TransactionLayerOptions,
  type TransactionStats,
} from './transaction-layer.js';
