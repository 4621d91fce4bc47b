import { notYet } from './pending.ts';
export const chatMain = notYet('chat');
