// Chat: built-in intents answered from fleet-state, incidents and traces (ids cited); commands go
// through the same fleet.cmd.* requests as the CLI, so the same policy and approvals apply.
import { HomeostatError } from '../../core/mod.ts';
import { signApproval, subjects, type Bus, type ChatAnswer, type ChatRequest, type Signer } from '../../bus/mod.ts';
import { dependentsOf, type Fleet, type GuestSpec } from '../../fleet/manifest.ts';
import { HELP_TEXT, parseIntent, type Intent } from './intents.ts';
import { fleetStatus, openIncidents, pendingApprovals } from './queries.ts';
import { traceIncident } from './trace.ts';

export interface Phraser {
  /** Rephrase a factual answer; must not add facts. Returns undefined when unavailable. */
  phrase(question: string, facts: string): Promise<string | undefined>;
}

type Answer = Omit<ChatAnswer, 'usedModel' | 'needsConfirmation' | 'citations'> & { citations?: string[]; needsConfirmation?: boolean };

export function resolveGuest(fleet: Fleet, ref: string): GuestSpec | undefined {
  const n = Number(ref);
  if (Number.isInteger(n)) return fleet.byVmid.get(n);
  return fleet.guests.find((g) => g.name.toLowerCase() === ref.toLowerCase());
}

const cmd = (bus: Bus, verb: string, args: Record<string, unknown>, by: string, timeoutMs = 15_000) =>
  bus.request<unknown>(subjects.cmd(verb), 'Command', { args, requestedBy: by }, timeoutMs);

async function describeCommand(intent: Intent, bus: Bus, fleet: Fleet, req: ChatRequest, signer?: Signer): Promise<Answer> {
  const by = `chat:${req.requestedBy}`;
  const confirmNeeded = (what: string): Answer => ({
    intent: intent.kind,
    answer: `${what} Reply with the same request and confirm (CLI: \`homeostat chat --yes "…"\`) to go ahead.`,
    needsConfirmation: true,
  });
  switch (intent.kind) {
    case 'boot': {
      const r = await cmd(bus, 'boot', { layer: intent.layer, dryRun: intent.dryRun }, by);
      const id = (r as { workflowId?: string })?.workflowId;
      return { intent: 'boot', answer: `${intent.dryRun ? 'Dry-run of' : 'Started'} layered boot${intent.layer ? ` of layer ${intent.layer}` : ''}${id ? ` (workflow ${id})` : ''}.`, citations: id ? [id] : [], data: r };
    }
    case 'shutdown': {
      if (!intent.dryRun && !req.confirm) return confirmNeeded(`This shuts down ${intent.layer ? `layer ${intent.layer}` : 'the whole fleet'} in reverse dependency order.`);
      const r = await cmd(bus, 'shutdown', { layer: intent.layer, dryRun: intent.dryRun }, by);
      const id = (r as { workflowId?: string })?.workflowId;
      return { intent: 'shutdown', answer: `${intent.dryRun ? 'Dry-run of' : 'Started'} graceful shutdown${id ? ` (workflow ${id})` : ''}.`, citations: id ? [id] : [], data: r };
    }
    case 'failover': {
      if (!req.confirm) return confirmNeeded(`This fences ${intent.node} (once it is confirmed gone) and recovers its guests on the other nodes.`);
      const r = await cmd(bus, 'failover', { node: intent.node }, by);
      const id = (r as { workflowId?: string })?.workflowId;
      return { intent: 'failover', answer: `Failover of ${intent.node} started${id ? ` (workflow ${id})` : ''}.`, citations: id ? [id] : [], data: r };
    }
    case 'chaos-run': {
      if (!intent.dryRun && !req.confirm) return confirmNeeded(`This injects the faults of experiment ${intent.name} into the fleet.`);
      const r = await cmd(bus, 'chaos.run', { name: intent.name, dryRun: intent.dryRun }, by);
      const id = (r as { workflowId?: string })?.workflowId;
      return { intent: 'chaos-run', answer: `Chaos experiment ${intent.name} ${intent.dryRun ? 'dry-run ' : ''}started${id ? ` (workflow ${id})` : ''}.`, citations: id ? [id] : [], data: r };
    }
    case 'chaos-list': {
      const r = (await cmd(bus, 'chaos.list', {}, by)) as { name: string; description?: string }[];
      return { intent: 'chaos-list', answer: r.length ? r.map((e) => `- ${e.name}${e.description ? `: ${e.description}` : ''}`).join('\n') : 'No experiments found.', data: r };
    }
    case 'approve':
    case 'deny': {
      const pending = await pendingApprovals(bus);
      const match = pending.filter((p) => p.actionId === intent.id || p.actionId.startsWith(intent.id) || p.actionId.endsWith(intent.id));
      if (match.length > 1) return { intent: intent.kind, answer: `"${intent.id}" matches ${match.length} pending actions: ${match.map((p) => p.actionId).join(', ')}. Use more of the id.` };
      const actionId = match[0]?.actionId ?? intent.id;
      // relayed under the chat agent's own key (trusted as an operator by `up`; see docs/security.md)
      const r = await cmd(bus, intent.kind, { actionId, by, ...(signer ? { signed: signApproval(signer, intent.kind, actionId) } : {}) }, by);
      return { intent: intent.kind, answer: `${intent.kind === 'approve' ? 'Approved' : 'Denied'} action ${actionId}.`, citations: [actionId], data: r };
    }
    case 'guest-action': {
      const g = resolveGuest(fleet, intent.guest);
      if (!g) return { intent: intent.kind, answer: `There is no guest "${intent.guest}" in the fleet.` };
      const destructive = intent.verb !== 'start';
      if ((destructive || g.protected) && !req.confirm) {
        return confirmNeeded(`This will ${intent.verb} ${g.name} (${g.vmid})${g.protected ? ', a protected guest (it also needs an approval)' : ''}.`);
      }
      const r = (await cmd(bus, 'action', { verb: intent.verb, vmid: g.vmid, by }, by)) as { actionId?: string; verdict?: string };
      return { intent: intent.kind, answer: `Requested ${intent.verb} of ${g.name} (${g.vmid})${r?.verdict ? `: ${r.verdict}` : ''}${r?.actionId ? ` [action ${r.actionId}]` : ''}.`, citations: r?.actionId ? [r.actionId] : [], data: r };
    }
    default:
      throw new HomeostatError('HOMEOSTAT_ERR_INTERNAL', `not a command intent: ${intent.kind}`);
  }
}

async function answerQuestion(intent: Intent, bus: Bus, fleet: Fleet): Promise<Answer> {
  switch (intent.kind) {
    case 'help':
    case 'unknown':
      return { intent: intent.kind, answer: intent.kind === 'unknown' ? `I did not understand that.\n${HELP_TEXT}` : HELP_TEXT };
    case 'status':
    case 'whats-down': {
      const s = await fleetStatus(bus, fleet);
      const down = s.guests.filter((g) => !g.ok);
      const nodesDown = s.nodes.filter((n) => !n.reachable || n.status !== 'online');
      const lines: string[] = [];
      if (!down.length && !nodesDown.length) lines.push(`All ${s.summary.guests} guests are as desired and all nodes are online.`);
      for (const n of nodesDown) lines.push(`Node ${n.node} is ${n.reachable ? n.status : 'unreachable'}${n.fenced ? ' (fenced)' : ''}.`);
      for (const g of down) lines.push(`${g.name} (${g.vmid}, layer ${g.layer}, ${g.node}) is ${g.state}${g.health !== 'unknown' ? `/${g.health}` : ''}, desired ${g.desired}.`);
      for (const i of s.incidents) lines.push(`Incident ${i.id}: ${i.title}`);
      if (s.approvals.length) lines.push(`${s.approvals.length} action(s) wait for approval: ${s.approvals.map((a) => `${a.actionId} (${a.verb} ${a.target.vmid})`).join(', ')}.`);
      if (s.advisor && !s.advisor.available) lines.push(`The LLM advisor is unavailable (${s.advisor.reason ?? 'no model'}); healing by runbooks.`);
      return { intent: intent.kind, answer: lines.join('\n'), citations: s.incidents.map((i) => i.id), data: s.summary };
    }
    case 'incidents': {
      const list = await openIncidents(bus, true);
      const shown = list.slice(0, 10);
      return {
        intent: 'incidents',
        answer: shown.length ? shown.map((i) => `${i.id} [${i.status}] ${i.title}`).join('\n') : 'No incidents recorded.',
        citations: shown.map((i) => i.id),
      };
    }
    case 'approvals': {
      const p = await pendingApprovals(bus);
      return { intent: 'approvals', answer: p.length ? p.map((a) => `${a.actionId}: ${a.verb} ${a.target.vmid} — ${a.rationale ?? ''}`).join('\n') : 'No actions wait for approval.', citations: p.map((a) => a.actionId) };
    }
    case 'why':
      return explainGuest(intent.guest, bus, fleet);
    case 'what-if-node':
      return whatIfNodeDies(intent.node, fleet);
    default:
      throw new HomeostatError('HOMEOSTAT_ERR_INTERNAL', `unhandled intent ${intent.kind}`);
  }
}

async function explainGuest(ref: string, bus: Bus, fleet: Fleet): Promise<Answer> {
  const g = resolveGuest(fleet, ref);
  if (!g) return { intent: 'why', answer: `There is no guest "${ref}" in the fleet.` };
  const all = await openIncidents(bus, true);
  const related = all.filter((i) => i.rootCause.vmid === g.vmid || i.symptoms.some((s) => s.vmid === g.vmid) || i.suppressed.some((s) => s.vmid === g.vmid) || (i.kind === 'node' && i.rootCause.node === g.node));
  const status = await fleetStatus(bus, fleet);
  const now = status.guests.find((x) => x.vmid === g.vmid);
  const nowText = now ? `${g.name} (${g.vmid}) is now ${now.state}${now.health !== 'unknown' ? `/${now.health}` : ''} on ${now.node}.` : '';
  if (!related.length) return { intent: 'why', answer: `${nowText} No incident involves it.`.trim() };
  const inc = related.sort((a, b) => b.openedAt.localeCompare(a.openedAt))[0];
  const trace = await traceIncident(bus, inc.id);
  const asSymptom = inc.rootCause.vmid !== g.vmid && inc.kind !== 'node';
  const lines = [
    asSymptom
      ? `${g.name} (${g.vmid}) is a symptom of incident ${inc.id}: the root cause is ${inc.rootCause.name ?? inc.rootCause.vmid} — ${inc.rootCause.reason}.`
      : `Incident ${inc.id} (${inc.status}): ${inc.title} — ${inc.rootCause.reason}.`,
    ...trace.entries.filter((e) => e.step !== 'other').slice(0, 20).map((e) => `  ${e.ts.slice(11, 19)} ${e.step.padEnd(12)} ${e.summary}`),
    nowText,
  ];
  return { intent: 'why', answer: lines.filter(Boolean).join('\n'), citations: [inc.id, ...trace.actionIds], data: { incidentId: inc.id, actionIds: trace.actionIds } };
}

function whatIfNodeDies(node: string, fleet: Fleet): Answer {
  const spec = fleet.nodes.find((n) => n.name.toLowerCase() === node.toLowerCase());
  if (!spec) return { intent: 'what-if-node', answer: `There is no node "${node}" (nodes: ${fleet.nodes.map((n) => n.name).join(', ')}).` };
  const on = fleet.guests.filter((g) => g.node === spec.name);
  const deps = dependentsOf(fleet);
  const impacted = new Set<number>();
  const walk = (v: number) => {
    for (const d of deps.get(v) ?? []) if (!impacted.has(d)) {
      impacted.add(d);
      walk(d);
    }
  };
  on.forEach((g) => walk(g.vmid));
  on.forEach((g) => impacted.delete(g.vmid));
  const survivors = fleet.nodes.filter((n) => n.name !== spec.name);
  const free = survivors.reduce((s, n) => s + Math.max(0, n.capacity - fleet.guests.filter((g) => g.node === n.name).length), 0);
  const fence = fleet.policies.fenceDelayMs / 1000;
  const lines = [
    `${spec.name} runs ${on.length} guest(s): ${on.map((g) => `${g.name} (${g.vmid}, layer ${g.layer})`).join(', ') || 'none'}.`,
    impacted.size ? `Their dependents on other nodes would turn unhealthy: ${[...impacted].map((v) => `${fleet.byVmid.get(v)!.name} (${v})`).join(', ')}.` : 'No guest on another node depends on them.',
    `homeostat would open one node incident at once, wait the ${fence}s fence delay, confirm ${spec.name} is out of quorum, then recover the guests on ${survivors.map((n) => n.name).join(' and ')} in layer order (free capacity: ${free} slot(s)${free < on.length ? ` — ${on.length - free} guest(s) could not be placed` : ''}).`,
  ];
  return { intent: 'what-if-node', answer: lines.join('\n'), data: { guests: on.map((g) => g.vmid), impacted: [...impacted] } };
}

export async function answerChat(req: ChatRequest, bus: Bus, fleet: Fleet, phraser?: Phraser, signer?: Signer): Promise<ChatAnswer> {
  const intent = parseIntent(req.question);
  const commandKinds = ['boot', 'shutdown', 'failover', 'chaos-run', 'chaos-list', 'approve', 'deny', 'guest-action'];
  let a: Answer;
  try {
    a = commandKinds.includes(intent.kind) ? await describeCommand(intent, bus, fleet, req, signer) : await answerQuestion(intent, bus, fleet);
  } catch (e) {
    const msg = e instanceof HomeostatError ? `${e.code}: ${e.message}` : (e as Error).message;
    a = { intent: intent.kind, answer: `That did not work: ${msg}` };
  }
  let usedModel = false;
  let modelAvailable: boolean | undefined;
  if (phraser && intent.kind !== 'unknown' && !a.needsConfirmation) {
    const phrased = await phraser.phrase(req.question, a.answer).catch(() => undefined);
    modelAvailable = phrased !== undefined;
    // the model may only rephrase: every cited id must survive, else the facts answer stands
    if (phrased && (a.citations ?? []).every((c) => phrased.includes(c))) {
      a = { ...a, answer: phrased };
      usedModel = true;
    }
  }
  return { ...a, citations: a.citations ?? [], needsConfirmation: a.needsConfirmation ?? false, usedModel, ...(modelAvailable === undefined ? {} : { advisorAvailable: modelAvailable }) };
}
