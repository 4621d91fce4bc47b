import { notYet } from './pending.ts';
export const statusMain = notYet('status');
