// The open incidents and their indexes (which guest is whose root cause or symptom, which node or
// alert has one). Every change is recorded as a touch; `drain` hands back one message per touched
// incident, in the order they were first touched, so a step publishes a consistent picture.
import { newId } from '../../core/mod.ts';
import { type GuestRef, type Incident, type IncidentPhase } from '../../bus/mod.ts';

const TIMELINE_MAX = 100;
/** Keeps an incident message well under the 256 KiB payload limit even for a big node. */
const LIST_MAX = 2000;

export interface IncidentOutput {
  kind: 'incident';
  phase: IncidentPhase;
  incident: Incident;
}

export type NewIncident = Pick<Incident, 'kind' | 'severity' | 'title' | 'rootCause'> & { symptoms?: Incident['symptoms']; suppressed?: GuestRef[] };

export class IncidentBook {
  readonly open = new Map<string, Incident>();
  readonly rootOf = new Map<number, string>();
  readonly symptomOf = new Map<number, string>();
  readonly byNode = new Map<string, string>();
  /** Resource, external and api incidents by their alert fingerprint. */
  readonly byKey = new Map<string, string>();
  /** Open guest incidents whose root cause is unhealthy: the only ones a guest incident can fold
   *  in (usually none, so a crash needs no walk over its dependents' incidents). */
  readonly unhealthyRoots = new Set<string>();
  private touched = new Map<string, IncidentPhase | 'opened+resolved'>();
  private readonly closed = new Map<string, Incident>();

  get(id: string | undefined): Incident | undefined {
    return id === undefined ? undefined : this.open.get(id);
  }

  /** Index an incident read back from KV. */
  adopt(inc: Incident): void {
    if (inc.status !== 'open') return;
    this.open.set(inc.id, inc);
    this.index(inc);
  }

  create(spec: NewIncident, now: number, what: string, ref?: string): Incident {
    const ts = new Date(now).toISOString();
    const inc: Incident = {
      id: `inc-${newId(now).toLowerCase()}`,
      kind: spec.kind,
      status: 'open',
      severity: spec.severity,
      title: spec.title.slice(0, 2000),
      rootCause: spec.rootCause,
      symptoms: (spec.symptoms ?? []).slice(0, LIST_MAX),
      suppressed: (spec.suppressed ?? []).slice(0, LIST_MAX),
      openedAt: ts,
      updatedAt: ts,
      timeline: [{ ts, what: what.slice(0, 2000), ...(ref ? { ref } : {}) }],
    };
    this.open.set(inc.id, inc);
    this.index(inc);
    this.touched.set(inc.id, 'opened');
    return inc;
  }

  note(inc: Incident, now: number, what: string, ref?: string): void {
    const ts = new Date(now).toISOString();
    inc.updatedAt = ts;
    inc.timeline.push({ ts, what: what.slice(0, 2000), ...(ref ? { ref: ref.slice(0, 200) } : {}) });
    // keep the opening entry (it names the trigger) and the most recent ones
    if (inc.timeline.length > TIMELINE_MAX) inc.timeline.splice(1, inc.timeline.length - TIMELINE_MAX);
    if (!this.touched.has(inc.id)) this.touched.set(inc.id, 'updated');
  }

  addSymptom(inc: Incident, ref: GuestRef, reason: string, now: number): void {
    const cur = inc.symptoms.find((s) => s.vmid === ref.vmid);
    if (cur) cur.reason = reason;
    else if (inc.symptoms.length < LIST_MAX) inc.symptoms.push({ ...ref, reason });
    this.symptomOf.set(ref.vmid, inc.id);
    this.note(inc, now, `symptom ${ref.name ?? ref.vmid} (${ref.vmid}): ${reason}`, `vmid:${ref.vmid}`);
  }

  setSymptomReason(inc: Incident, vmid: number, reason: string, now: number): void {
    const cur = inc.symptoms.find((s) => s.vmid === vmid);
    if (!cur || cur.reason === reason) return;
    cur.reason = reason;
    this.note(inc, now, `symptom ${cur.name ?? vmid} (${vmid}): ${reason}`, `vmid:${vmid}`);
  }

  /** No longer a symptom (recovered, or failing on its own now): off the list, into the timeline.
   *  `symptoms` lists current symptoms only, so nobody mistakes a healed guest for one. */
  dropSymptom(inc: Incident, vmid: number, reason: string, now: number): void {
    if (this.symptomOf.get(vmid) === inc.id) this.symptomOf.delete(vmid);
    const i = inc.symptoms.findIndex((s) => s.vmid === vmid);
    if (i < 0) return;
    const [s] = inc.symptoms.splice(i, 1);
    this.note(inc, now, `symptom ${s.name ?? vmid} (${vmid}): ${reason}`, `vmid:${vmid}`);
  }

  suppress(inc: Incident, refs: GuestRef[]): void {
    const have = new Set(inc.suppressed.map((s) => s.vmid));
    for (const r of refs) if (!have.has(r.vmid) && inc.suppressed.length < LIST_MAX) inc.suppressed.push(r);
  }

  /** A person has it (`homeostat ack`): recorded on the incident, announced as `acknowledged`. */
  acknowledge(inc: Incident, now: number, by: string, note?: string): void {
    inc.acknowledged = { by: by.slice(0, 120), at: new Date(now).toISOString(), ...(note ? { note: note.slice(0, 2000) } : {}) };
    this.note(inc, now, `acknowledged by ${by}${note ? `: ${note}` : ''}`, 'operator:ack');
    if (this.touched.get(inc.id) === 'updated') this.touched.set(inc.id, 'acknowledged');
  }

  resolve(inc: Incident, now: number, what: string, ref?: string): void {
    if (inc.status === 'resolved') return;
    this.note(inc, now, what, ref);
    inc.status = 'resolved';
    inc.resolvedAt = new Date(now).toISOString();
    this.open.delete(inc.id);
    this.unindex(inc);
    this.closed.set(inc.id, inc);
    this.touched.set(inc.id, this.touched.get(inc.id) === 'opened' ? 'opened+resolved' : 'resolved');
  }

  drain(): IncidentOutput[] {
    // most steps (a metric sample, a report that changes nothing) touch no incident
    if (!this.touched.size) return [];
    const out: IncidentOutput[] = [];
    for (const [id, touch] of this.touched) {
      const inc = this.open.get(id) ?? this.closed.get(id);
      if (!inc) continue;
      if (touch === 'opened+resolved') {
        // opened and resolved within one step (e.g. folded at once): announce both
        const { resolvedAt: _r, ...opened } = snapshot(inc);
        void _r;
        out.push({ kind: 'incident', phase: 'opened', incident: { ...opened, status: 'open' } });
        out.push({ kind: 'incident', phase: 'resolved', incident: snapshot(inc) });
      } else {
        out.push({ kind: 'incident', phase: touch, incident: snapshot(inc) });
      }
    }
    this.touched = new Map();
    this.closed.clear();
    return out;
  }

  /** The root cause changes while the incident is open (a crashed guest that boots but stays unhealthy). */
  setRootCause(inc: Incident, rootCause: Incident['rootCause']): void {
    inc.rootCause = rootCause;
    if (inc.status !== 'open') return;
    if (inc.kind === 'guest' && rootCause.reason === 'unhealthy') this.unhealthyRoots.add(inc.id);
    else this.unhealthyRoots.delete(inc.id);
  }

  private index(inc: Incident): void {
    const rc = inc.rootCause;
    if (inc.kind === 'guest' && rc.vmid !== undefined) this.rootOf.set(rc.vmid, inc.id);
    if (inc.kind === 'guest' && rc.reason === 'unhealthy') this.unhealthyRoots.add(inc.id);
    if (inc.kind === 'node' && rc.node) this.byNode.set(rc.node, inc.id);
    const key = IncidentBook.keyOf(inc);
    if (key) this.byKey.set(key, inc.id);
    for (const s of inc.symptoms) this.symptomOf.set(s.vmid, inc.id);
  }

  private unindex(inc: Incident): void {
    const rc = inc.rootCause;
    if (rc.vmid !== undefined && this.rootOf.get(rc.vmid) === inc.id) this.rootOf.delete(rc.vmid);
    this.unhealthyRoots.delete(inc.id);
    for (const s of inc.symptoms) if (this.symptomOf.get(s.vmid) === inc.id) this.symptomOf.delete(s.vmid);
    if (rc.node && this.byNode.get(rc.node) === inc.id) this.byNode.delete(rc.node);
    const key = IncidentBook.keyOf(inc);
    if (key && this.byKey.get(key) === inc.id) this.byKey.delete(key);
  }

  /** Resource/api/external incidents carry their alert fingerprint as the first timeline ref. */
  static keyOf(inc: Incident): string | undefined {
    if (inc.kind !== 'resource' && inc.kind !== 'external' && inc.kind !== 'api' && inc.kind !== 'self') return undefined;
    const ref = inc.timeline[0]?.ref;
    return ref?.startsWith('alert:') ? ref.slice(6) : undefined;
  }
}

/** A deep copy of an incident as it is now (the book goes on changing its own): the schema's
 *  shape copied by hand, several times faster than structuredClone, which was the busiest
 *  analysis function in a 5,000-guest burst (~8 µs an incident). */
export function snapshot(inc: Incident): Incident {
  const out: Incident = {
    ...inc,
    rootCause: { ...inc.rootCause },
    symptoms: inc.symptoms.map((s) => ({ ...s })),
    suppressed: inc.suppressed.map((s) => ({ ...s })),
    timeline: inc.timeline.map((t) => ({ ...t })),
  };
  if (inc.acknowledged) out.acknowledged = { ...inc.acknowledged };
  return out;
}
