// Flap hold-down: when a guest was remediated too often, stop acting on it, open a "flapping"
// incident for the operator, and resume only when an operator clears it (fleet.cmd.hold.clear).
import { Incident, kvGet, kvKeys, kvPut, subjects } from '../../bus/mod.ts';
import type { DecisionContext } from './context.ts';
import type { CaseRecord } from './store.ts';

export async function openHoldDown(ctx: DecisionContext, vmid: number, node: string, c: CaseRecord, reason: string): Promise<void> {
  const spec = ctx.fleet.byVmid.get(vmid)!;
  const ts = new Date().toISOString();
  const id = `flap-${vmid}-${Date.now().toString(36)}`;
  if (!(await ctx.store.setHold({ vmid, since: ts, incidentId: id, reason }))) return;
  const inc: Incident = {
    id, kind: 'flapping', status: 'open', severity: 'critical', title: `${spec.name} (${vmid}) is flapping: automatic remediation on hold`,
    rootCause: { vmid, node, name: spec.name, reason: 'flapping', alert: 'Flapping' },
    symptoms: [], suppressed: [], openedAt: ts, updatedAt: ts, timeline: [{ ts, what: reason.slice(0, 2000), ref: c.caseId }],
  };
  await kvPut(ctx.bus.kv.incidents, kvKeys.incident(id), inc);
  await ctx.bus.publish(subjects.incident(id, 'opened'), 'IncidentOpened', inc, { correlationId: c.correlationId, causationId: c.causationId, msgId: `${id}.opened` });
  ctx.log.warn({ vmid, incidentId: id, reason }, 'flap hold-down: automatic remediation stopped for this guest');
}

/** Clear the hold-down and the guest's remediation history; resolve the flapping incident. */
export async function clearHoldDown(ctx: DecisionContext, vmid: number, by: string): Promise<boolean> {
  const { store, bus } = ctx;
  const h = await store.hold(vmid);
  await store.clearHold(vmid);
  await store.clearRemediations(vmid);
  if (!h) return false;
  const cur = (await kvGet(bus.kv.incidents, kvKeys.incident(h.incidentId), Incident))?.value;
  if (cur && cur.status === 'open') {
    const ts = new Date().toISOString();
    const inc: Incident = { ...cur, status: 'resolved', resolvedAt: ts, updatedAt: ts, timeline: [...cur.timeline, { ts, what: `hold-down cleared by ${by}`.slice(0, 2000) }].slice(-500) };
    await kvPut(bus.kv.incidents, kvKeys.incident(inc.id), inc);
    await bus.publish(subjects.incident(inc.id, 'resolved'), 'IncidentResolved', inc, { msgId: `${inc.id}.resolved` });
  }
  ctx.log.info({ vmid, by }, 'flap hold-down cleared');
  return true;
}
