export * from './barriers.js';
export * from './split-ring-layout.js';
export * from './split-ring-driver.js';
export * from './split-ring-device.js';
export * from './features.js';
export * from './pci-device.js';
export * from './pci-driver.js';
