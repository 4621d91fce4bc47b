import { notYet } from './pending.ts';
export const approveMain = notYet('approve');
export const denyMain = notYet('deny');
