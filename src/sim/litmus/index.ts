export * from './api.js';
export * from './builtins.js';
export * from './env.js';
export * from './fabric.js';
export * from './format.js';
export * from './runner.js';
