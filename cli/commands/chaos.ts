import { notYet } from './pending.ts';
export const chaosMain = notYet('chaos');
