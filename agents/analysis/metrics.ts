// What analysis tells Prometheus: incidents opened and open now, how long from the fault seen by
// sensing to the incident (detection) and to its resolution (remediation: the root cause verified
// healthy again). "Seen" is the triggering event's timestamp; an incident opened by a timer (a
// grace period ending) counts from the moment it opened.
import type { Incident } from '../../bus/mod.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Output } from './analyzer.ts';

export class IncidentMetrics {
  private readonly seenAt = new Map<string, number>();
  private dirty = false;

  constructor(private readonly m: Metrics | undefined, private readonly open: () => Iterable<Incident>) {
    // prom-client calls a gauge's `collect` before every read (scrape)
    if (m) Object.assign(m.incidentsOpen, { collect: () => void (this.dirty && this.gauge()) });
  }

  record(outputs: readonly Output[], seenAt?: number): void {
    const m = this.m;
    if (!m) return;
    const now = Date.now();
    let touched = false;
    for (const o of outputs) {
      if (o.kind !== 'incident') continue;
      touched = true;
      const { id, kind, severity } = o.incident;
      if (o.phase === 'opened') {
        const seen = Math.min(seenAt ?? now, now);
        this.seenAt.set(id, seen);
        m.incidents.inc({ kind, severity });
        m.detection.observe({ kind }, (now - seen) / 1000);
      } else if (o.phase === 'resolved') {
        const seen = this.seenAt.get(id) ?? Date.parse(o.incident.openedAt);
        this.seenAt.delete(id);
        m.remediation.observe({ kind }, Math.max(0, now - seen) / 1000);
      }
    }
    // recounting the open incidents on every change made a burst of n incidents cost n² gauge
    // updates (the 5,000-guest burst spent seconds there): recount when the gauge is read
    if (touched) this.dirty = true;
  }

  /** Recount the open incidents (also after a rebuild from KV). */
  gauge(): void {
    this.dirty = false;
    if (!this.m) return;
    this.m.incidentsOpen.reset();
    for (const i of this.open()) this.m.incidentsOpen.inc({ kind: i.kind, severity: i.severity });
  }
}
