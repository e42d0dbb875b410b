export * from './trace.js';
export * from './fabric.js';
export * from './stress-run.js';
