// Placeholder for commands whose agents land in later issues: a clear message, exit 1.
import { HomeostatError } from '../../bus/mod.ts';

export function notYet(name: string): (argv: string[]) => Promise<number> {
  return async () => {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `\`homeostat ${name}\` is not available in this build yet`);
  };
}
