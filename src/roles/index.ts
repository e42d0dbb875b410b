export * from './link-stack.js';
export * from './host-memory-target.js';
export * from './root-complex.js';
export * from './endpoint.js';
export * from './real-runtime.js';
export * from './dma-exercise.js';
