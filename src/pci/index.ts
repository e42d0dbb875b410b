// The pci layer: config space, capabilities, functions and devices, config dumps, the link tester.
export * from './config-space.js';
export * from './capability-list.js';
export * from './bar-region.js';
export * from './pcie-capability.js';
export * from './pm-capability.js';
export * from './msi-capability.js';
export * from './msix.js';
export * from './aer-capability.js';
export * from './dsn-capability.js';
export * from './vendor-capability.js';
export * from './error-reporting.js';
export * from './pci-function.js';
export * from './pci-device.js';
export * from './config-dump.js';
export * from './crc32.js';
export * from './link-tester.js';
export * from './enumerate.js';
