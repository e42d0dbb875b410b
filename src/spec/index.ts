export * from './pcie.js';
