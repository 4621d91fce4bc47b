// Fleet-wide operations ask first: the plan, then "Proceed? [y/N]" on a terminal. Scripts pass
// --yes; without it and without a terminal the command refuses before anything is started.
import { createInterface } from 'node:readline/promises';
import { HomeostatError } from '../core/mod.ts';

export const YES_FLAG = { yes: { type: 'boolean', short: 'y', default: false } } as const;

export interface ConfirmIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream;
}

/** Refuse early (before a dry run is even asked for) when no one could confirm. */
export function requireConfirmable(what: string, yes: boolean, io: ConfirmIo = { input: process.stdin, output: process.stderr }): void {
  if (yes || io.input.isTTY) return;
  throw new HomeostatError('HOMEOSTAT_ERR_NOT_CONFIRMED', `${what} needs a confirmation and stdin is not a terminal: pass --yes to run it from a script (--dry-run shows the plan)`);
}

/** Show `plan` and ask; resolves when confirmed, throws HOMEOSTAT_ERR_NOT_CONFIRMED otherwise. */
export async function confirmPlan(what: string, plan: string, yes: boolean, io: ConfirmIo = { input: process.stdin, output: process.stderr }): Promise<void> {
  if (yes) return;
  requireConfirmable(what, yes, io);
  io.output.write(`${plan}\n`);
  const rl = createInterface({ input: io.input, output: io.output, terminal: false });
  try {
    const answer = await Promise.race([
      rl.question(`Proceed with ${what}? [y/N] `),
      new Promise<string>((resolve) => rl.once('close', () => resolve(''))),
    ]);
    if (!/^\s*y(es)?\s*$/i.test(answer)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_CONFIRMED', `${what} not confirmed; nothing was started`);
  } finally {
    rl.close();
  }
}
