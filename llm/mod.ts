// The LLM advisor: the model proposes, the decision agent's policy gate disposes.
export { NullAdvisor } from './seam.ts';
export type {
  Advisor, AdvisorAvailability, AdvisorContext, AdvisorFailureCode, AdvisorResult, ProposeOptions,
  RecentEvent, RunbookAttempt, SliceGuest, SliceNode,
} from './seam.ts';
export { OllamaAdvisor, type OllamaAdvisorOptions } from './advisor.ts';
export { FORBIDDEN_VERB, PASSIVE_VERBS, PROPOSAL_VERBS, Proposal, ProposalVerb, proposalJsonSchema } from './proposal.ts';
export { buildPrompt, cleanText, DATA_CLOSE, DATA_OPEN, DEFAULT_PROMPT_LIMITS, effectiveVerbs, type BuiltPrompt, type PromptLimits } from './prompt.ts';
export { checkProposal, DEFAULT_OUTPUT_LIMITS, validateProposal, type OutputLimits, type Validation } from './validate.ts';
export { OllamaPhraser, type OllamaPhraserOptions } from './phraser.ts';
