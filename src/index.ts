// The library surface: roles and types, for embedding a root complex or an endpoint.
export * from './core/index.js';
export * from './spec/index.js';
