// Publishes what the analyzer decided, in the order it decided it: one serial queue for the whole
// agent, so two flows (events, metrics, ticks) never reorder an incident's messages. Within one
// step the messages go out together; only one incident's own messages wait for each other.
import { kvKeys, kvPut, subjects, type Bus, type IncidentPhase, type Logger } from '../../bus/mod.ts';
import type { Output } from './analyzer.ts';

const INCIDENT_TYPE: Record<IncidentPhase, string> = { opened: 'IncidentOpened', updated: 'IncidentUpdated', resolved: 'IncidentResolved' };

export class Outbox {
  private tail: Promise<void> = Promise.resolve();
  sent = 0;

  constructor(private readonly bus: Bus, private readonly log: Logger) {}

  /** Queue one step's messages; resolves when they are stored (rejects if they could not be). */
  send(outputs: Output[]): Promise<void> {
    if (!outputs.length) return Promise.resolve();
    const p = this.tail.then(() => this.write(outputs));
    this.tail = p.catch((e: unknown) => this.log.error({ err: (e as Error).message, messages: outputs.length }, 'could not publish analysis results'));
    return p;
  }

  /** Resolves when everything queued so far was written (or failed). */
  idle(): Promise<void> {
    return this.tail;
  }

  private async write(outputs: Output[]): Promise<void> {
    const chains = new Map<string, Promise<unknown>>();
    const all: Promise<unknown>[] = [];
    for (const o of outputs) {
      if (o.kind === 'alert') {
        all.push(this.bus.publish(subjects.alert(o.alert.name), o.alert.status === 'firing' ? 'AlertFired' : 'AlertResolved', o.alert, {
          causationId: o.causationId,
          correlationId: o.correlationId,
        }));
        continue;
      }
      const inc = o.incident;
      const prev = chains.get(inc.id) ?? Promise.resolve();
      const next = prev.then(() =>
        Promise.all([
          this.bus.publish(subjects.incident(inc.id, o.phase), INCIDENT_TYPE[o.phase], inc, { causationId: o.causationId, correlationId: inc.id }),
          kvPut(this.bus.kv.incidents, kvKeys.incident(inc.id), inc),
        ]),
      );
      chains.set(inc.id, next);
      all.push(next);
    }
    await Promise.all(all);
    this.sent += outputs.length;
  }
}
