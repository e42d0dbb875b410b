/**
 * The fabric the memory-model tests use now lives in src/sim/litmus (the litmus runner is built
 * on it); these names stay for the tests that import them from here.
 */
export {
  LitmusFabric as TestFabric,
  LitmusMmio as TestMmio,
  at,
  le32,
  readLe32,
  runToEnd,
  type LitmusMemory as TestMemory,
} from '../../src/sim/index.js';
