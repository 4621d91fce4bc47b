// homeostat's own incidents: an agent that stopped (no heartbeat) or says it is stalled means the
// loop cannot do its job, and that needs a human as much as a crashed guest does. One incident per
// agent and cause ("homeostat: action agent down: approved actions cannot run"), resolved when the
// agent is back. Sensing failing to reach PVE is the `api` incident already, not a second one.
// Heartbeats are judged on analysis' own clock (when a record last changed), so a skewed agent
// clock cannot make it look dead or alive.
import type { AgentEvent, HeartbeatRecord } from '../../bus/mod.ts';
import type { IncidentBook } from './incidents.ts';

const CONSEQUENCE: Record<string, string> = {
  sensing: 'nothing observes the fleet',
  decision: 'incidents get no decisions',
  action: 'approved actions cannot run',
  workflows: 'boot, shutdown, failover and chaos cannot run',
  operator: 'status and chat answer from KV only',
  notify: 'incidents that need a human reach nobody',
};

export class SelfRules {
  /** instance key → the `at` we last saw and when we saw it change (our clock) */
  private readonly seen = new Map<string, { at: string; changedAt: number; rec: HeartbeatRecord }>();

  constructor(private readonly book: IncidentBook, private readonly fleet: string, private readonly self: string, private readonly downMs: number, private readonly startedAt: number) {}

  static key(agent: string, what: 'down' | 'stalled'): string {
    return `homeostat:${agent}:${what}`;
  }

  /** The agents bucket as read now: open or resolve "agent down" incidents. */
  onHeartbeats(records: Iterable<[string, HeartbeatRecord]>, now: number): void {
    const byAgent = new Map<string, { alive: boolean; lastChange: number; stalled: boolean }>();
    const present = new Set<string>();
    for (const [k, rec] of records) {
      if (rec.fleet && rec.fleet !== this.fleet) continue;
      present.add(k);
      const prev = this.seen.get(k);
      const changedAt = !prev || prev.at !== rec.at ? (prev ? now : Math.min(now, this.startedAt)) : prev.changedAt;
      this.seen.set(k, { at: rec.at, changedAt, rec });
      const alive = rec.status === 'running' && now - changedAt <= 3 * rec.intervalMs + 1000 && (prev !== undefined || now - Date.parse(rec.at) < 3 * rec.intervalMs + 1000);
      const a = byAgent.get(rec.agent) ?? { alive: false, lastChange: 0, stalled: false };
      byAgent.set(rec.agent, { alive: a.alive || alive, lastChange: Math.max(a.lastChange, changedAt), stalled: a.stalled || (alive && rec.stalled !== undefined && rec.stalled.kind !== 'pve') });
    }
    for (const k of this.seen.keys()) if (!present.has(k)) this.seen.delete(k);
    for (const [agent, s] of byAgent) {
      if (agent === this.self) continue;
      const key = SelfRules.key(agent, 'down');
      const open = this.book.get(this.book.byKey.get(key));
      const quiet = now - s.lastChange;
      if (!s.alive && !open && quiet >= this.downMs && now - this.startedAt >= this.downMs) {
        const title = `homeostat: ${agent} agent down (no heartbeat for ${Math.round(quiet / 1000)} s): ${CONSEQUENCE[agent] ?? 'its work is not done'}`;
        this.book.create({ kind: 'self', severity: agent === 'operator' || agent === 'notify' ? 'warning' : 'critical', title, rootCause: { name: `homeostat/${agent}`, reason: 'down', alert: 'HomeostatAgentDown' } }, now, title, `alert:${key}`);
      } else if (s.alive && open) {
        this.book.resolve(open, now, `${agent} agent is back (heartbeat again)`);
      }
      // level-triggered: a stalled agent restarted says nothing more, its fresh heartbeat is the news
      const stalled = this.book.get(this.book.byKey.get(SelfRules.key(agent, 'stalled')));
      if (stalled && s.alive && !s.stalled) this.book.resolve(stalled, now, `${agent} agent is making progress again`);
    }
  }

  /** AgentStalled / AgentRecovered. */
  onAgentEvent(type: string, ev: AgentEvent, now: number): void {
    if (ev.kind === 'pve') return; // the api incident says it
    const key = SelfRules.key(ev.agent, 'stalled');
    const open = this.book.get(this.book.byKey.get(key));
    if (type === 'AgentStalled' && !open) {
      const title = `homeostat: ${ev.agent} stalled: ${ev.reason}`;
      this.book.create({ kind: 'self', severity: 'critical', title, rootCause: { name: `homeostat/${ev.agent}`, reason: 'stalled', alert: 'HomeostatAgentStalled' } }, now, title, `alert:${key}`);
    } else if (type === 'AgentRecovered' && open) {
      this.book.resolve(open, now, ev.reason);
    }
  }
}
