// The kernel: what every folder may use and nothing here imports another folder of homeostat.
// Coded errors, the logger, the one sleep and backoff, ids.
export * from './errors.ts';
export * from './logger.ts';
export * from './time.ts';
export * from './ids.ts';
