// Helpers for tests on the real nats-server of the run.
import { inject } from 'vitest';
import { Bus, type Envelope } from '../../bus/mod.ts';

export async function testBus(source = 'test'): Promise<Bus> {
  return Bus.connect({ servers: inject('natsUrl'), source });
}

/** Collect envelopes on a core subscription until `count` arrived or `timeoutMs` passed. */
export async function collect<T = unknown>(bus: Bus, pattern: string, count: number, timeoutMs = 5000): Promise<{ subject: string; env: Envelope<T> }[]> {
  const out: { subject: string; env: Envelope<T> }[] = [];
  const sub = bus.nc.subscribe(pattern);
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  for await (const m of sub) {
    out.push({ subject: m.subject, env: JSON.parse(new TextDecoder().decode(m.data)) as Envelope<T> });
    if (out.length >= count) break;
  }
  clearTimeout(timer);
  sub.unsubscribe();
  return out;
}

export { until } from '../../testkit/mod.ts';
