// Model output → a Proposal, or a reason to discard it. The order matters for the audit trail:
// size first (never parse a flood), then JSON, then the verb (so "destroy" is reported as a
// forbidden verb, not a schema error), then the schema, then policy-independent scope checks.
// Passing here does not mean "allowed to run": the policy gate still decides.
import { cleanText, effectiveVerbs } from './prompt.ts';
import { FORBIDDEN_VERB, PASSIVE_VERBS, PROPOSAL_VERBS, Proposal, type ProposalVerb } from './proposal.ts';
import type { AdvisorContext, AdvisorFailureCode } from './seam.ts';

export interface OutputLimits {
  /** Larger outputs are discarded unparsed (UTF-8 bytes). */
  maxOutputBytes: number;
}

export const DEFAULT_OUTPUT_LIMITS: OutputLimits = { maxOutputBytes: 16 * 1024 };

export type Validation =
  | { ok: true; proposal: Proposal }
  | { ok: false; code: AdvisorFailureCode; reason: string; excerpt?: string };

const EXCERPT_CHARS = 300;
// PVE's snapshot name format (pve-snapshot-name).
const SNAPNAME = /^[A-Za-z][A-Za-z0-9_-]{1,39}$/;

const fail = (code: AdvisorFailureCode, reason: string, excerpt?: string): Validation =>
  excerpt === undefined ? { ok: false, code, reason } : { ok: false, code, reason, excerpt };

/** Validate the raw text the model produced. */
export function validateProposal(content: string, ctx: AdvisorContext, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS): Validation {
  const bytes = Buffer.byteLength(content, 'utf8');
  const excerpt = cleanText(content, EXCERPT_CHARS);
  if (bytes > limits.maxOutputBytes) return fail('too-large', `model output is ${bytes} bytes, over the ${limits.maxOutputBytes}-byte limit`, excerpt);
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch (e) {
    return fail('invalid-json', `model output is not JSON: ${cleanText((e as Error).message, 120)}`, excerpt);
  }
  const r = checkProposal(parsed, ctx);
  return r.ok ? r : { ...r, excerpt };
}

/** Validate an already-parsed proposal object against the schema and the incident's scope. */
export function checkProposal(parsed: unknown, ctx: AdvisorContext): Validation {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('schema', 'model output is not a JSON object');
  const rawVerb = (parsed as { verb?: unknown }).verb;
  if (typeof rawVerb === 'string' && !(PROPOSAL_VERBS as readonly string[]).includes(rawVerb)) {
    const verb = cleanText(rawVerb, 40);
    return FORBIDDEN_VERB.test(rawVerb)
      ? fail('forbidden-verb', `verb "${verb}" is never allowed (homeostat does not destroy, delete or reconfigure)`)
      : fail('unknown-verb', `verb "${verb}" is not one of ${PROPOSAL_VERBS.join(', ')}`);
  }
  const shape = Proposal.safeParse(parsed);
  if (!shape.success) {
    const issue = shape.error.issues[0];
    const path = issue?.path.map(String).join('.') || '(root)';
    return fail('schema', `proposal does not match the schema at ${cleanText(path, 80)}: ${cleanText(issue?.message ?? 'invalid', 160)}`);
  }
  const p = shape.data;
  const allowed = effectiveVerbs(ctx.allowedVerbs ?? []);
  if (!allowed.includes(p.verb)) return fail('forbidden-verb', `verb "${p.verb}" is not allowed here (allowed: ${allowed.join(', ')})`);
  const scope = checkScope(p, p.verb, ctx);
  if (scope) return scope;
  return {
    ok: true,
    proposal: {
      ...p,
      // Model text ends up in terminals and chat: no control characters.
      rationale: cleanText(p.rationale, 2000),
      expectedEffect: cleanText(p.expectedEffect, 1000),
      verification: cleanText(p.verification, 1000),
    },
  };
}

function checkScope(p: Proposal, verb: ProposalVerb, ctx: AdvisorContext): Validation | undefined {
  const guests = ctx.guests ?? [];
  const nodes = new Set<string>([...guests.map((g) => g.node), ...(ctx.nodes ?? []).map((n) => n.name)]);
  const { vmid, node } = p.target;
  const guest = vmid === undefined ? undefined : guests.find((g) => g.vmid === vmid);
  if (vmid !== undefined && !guest) return fail('unknown-target', `guest ${vmid} is not in the incident's fleet slice`);
  if (node !== undefined && !nodes.has(node)) return fail('unknown-target', `node "${cleanText(node, 64)}" is not in the incident's fleet slice`);
  if (guest && node !== undefined && guest.node !== node) return fail('unknown-target', `guest ${guest.vmid} runs on ${guest.node}, not on ${cleanText(node, 64)}`);
  if (PASSIVE_VERBS.includes(verb)) return undefined;
  if (!guest) return fail('unknown-target', `verb "${verb}" needs target.vmid of a guest in the fleet slice`);
  const targetNode = p.params?.targetNode;
  if (targetNode !== undefined && !nodes.has(targetNode)) return fail('unknown-target', `params.targetNode "${cleanText(targetNode, 64)}" is not a known node`);
  if (verb === 'migrate') {
    if (targetNode === undefined) return fail('schema', 'migrate needs params.targetNode');
    if (targetNode === guest.node) return fail('unknown-target', `migrate target ${targetNode} is the guest's own node`);
  }
  const snapname = p.params?.snapname;
  if (verb === 'rollback' && snapname === undefined) return fail('schema', 'rollback needs params.snapname');
  if (snapname !== undefined && !SNAPNAME.test(snapname)) return fail('schema', 'params.snapname is not a valid PVE snapshot name');
  return undefined;
}
