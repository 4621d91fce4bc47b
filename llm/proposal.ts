// The advisor's structured output. This one schema is both the `format` sent to Ollama (as JSON
// Schema, so constrained decoding can follow it) and the validator of what comes back.
import { z } from 'zod';

/** Every verb a proposal may name. `notify` pages the operator; `none` means "do nothing". */
export const PROPOSAL_VERBS = ['start', 'reboot', 'shutdown', 'stop', 'migrate', 'rollback', 'notify', 'none'] as const;
export const ProposalVerb = z.enum(PROPOSAL_VERBS);
export type ProposalVerb = z.infer<typeof ProposalVerb>;

/** Verbs that change nothing on the fleet; always allowed, they never reach the action agent. */
export const PASSIVE_VERBS: readonly ProposalVerb[] = ['notify', 'none'];

/** Verbs a model might say that homeostat never does (DESIGN.md safety rules): reported as
 *  `forbidden-verb` rather than `unknown-verb`, so the audit trail shows the model tried. */
export const FORBIDDEN_VERB = /destroy|delete|remove|purge|wipe|format|erase|config|set|resize|update|modify|edit|exec|shell|run|kill|reset/i;

const Vmid = z.number().int().min(100).max(999_999_999);
const NodeName = z.string().min(1).max(64);

// Strict objects: `additionalProperties: false` in the JSON Schema keeps constrained decoding
// tight, and any extra key from an unconstrained model is a schema error, not silently dropped.
export const Proposal = z.strictObject({
  verb: ProposalVerb,
  target: z.strictObject({
    vmid: Vmid.optional(),
    node: NodeName.optional(),
  }),
  params: z.strictObject({
    targetNode: NodeName.optional(),
    snapname: z.string().min(1).max(40).optional(),
  }).optional(),
  rationale: z.string().min(1).max(2000),
  confidence: z.number().min(0).max(1),
  expectedEffect: z.string().max(1000),
  verification: z.string().max(1000),
});
export type Proposal = z.infer<typeof Proposal>;

let cachedSchema: Record<string, unknown> | undefined;

/** The JSON Schema sent as Ollama's `format`. Computed once; callers must not mutate it. */
export function proposalJsonSchema(): Record<string, unknown> {
  cachedSchema ??= z.toJSONSchema(Proposal) as Record<string, unknown>;
  return cachedSchema;
}
