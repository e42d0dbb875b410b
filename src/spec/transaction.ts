/**
 * Transaction-layer facts from the PCI Express Base Specification (6.x, non-flit mode).
 * Constants only; src/transaction interprets them.
 */

/**
 * §2.4.1 Table 2-42, Ordering Rules Summary, same Traffic Class. Row = the later TLP, column =
 * the earlier one it might overtake:
 *   'no-unless-ro-or-ido'  A2/C2: no, unless the later one has RO set, or IDO set and a
 *                          different Requester ID than the earlier Posted Request;
 *   'no-unless-ido'        B2: no, unless IDO set and the Requester IDs differ (RO does not help);
 *   'no-unless-ro-ido-or-io-cfg-write-cpl'  D2: no, unless RO, IDO with the Completer ID
 *                          different from the Posted Request's Requester ID, or the Completion is
 *                          for an I/O or Configuration Write;
 *   'must'                 must be able to pass (deadlock avoidance: A3, A4, D3, D4);
 *   'may'                  permitted, not required (Y/N);
 *   'may-unless-same-transaction'  D5: Completions of different Transaction IDs may pass each
 *                          other; those with the same Transaction ID must not.
 * Transactions in different Traffic Classes have no ordering relationship (§2.4.1).
 */
export const ORDERING_TABLE = {
  posted: { posted: 'no-unless-ro-or-ido', read: 'must', npWithData: 'must', completion: 'may' },
  read: { posted: 'no-unless-ido', read: 'may', npWithData: 'may', completion: 'may' },
  npWithData: { posted: 'no-unless-ro-or-ido', read: 'may', npWithData: 'may', completion: 'may' },
  completion: {
    posted: 'no-unless-ro-ido-or-io-cfg-write-cpl',
    read: 'must',
    npWithData: 'must',
    completion: 'may-unless-same-transaction',
  },
} as const;

/**
 * §2.2.6.2 Tags. Without 10-Bit Tag Requester Enable a Requester uses 8-bit tags (Extended Tag
 * Field Enable, default on since PCIe 4.0). With 10-bit tags, Tag[9:8] = 00b is not used, so
 * that a Completion from a Completer that dropped T9/T8 cannot match: 768 tags, 256..1023.
 */
export const TAGS = {
  COUNT_8BIT: 256,
  FIRST_10BIT: 256,
  LAST_10BIT: 1023,
} as const;

/**
 * §2.2.9 / §2.3.1.1 Completion fields. Lower Address is the low 7 bits of the address of the
 * first byte the Completion returns; Completions other than for Memory Reads carry Byte Count 4
 * and Lower Address 0; a zero-length read (1 DW, no byte enabled) completes with 1 DW of data
 * and Byte Count 1.
 */
export const CPL_RULES = {
  LOWER_ADDRESS_MODULUS: 128,
  NON_MEMORY_BYTE_COUNT: 4,
  ZERO_LENGTH_READ_BYTE_COUNT: 1,
} as const;

/** §2.2.7 Transaction ID = Requester ID (16 bits) + Tag (10 bits). */
export const TRANSACTION_ID = {
  TAG_SPACE: 1024,
} as const;
