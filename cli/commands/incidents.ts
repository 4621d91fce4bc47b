import { notYet } from './pending.ts';
export const incidentsMain = notYet('incidents');
