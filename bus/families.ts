// Which schema guards which subject. Order matters: the first pattern that matches wins.
import type { z } from 'zod';
import { subjectMatches } from './subjects.ts';
import * as S from './schemas.ts';

export interface Family {
  name: string;
  pattern: string;
  schema: z.ZodType;
  /** Envelope `type` values allowed on this family (empty = any). */
  types: readonly string[];
}

export const FAMILIES: readonly Family[] = [
  { name: 'guest-event', pattern: 'fleet.events.guest.*.*', schema: S.GuestEvent, types: ['GuestStateChanged', 'GuestProbe', 'GuestDiscovered', 'GuestResources'] },
  { name: 'node-event', pattern: 'fleet.events.node.*', schema: S.NodeEvent, types: ['NodeUp', 'NodeDown', 'NodeUnreachable', 'NodeReachable', 'NodePressure', 'NodeDiscovered'] },
  { name: 'agent-event', pattern: 'fleet.events.agent.*', schema: S.AgentEvent, types: ['AgentStalled', 'AgentRecovered'] },
  { name: 'api-event', pattern: 'fleet.events.api', schema: S.ApiEvent, types: ['PveUnavailable', 'PveAvailable'] },
  { name: 'metrics', pattern: 'fleet.metrics.*.*', schema: S.MetricSample, types: ['MetricSample'] },
  { name: 'alert', pattern: 'fleet.alerts.*', schema: S.Alert, types: ['AlertFired', 'AlertResolved'] },
  { name: 'incident', pattern: 'fleet.incidents.*.*', schema: S.Incident, types: ['IncidentOpened', 'IncidentUpdated', 'IncidentAcknowledged', 'IncidentResolved'] },
  { name: 'decision', pattern: 'fleet.decisions.*', schema: S.Decision, types: ['DecisionMade'] },
  { name: 'action', pattern: 'fleet.actions.*', schema: S.Action, types: ['ActionRequested', 'ActionApproved', 'ActionDenied', 'ActionStarted', 'ActionSucceeded', 'ActionFailed', 'ActionRejected'] },
  { name: 'workflow', pattern: 'fleet.workflows.>', schema: S.WorkflowEvent, types: [] },
  { name: 'propose-action', pattern: 'fleet.propose.action', schema: S.ActionProposal, types: ['ActionProposal'] },
  { name: 'propose-fence', pattern: 'fleet.propose.fence', schema: S.FenceProposal, types: ['FenceProposal'] },
  { name: 'command', pattern: 'fleet.cmd.>', schema: S.CommandRequest, types: [] },
  { name: 'chat', pattern: 'fleet.chat', schema: S.ChatRequest, types: ['ChatQuestion'] },
  { name: 'dead-letter', pattern: 'fleet.dlq.>', schema: S.DeadLetter, types: ['DeadLetter'] },
];

const cache = new Map<string, Family | null>();

export function familyOf(subject: string): Family | undefined {
  const hit = cache.get(subject);
  if (hit !== undefined) return hit ?? undefined;
  const fam = FAMILIES.find((f) => subjectMatches(f.pattern, subject)) ?? null;
  if (cache.size > 50_000) cache.clear();
  cache.set(subject, fam);
  return fam ?? undefined;
}

const DEAD_LETTER_KINDS: readonly [RegExp, string][] = [
  [/^envelope /, 'envelope'],
  [/^data /, 'schema'],
  [/^type .* not allowed/, 'type'],
  [/^no schema/, 'no_schema'],
  [/^oversize/, 'oversize'],
  [/UTF-8/, 'utf8'],
  [/^malformed JSON/, 'json'],
  [/^handler failed/, 'handler'],
];

/** A dead letter's reason reduced to a small fixed set (a metric label, never free text). */
export function deadLetterKind(reason: string): string {
  return DEAD_LETTER_KINDS.find(([re]) => re.test(reason))?.[1] ?? 'other';
}
