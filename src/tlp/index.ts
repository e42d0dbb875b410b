// The TLP layer: the wire format of PCIe TLPs (non-flit mode) and nothing else.
export * from './types.js';
export { KIND_INFO, TLP_KINDS, isTlpKind, kindInfoOfByte0, typeFieldOf, type KindInfo, type TlpFamily } from './kinds.js';
export { computeEcrc } from './ecrc.js';
export { validateTlp } from './validate.js';
export { encodeTlp, encodeTlpInto, encodeValidatedTlpInto, encodedLength, computeTlpEcrc } from './encode.js';
export { decodeTlp, tlpWireLength } from './decode.js';
export { tlpToJson, tlpFromJson, formatAddress, type TlpFromJsonOptions } from './json.js';
export { bytesToHex, hexToBytes } from './hex.js';
export * from './build.js';
export {
  BYTE0_CPLD,
  BYTE0_CPLDLK,
  BYTE0_MWR,
  BYTE0_MWR64,
  CompletionView,
  CompletionParts,
  COMPLETION_PARTS_MAX,
  MemReadView,
  MemWriteView,
  MemWriteRun,
  MemReadRun,
  MEM_READ_RUN_MAX,
  BYTE0_MRD,
  BYTE0_MRD64,
  checkMemReadFields,
  encodeMemReadInto,
  parseMemRead,
  type MemReadFields,
  MEM_WRITE_RUN_MAX,
  checkCompletionFields,
  checkMemWriteFields,
  encodeCompletionDataInto,
  encodeCompletionHeaderInto,
  encodeMemWriteInto,
  encodeMemWriteHeaderInto,
  encodeMemWriteHeadersInto,
  parseCompletionData,
  parseMemWrite,
  type CompletionFields,
  type MemWriteFields,
} from './fast.js';
