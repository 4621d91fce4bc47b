// The analysis rules, synchronous and free of I/O: reports in, alerts and incident messages out.
// Layer-aware root cause: a failing guest whose (transitive) dependency is already failing is a
// *symptom* of that dependency's incident; a node that stops answering is one incident with its
// guests suppressed under it; a symptom noticed before its cause is folded into the cause's
// incident within the grouping window. Only a divergence from the desired state is a failure.
import type { Action, ActionPhase, AgentEvent, Alert, ApiEvent, HeartbeatRecord, DesiredState, Envelope, GuestEvent, Incident, MetricSample, NodeEvent } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { AlertBook, type AlertOutput } from './alerts.ts';
import { IncidentBook, type IncidentOutput } from './incidents.ts';
import { FleetView, type Failure } from './model.ts';
import type { Tuning } from './options.ts';
import { ResourceRules } from './resources.ts';
import { OwnActions } from './own-actions.ts';
import { SelfRules } from './self.ts';

export type Output = (AlertOutput | IncidentOutput) & { causationId?: string; correlationId?: string };
const GUEST_ALERT = { crashed: 'GuestDown', unhealthy: 'HealthCheckFailed' } as const;

export class Analyzer {
  readonly view: FleetView;
  readonly alerts: AlertBook;
  readonly book = new IncidentBook();
  readonly resources: ResourceRules;
  /** What we last concluded per guest; edges of this drive alerts and incidents. */
  readonly failing = new Map<number, Failure>();
  private readonly pendingRelease = new Map<string, number>();
  /** Guests a workflow just handed back (maintenance cleared, or desired turned running) while our
   *  last report of them predates that: judged on the next sensing report, or after a grace. */
  private readonly awaitingEvidence = new Map<number, number>();
  /** homeostat's own actions in flight: the state changes they cause are not failures. */
  readonly own: OwnActions;
  /** homeostat's own agents: down or stalled is an incident too. */
  readonly self: SelfRules;
  private lastTick = 0;
  private out: AlertOutput[] = [];
  now = 0;

  constructor(readonly fleet: Fleet, readonly tuning: Tuning, private readonly clock: () => number = Date.now) {
    this.view = new FleetView(fleet);
    this.alerts = new AlertBook(fleet.name);
    this.resources = new ResourceRules(this.view, this.alerts, this.book, tuning, fleet.name);
    this.own = new OwnActions({ stoppedMs: tuning.evidenceGraceMs, unhealthyMs: tuning.bootGraceMs });
    this.self = new SelfRules(this.book, fleet.name, 'analysis', tuning.agentDownMs, clock());
  }

  /** Run one step: mutations happen synchronously, then the step's messages are returned. */
  step(causationId: string | undefined, fn: () => void): Output[] {
    this.now = this.clock();
    fn();
    const incidents = this.book.drain();
    if (!incidents.length && !this.out.length) return [];
    const opened = incidents.find((i) => i.phase === 'opened')?.incident.id;
    const alerts: Output[] = this.out.map((a) => ({ ...a, causationId, correlationId: opened }));
    this.out = [];
    return [...alerts, ...incidents.map((i) => ({ ...i, causationId, correlationId: i.incident.id }))];
  }

  onGuestEvent(env: Envelope<GuestEvent>): Output[] {
    const d = env.data;
    const g = this.view.guests.get(d.vmid);
    if (!g || env.ts < g.ts) return [];
    return this.step(env.id, () => {
      g.node = d.node;
      g.state = d.state;
      g.health = d.health;
      g.ts = env.ts;
      g.unhealthySince = d.state === 'running' && d.health === 'unhealthy' ? g.unhealthySince ?? this.now : undefined;
      if (d.certDaysLeft !== undefined) g.certDaysLeft = d.certDaysLeft;
      this.awaitingEvidence.delete(d.vmid);
      this.evaluateGuest(d.vmid, d.reason);
      this.resources.onCert(d.vmid, this.now, this.out);
    });
  }

  onNodeEvent(env: Envelope<NodeEvent>): Output[] {
    const d = env.data;
    const n = this.view.nodes.get(d.node);
    if (!n || env.ts < n.ts) return [];
    return this.step(env.id, () => {
      const wasDown = this.view.nodeDown(d.node);
      n.status = d.status;
      n.reachable = d.reachable;
      n.ts = env.ts;
      const down = this.view.nodeDown(d.node);
      if (down && !wasDown) n.downSince = this.now;
      if (!down) n.downSince = undefined;
      if (down && !this.book.byNode.has(d.node)) this.openNodeIncident(d.node, d.reason);
      else if (!down && this.book.byNode.has(d.node)) this.closeNodeIncident(d.node);
    });
  }

  onApiEvent(env: Envelope<ApiEvent>): Output[] {
    const d = env.data;
    if (env.ts < this.view.apiTs) return [];
    this.view.apiTs = env.ts;
    return this.step(env.id, () => this.applyApi(d.available, d.code, d.reason));
  }

  /** fleet.events.agent.<agent>: an agent stalled or recovered. */
  onAgentEvent(env: Envelope<AgentEvent>): Output[] {
    return this.step(env.id, () => this.self.onAgentEvent(env.type, env.data, this.now));
  }

  /** The agents bucket, read periodically. */
  onHeartbeats(records: Iterable<[string, HeartbeatRecord]>): Output[] {
    return this.step(undefined, () => this.self.onHeartbeats(records, this.now));
  }

  /** `homeostat ack`: undefined when no open incident has this id. */
  acknowledge(id: string, by: string, note?: string): Output[] | undefined {
    const inc = this.book.get(id);
    if (!inc) return undefined;
    return this.step(undefined, () => this.book.acknowledge(inc, this.now, by, note));
  }

  /** `homeostat resolve`: closed by hand, the reason in its timeline. A guest still failing is
   *  judged again only when its failure changes (the operator has taken it). */
  resolveByHand(id: string, by: string, reason: string): Output[] | undefined {
    const inc = this.book.get(id);
    if (!inc) return undefined;
    return this.step(undefined, () => {
      this.pendingRelease.delete(id);
      this.book.resolve(inc, this.now, `resolved by ${by}: ${reason}`, 'operator:resolve');
    });
  }

  onDesired(vmid: number, desired: DesiredState | undefined): Output[] {
    if (!this.view.has(vmid)) return [];
    return this.step(undefined, () => {
      const wasIgnored = this.view.ignored(vmid);
      if (desired) this.view.desired.set(vmid, desired);
      else this.view.desired.delete(vmid);
      // A workflow releases a guest as soon as it sees it healthy; sensing may not have reported that
      // yet. Judging the stale report would open a false "stopped while it should run" incident.
      const g = this.view.guests.get(vmid);
      if (wasIgnored && !this.view.ignored(vmid) && g && desired && Date.parse(desired.at) > Date.parse(g.ts) && this.view.failureOf(vmid)) {
        this.awaitingEvidence.set(vmid, this.now);
        return;
      }
      this.awaitingEvidence.delete(vmid);
      this.evaluateGuest(vmid, desired ? `desired state ${desired.state}${desired.maintenance ? ' (maintenance)' : ''} by ${desired.by}` : 'desired state cleared');
    });
  }

  /** fleet.actions.<phase>: what homeostat itself is doing to a guest. */
  onAction(env: Envelope<Action>, phase: ActionPhase): Output[] {
    if (!this.view.has(env.data.target.vmid)) return [];
    return this.step(env.id, () => {
      this.own.onAction(phase, env.data, this.now);
    });
  }

  onMetric(sample: MetricSample): Output[] {
    return this.step(undefined, () => this.resources.onMetric(sample, this.now, this.out));
  }

  onExternalAlert(env: Envelope<Alert>): Output[] {
    if (env.data.origin !== 'alertmanager') return [];
    return this.step(env.id, () => this.resources.onExternal(env, this.now));
  }

  /** After memory was rebuilt from KV: open what is failing and uncovered, resolve what healed meanwhile. */
  reconcile(): Output[] {
    return this.step(undefined, () => {
      for (const n of this.view.nodes.values()) {
        const down = this.view.nodeDown(n.node);
        if (down && !this.book.byNode.has(n.node)) this.openNodeIncident(n.node, 'found down at start');
        else if (!down && this.book.byNode.has(n.node)) this.closeNodeIncident(n.node);
      }
      this.applyApi(this.view.apiAvailable);
      const layer = (v: number) => this.view.guests.get(v)!.layer;
      const order = [...this.view.guests.keys()].sort((a, b) => layer(a) - layer(b) || a - b);
      for (const v of order) {
        const f = this.view.failureOf(v);
        if (!f || !(this.book.rootOf.has(v) || this.book.symptomOf.has(v))) continue;
        this.failing.set(v, f);
        this.alerts.remember(GUEST_ALERT[f], v, { vmid: v, summary: `${this.view.guests.get(v)!.name} (${v}) ${f}` }, new Date(this.now).toISOString());
      }
      for (const v of order) if (!this.failing.has(v)) this.evaluateGuest(v, 'state at start');
    });
  }

  tick(): Output[] {
    return this.step(undefined, () => {
      const now = this.now;
      for (const vmid of this.own.due(this.lastTick, now)) {
        for (const v of [vmid, ...this.view.dependents(vmid)]) this.evaluateGuest(v, 'after homeostat\'s own action on it ended');
      }
      this.lastTick = now;
      // sensing reports changes only: no report within the grace means the stale state still holds
      for (const [vmid, since] of this.awaitingEvidence) {
        if (now - since < this.tuning.evidenceGraceMs) continue;
        this.awaitingEvidence.delete(vmid);
        this.evaluateGuest(vmid, 'no newer report since the desired state changed');
      }
      for (const [id, since] of this.pendingRelease) {
        const inc = this.book.get(id);
        if (!inc || (inc.rootCause.vmid !== undefined && this.failing.has(inc.rootCause.vmid))) this.pendingRelease.delete(id);
        else if (now - since >= this.tuning.symptomGraceMs) {
          this.pendingRelease.delete(id);
          this.book.resolve(inc, now, 'root cause recovered; symptoms still failing are handled as incidents of their own');
          this.release(inc);
        }
      }
      for (const n of this.view.nodes.values()) {
        if (n.downSince === undefined || now - n.downSince < this.tuning.alerts.nodeDownMs) continue;
        const fired = this.alerts.set('NodeDown', n.node, true, { node: n.node, summary: `node ${n.node} down for ${Math.round((now - n.downSince) / 1000)} s` }, now, this.out);
        const inc = this.book.get(this.book.byNode.get(n.node));
        if (fired && inc) this.book.note(inc, now, 'NodeDown alert fired', `alert:NodeDown:${n.node}`);
      }
      for (const inc of this.book.open.values()) this.escalateSlowBoot(inc);
      this.resources.tick(now, this.out);
    });
  }

  // ---- guests

  evaluateGuest(vmid: number, why?: string): void {
    const g = this.view.guests.get(vmid)!;
    const f = this.ownFailure(vmid);
    const prev = this.failing.get(vmid);
    const info = { vmid, node: g.node, summary: `${g.name} (${vmid}) ${f === 'crashed' ? 'is stopped but should run' : f === 'unhealthy' ? 'fails its health checks' : `state ${g.state}, health ${g.health}`}${why ? `: ${why}` : ''}` };
    this.alerts.set('GuestDown', vmid, f === 'crashed', info, this.now, this.out);
    this.alerts.set('HealthCheckFailed', vmid, f === 'unhealthy', info, this.now, this.out);
    if (f) this.failing.set(vmid, f);
    else this.failing.delete(vmid);
    if (f && f !== prev) return this.onFailing(vmid, f, prev);
    if (f) return;
    if (this.view.settled(vmid)) this.own.settled(vmid);
    const host = this.book.get(this.book.symptomOf.get(vmid));
    if (host) {
      this.book.dropSymptom(host, vmid, 'recovered', this.now);
      this.checkIncident(host);
    }
    const root = this.book.get(this.book.rootOf.get(vmid));
    if (root) {
      if (prev) this.book.note(root, this.now, `${g.name} (${vmid}) no longer failing: ${why ?? `${g.state}/${g.health}`}`, `vmid:${vmid}`);
      this.checkIncident(root);
    }
  }

  /** The failure of `vmid`, unless one of homeostat's own actions explains it (and the guest is not
   *  already part of an incident, whose remediation this may well be). */
  private ownFailure(vmid: number): Failure | undefined {
    const f = this.view.failureOf(vmid);
    if (!f || this.book.rootOf.has(vmid) || this.book.symptomOf.has(vmid)) return f;
    return this.own.excuse(vmid, f, this.now, () => this.view.ancestors(vmid)) ? undefined : f;
  }

  private onFailing(vmid: number, f: Failure, prev: Failure | undefined): void {
    const g = this.view.guests.get(vmid)!;
    const root = this.book.get(this.book.rootOf.get(vmid));
    if (root) {
      // The root cause's reason is fixed while the incident is open (a started guest that is still
      // booting fails its probes); the timeline records the change.
      this.book.note(root, this.now, `${g.name} (${vmid}) now ${f}${prev ? ` (was ${prev})` : ''}`, `vmid:${vmid}`);
      return;
    }
    const host = this.book.get(this.book.symptomOf.get(vmid));
    if (host) {
      if (f === 'unhealthy') return this.book.setSymptomReason(host, vmid, 'unhealthy', this.now);
      this.book.dropSymptom(host, vmid, 'crashed: incident of its own', this.now);
    }
    if (f === 'unhealthy') {
      const cause = this.incidentOfFailingAncestor(vmid);
      if (cause) return this.book.addSymptom(cause, this.view.ref(vmid), 'unhealthy', this.now);
    }
    const inc = this.book.create({
      kind: 'guest',
      severity: f === 'crashed' ? 'critical' : 'warning',
      title: f === 'crashed' ? `${g.name} (${vmid}) stopped on ${g.node} while it should run` : `${g.name} (${vmid}) on ${g.node} is running but fails its health checks`,
      rootCause: { vmid, node: g.node, name: g.name, reason: f, alert: GUEST_ALERT[f] },
    }, this.now, `${GUEST_ALERT[f]}: ${g.name} (${vmid}) ${f}`, `vmid:${vmid}`);
    this.foldInto(inc, [vmid]);
  }

  /** The incident of the lowest failing (or unreachable) dependency, if any. */
  private incidentOfFailingAncestor(vmid: number): Incident | undefined {
    for (const a of this.view.ancestors(vmid)) {
      const ga = this.view.guests.get(a);
      if (!ga) continue;
      if (this.view.nodeDown(ga.node)) {
        const n = this.book.get(this.book.byNode.get(ga.node));
        if (n) return n;
        continue;
      }
      if (!this.failing.has(a)) continue;
      const inc = this.book.get(this.book.rootOf.get(a)) ?? this.book.get(this.book.symptomOf.get(a));
      if (inc) return inc;
    }
    return undefined;
  }

  /** Fold incidents that turn out to be symptoms of `inc` (its covered guests) into it. */
  private foldInto(inc: Incident, covered: number[]): void {
    const downNode = inc.kind === 'node' ? inc.rootCause.node : undefined;
    // a guest incident can only absorb young unhealthy incidents of its dependents: none open (a
    // burst of crashes), nothing to look for; else look among its dependents, not every open one
    if (downNode === undefined && !this.book.unhealthyRoots.size) return;
    const candidates = downNode !== undefined
      ? [...this.book.open.values()]
      : [...new Set(covered.flatMap((c) => this.view.dependents(c)))].map((v) => this.book.get(this.book.rootOf.get(v))).filter((i) => i !== undefined);
    for (const other of candidates) {
      const r = other.rootCause.vmid;
      if (other.id === inc.id || other.kind !== 'guest' || r === undefined) continue;
      const onDownNode = downNode !== undefined && this.view.guests.get(r)?.node === downNode;
      const young = this.now - Date.parse(other.openedAt) <= this.tuning.groupWindowMs;
      const below = other.rootCause.reason === 'unhealthy' && covered.some((c) => this.view.dependsOn(r, c));
      if (!onDownNode && !(young && below)) continue;
      if (!onDownNode) this.book.addSymptom(inc, this.view.ref(r), 'unhealthy', this.now);
      for (const s of other.symptoms) {
        const f = this.failing.get(s.vmid);
        if (f && this.book.symptomOf.get(s.vmid) === other.id) this.book.addSymptom(inc, this.view.ref(s.vmid), f, this.now);
      }
      this.book.resolve(other, this.now, `folded into ${inc.id}: ${onDownNode ? `its node ${downNode} is down` : 'symptom of a failing dependency'}`, `folded:${inc.id}`);
    }
  }

  /** Resolve a guest incident once its root cause is settled and no symptom still fails. */
  private checkIncident(inc: Incident): void {
    if (inc.kind !== 'guest' || inc.status !== 'open') return;
    const root = inc.rootCause.vmid!;
    if (this.failing.has(root) || !this.view.settled(root)) return;
    const still = inc.symptoms.filter((s) => this.failing.has(s.vmid) && this.book.symptomOf.get(s.vmid) === inc.id);
    if (!still.length) {
      this.pendingRelease.delete(inc.id);
      this.book.resolve(inc, this.now, this.view.ignored(root) ? 'desired state is not "running": not a failure' : 'root cause running and healthy again, no symptom left');
    } else if (!this.pendingRelease.has(inc.id)) {
      this.pendingRelease.set(inc.id, this.now);
      this.book.note(inc, this.now, `root cause recovered; waiting for ${still.length} symptom(s)`);
    }
  }

  /** After an incident resolved, its still-failing symptoms are judged again on their own. */
  private release(inc: Incident): void {
    const layer = (v: number) => this.view.guests.get(v)?.layer ?? 0;
    const left = inc.symptoms.map((s) => s.vmid).filter((v) => this.failing.has(v) && !this.book.symptomOf.has(v) && !this.book.rootOf.has(v));
    for (const v of left.sort((a, b) => layer(a) - layer(b))) this.onFailing(v, this.failing.get(v)!, undefined);
  }

  private escalateSlowBoot(inc: Incident): void {
    const v = inc.rootCause.vmid;
    if (inc.kind !== 'guest' || inc.rootCause.reason !== 'crashed' || v === undefined) return;
    const g = this.view.guests.get(v);
    if (g?.unhealthySince === undefined || this.now - g.unhealthySince < this.tuning.bootGraceMs) return;
    this.book.setRootCause(inc, { ...inc.rootCause, reason: 'unhealthy', alert: 'HealthCheckFailed' });
    this.book.note(inc, this.now, `${g.name} (${v}) runs again but has failed health checks for ${Math.round((this.now - g.unhealthySince) / 1000)} s: now unhealthy`, `vmid:${v}`);
  }

  // ---- nodes and the API

  private openNodeIncident(node: string, reason?: string): void {
    const here = this.view.guestsOn(node);
    for (const g of here) {
      this.failing.delete(g.vmid);
      const info = { vmid: g.vmid, node, summary: `${g.name} (${g.vmid}): state unknown, node ${node} down` };
      this.alerts.set('GuestDown', g.vmid, false, info, this.now, this.out);
      this.alerts.set('HealthCheckFailed', g.vmid, false, info, this.now, this.out);
    }
    const n = this.view.nodes.get(node)!;
    const how = n.reachable ? 'offline' : 'unreachable';
    const inc = this.book.create({
      kind: 'node',
      severity: 'critical',
      title: `node ${node} ${how}: ${here.length} guest(s) suppressed`,
      rootCause: { node, reason: how, alert: 'NodeDown' },
      suppressed: here.map((g) => this.view.ref(g.vmid)),
    }, this.now, `node ${node} ${how}${reason ? `: ${reason}` : ''}`, `node:${node}`);
    this.foldInto(inc, here.map((g) => g.vmid));
  }

  private closeNodeIncident(node: string): void {
    const inc = this.book.get(this.book.byNode.get(node))!;
    this.alerts.set('NodeDown', node, false, { node, summary: `node ${node} answers again` }, this.now, this.out);
    this.book.resolve(inc, this.now, `node ${node} answers again`);
    this.release(inc);
    for (const g of this.view.guestsOn(node)) this.evaluateGuest(g.vmid, `node ${node} back`);
  }

  applyApi(available: boolean, code?: string, reason?: string): void {
    this.view.apiAvailable = available;
    const key = AlertBook.fingerprint('PveUnavailable', 'api');
    const summary = available ? 'PVE API answers again' : `PVE API unavailable${code ? ` (${code})` : ''}${reason ? `: ${reason}` : ''}`;
    this.alerts.set('PveUnavailable', 'api', !available, { summary }, this.now, this.out);
    const open = this.book.get(this.book.byKey.get(key));
    if (!available && !open) {
      const title = `homeostat: sensing cannot reach the PVE API${code ? ` (${code})` : ''}${reason ? `: ${reason}` : ''}`;
      this.book.create({ kind: 'api', severity: 'critical', title, rootCause: { name: this.fleet.name, reason: 'unavailable', alert: 'PveUnavailable' } }, this.now, summary, `alert:${key}`);
    } else if (available && open) {
      this.book.resolve(open, this.now, summary);
    }
  }
}
