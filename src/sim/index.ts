export * from './virtual-clock.js';
export { SeededRng } from '../core/index.js';
export * from './litmus/index.js';
export * from './stress/index.js';
