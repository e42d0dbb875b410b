/**
 * One error base class for all of tlpwire. Every error carries a stable `code` that callers
 * and tests switch on; messages are for people and may change.
 */
export type ErrorCode =
  // TLP codec
  | 'ERR_TLP_TRUNCATED'
  | 'ERR_TLP_MALFORMED'
  | 'ERR_TLP_RESERVED'
  | 'ERR_TLP_LENGTH'
  | 'ERR_TLP_4K_CROSSING'
  | 'ERR_TLP_BYTE_ENABLES'
  | 'ERR_TLP_ECRC'
  | 'ERR_TLP_FIELD'
  // link
  | 'ERR_LINK_VERSION'
  | 'ERR_LINK_PROTOCOL'
  | 'ERR_LINK_DOWN'
  | 'ERR_LINK_TIMEOUT'
  | 'ERR_LINK_AUTH'
  | 'ERR_LINK_NO_CREDITS'
  | 'ERR_TRANSPORT'
  | 'ERR_ADDRESS_IN_USE'
  | 'ERR_BAD_URL'
  // transaction
  | 'ERR_CPL_TIMEOUT'
  | 'ERR_CPL_UR'
  | 'ERR_CPL_CA'
  | 'ERR_CPL_CRS'
  | 'ERR_CPL_MALFORMED'
  | 'ERR_CPL_POISONED'
  | 'ERR_CPL_UNEXPECTED'
  | 'ERR_TAGS_EXHAUSTED'
  | 'ERR_REQUEST'
  // pci, memory, virtio, net
  | 'ERR_CONFIG'
  | 'ERR_IOMMU_FAULT'
  | 'ERR_MEMORY_RANGE'
  | 'ERR_MEMORY_EXHAUSTED'
  | 'ERR_IOMMU_MAP'
  | 'ERR_VQ_CHAIN_LOOP'
  | 'ERR_VQ_INVALID'
  | 'ERR_VQ_BROKEN'
  | 'ERR_VIRTIO_FEATURES'
  | 'ERR_NET'
  | 'ERR_TAP'
  // user input
  | 'ERR_USAGE'
  | 'ERR_INTERNAL';

export class TlpwireError extends Error {
  readonly code: ErrorCode;
  /** Byte offset into the input where the problem was found, when there is one. */
  readonly offset: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { offset?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TlpwireError';
    this.code = code;
    this.offset = options?.offset;
  }
}

export function isTlpwireError(e: unknown, code?: ErrorCode): e is TlpwireError {
  return e instanceof TlpwireError && (code === undefined || e.code === code);
}

/** The message of any thrown value, for one-line logs. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
