// Built-in chat intents: plain-language questions and commands mapped without a model. The model
// (when present) only rephrases; facts and ids always come from here.
export type Intent =
  | { kind: 'help' }
  | { kind: 'whats-down' }
  | { kind: 'status' }
  | { kind: 'incidents' }
  | { kind: 'approvals' }
  | { kind: 'why'; guest: string }
  | { kind: 'what-if-node'; node: string }
  | { kind: 'boot'; layer?: number; dryRun: boolean }
  | { kind: 'shutdown'; layer?: number; dryRun: boolean }
  | { kind: 'failover'; node: string }
  | { kind: 'chaos-run'; name: string; dryRun: boolean }
  | { kind: 'chaos-list' }
  | { kind: 'approve'; id: string }
  | { kind: 'deny'; id: string }
  | { kind: 'guest-action'; verb: 'start' | 'stop' | 'shutdown' | 'reboot'; guest: string }
  | { kind: 'unknown' };

const DRY = /\b(dry[- ]?run|simulate|pretend)\b/i;
const GUEST = '([a-z0-9][a-z0-9._-]*)';

export function parseIntent(question: string): Intent {
  const q = question.trim().replace(/[?!.]+$/, '').replace(/\s+/g, ' ');
  const lower = q.toLowerCase();
  let m: RegExpExecArray | null;
  if (/^(help|\?|what can you do)/.test(lower)) return { kind: 'help' };
  if ((m = /^(approve|deny)\s+(?:action\s+)?([A-Za-z0-9:_-]{2,80})$/i.exec(q))) return { kind: m[1].toLowerCase() as 'approve' | 'deny', id: m[2] };
  if (/\b(pending|approvals?)\b/.test(lower) && !/^approve /.test(lower)) return { kind: 'approvals' };
  if ((m = new RegExp(`^what (?:happens|would happen|if)\\b.*?\\b(?:node\\s+)?${GUEST}\\s+(?:dies|died|fails|failed|goes down|is lost|crashes|disappears)`, 'i').exec(q))) {
    return { kind: 'what-if-node', node: m[1] };
  }
  if ((m = new RegExp(`^(?:why|what happened to|what's wrong with|what is wrong with|explain)\\b(?:\\s+(?:is|did|was|has))?\\s+(?:guest\\s+|ct\\s+|vm\\s+)?${GUEST}\\b`, 'i').exec(q))) {
    return { kind: 'why', guest: m[1] };
  }
  if (/\b(what('s| is)? (down|broken|failing|unhealthy)|anything (down|wrong|broken)|is everything (ok|up|healthy))\b/.test(lower)) return { kind: 'whats-down' };
  if (/^(list |show )?(open )?incidents\b/.test(lower)) return { kind: 'incidents' };
  if (/^(status|health|how is the fleet|fleet status|overview)\b/.test(lower)) return { kind: 'status' };
  if (/^(list |show )?(chaos )?experiments\b|^chaos list\b/.test(lower)) return { kind: 'chaos-list' };
  if ((m = /\b(?:run|start)\s+(?:the\s+)?chaos(?:\s+experiment)?\s+([a-z0-9][a-z0-9_-]*)/i.exec(q))) return { kind: 'chaos-run', name: m[1], dryRun: DRY.test(q) };
  if ((m = /^(?:start|boot|bring up)\s+(?:the\s+)?(?:layer\s+(\d+)|fleet|everything|all)\b/i.exec(q))) {
    return { kind: 'boot', layer: m[1] ? Number(m[1]) : undefined, dryRun: DRY.test(q) };
  }
  if ((m = /^(?:shut ?down|stop|bring down)\s+(?:the\s+)?(?:layer\s+(\d+)|fleet|everything|all)\b/i.exec(q))) {
    return { kind: 'shutdown', layer: m[1] ? Number(m[1]) : undefined, dryRun: DRY.test(q) };
  }
  if ((m = new RegExp(`^fail ?over\\s+(?:node\\s+)?${GUEST}`, 'i').exec(q))) return { kind: 'failover', node: m[1] };
  if ((m = new RegExp(`^(start|stop|shut ?down|reboot|restart)\\s+(?:guest\\s+|ct\\s+|vm\\s+)?${GUEST}$`, 'i').exec(q))) {
    const v = m[1].toLowerCase().replace(' ', '');
    const verb = v === 'restart' ? 'reboot' : (v as 'start' | 'stop' | 'shutdown' | 'reboot');
    return { kind: 'guest-action', verb, guest: m[2] };
  }
  return { kind: 'unknown' };
}

export const HELP_TEXT = [
  'I answer from live fleet state, incidents and traces. Try:',
  '  what is down? · status · incidents · pending approvals',
  '  why is 159 down? · why did db-empleos restart? · what happens if node-b dies?',
  '  start layer 2 · shutdown layer 4 · failover node-b · restart 159',
  '  run chaos kill-layer1 in dry-run · list experiments · approve <id> · deny <id>',
].join('\n');
