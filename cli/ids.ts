// Every id the CLI takes accepts a unique prefix (with or without its `inc-`/`act-`/`wf-` kind):
// the whole id when it matches exactly, the one id it starts, else one line saying why not.
import { HomeostatError } from '../core/mod.ts';

const body = (id: string) => id.replace(/^[a-z]+-/, '');

export function resolveId(input: string, ids: readonly string[], what: string, listHint: string): string {
  const q = input.trim().toLowerCase();
  if (!q) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `expected ${what} id`);
  const exact = ids.find((id) => id.toLowerCase() === q);
  if (exact) return exact;
  const hits = [...new Set(ids.filter((id) => id.toLowerCase().startsWith(q) || body(id.toLowerCase()).startsWith(q)))];
  if (hits.length === 1) return hits[0];
  if (!hits.length) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no ${what} matches "${input}" (${listHint})`);
  throw new HomeostatError('HOMEOSTAT_ERR_AMBIGUOUS', `"${input}" matches ${hits.length} ${what}s: ${hits.slice(0, 5).join(', ')}${hits.length > 5 ? ', …' : ''}`);
}
