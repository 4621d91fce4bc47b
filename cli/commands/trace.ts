import { notYet } from './pending.ts';
export const traceMain = notYet('trace');
