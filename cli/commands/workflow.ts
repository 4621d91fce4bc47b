import { notYet } from './pending.ts';
export const bootMain = notYet('boot');
export const shutdownMain = notYet('shutdown');
export const failoverMain = notYet('failover');
