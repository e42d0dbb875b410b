export * from './types.js';
export * from './range-allocator.js';
export * from './host-ram.js';
export * from './iommu.js';
export * from './host-cpu.js';
export * from './device-engine.js';
