export * from './pcie.js';
export * from './virtio.js';
export * from './tlp-format.js';
export * from './flow-control.js';
export * from './pci.js';
export * from './pci-epf-test.js';
export * from './transaction.js';
export * from './memory.js';
