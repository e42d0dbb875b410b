export * from './errors.js';
export * from './clock.js';
export * from './rng.js';
export * from './u16.js';
export * from './fixed-queue.js';
export * from './log.js';
export * from './counters.js';
export * from './bulk-copy.js';
