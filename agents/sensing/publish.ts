// Writes one round's emissions: the API event first, then node events (a node going unreachable
// must be known before its guests turn "unknown"), then guest events in parallel (each guest has
// at most one per round, so order across guests does not matter), then KV, then metrics.
import { ApiRecord, encodeOwn, GuestRecord, kvGet, kvKeys, kvList, NodeRecord, subjects, type Bus, type MetricSample } from '../../bus/mod.ts';
import { mapLimit } from './probe.ts';
import type { Emission, Emissions, MetricSource } from './tracker.ts';

/** Publishes in flight at once, each awaited for its ack (nothing counts as published before it):
 *  a 5,000-guest burst then costs round trips / 256, not one round trip per event. */
const PARALLEL = 256;

export async function publishEmissions(bus: Bus, em: Emissions): Promise<void> {
  const event = async (e: Emission): Promise<void> => {
    if (e.kind === 'event') await bus.publish(e.subject, e.type, e.data, { ts: em.ts });
  };
  for (const e of em.api) await event(e);
  for (const e of em.nodes) await event(e);
  await mapLimit(em.guests, PARALLEL, event);
  await mapLimit(em.kv, PARALLEL, (e) => (e.kind === 'kv' ? writeRecord(bus, e.key, e.value) : Promise.resolve()));
  // Thousands of samples: give the event loop back now and then, so other work (probes, and
  // analysis when it shares the process) is not held up behind one round's samples. A chunk is
  // published without a wait in between, so it leaves in one socket write (nats.js writes what
  // was published when the microtask queue runs: awaited one by one, each sample was a write of
  // its own, ~5,000 writes a second at 5,000 guests, writeBuffer 14 % of sensing's CPU).
  for (let i = 0; i < em.metrics.length; i += METRICS_CHUNK) {
    const end = Math.min(i + METRICS_CHUNK, em.metrics.length);
    for (let j = i; j < end; j++) publishSample(bus, em.metrics[j], em.ts);
    // paced: a round's samples (one per running guest) spread over ~50 pauses instead of
    // landing on analysis (and the nats-server) at once, right behind the round's events
    await new Promise<void>((r) => setTimeout(r, METRICS_PAUSE_MS));
  }
}

/** One sample, encoded straight from the record it is read from: no sample object, envelope
 *  copy or zod pass per guest per round (5,000 a second at 5,000 guests). What the schema asks
 *  holds by construction (resources are finite and >= 0, observe.ts; vmids are the manifest's);
 *  a node name the schema would refuse takes the validating path, which refuses it as before. */
function publishSample(bus: Bus, m: MetricSource, ts: string): void {
  const subject = subjects.metrics(m.node, m.vmid ?? 'node');
  if (!m.node || m.node.length > 64) {
    void bus.publishCore(subject, 'MetricSample', metricSample(m), { ts });
    return;
  }
  bus.nc.publish(subject, metricSampleBytes(bus, subject, m, ts));
}

/** The sample's data (the validating path, and tests). */
export function metricSample(m: MetricSource): MetricSample {
  const r = m.resources ?? {};
  const usage = { cpu: r.cpu ?? 0, mem: r.mem ?? 0, maxmem: r.maxmem ?? 0, disk: r.disk ?? 0, maxdisk: r.maxdisk ?? 0 };
  return m.vmid === undefined ? { node: m.node, ...usage } : { node: m.node, vmid: m.vmid, ...usage };
}

/** The sample as the bus would encode it (same envelope, same data). */
export function metricSampleBytes(bus: Pick<Bus, 'envelope'>, subject: string, m: MetricSource, ts: string): Uint8Array {
  const r = m.resources ?? {};
  const vmid = m.vmid === undefined ? '' : `"vmid":${m.vmid},`;
  const data = `{"node":${JSON.stringify(m.node)},${vmid}"cpu":${r.cpu ?? 0},"mem":${r.mem ?? 0},"maxmem":${r.maxmem ?? 0},"disk":${r.disk ?? 0},"maxdisk":${r.maxdisk ?? 0}}`;
  return encodeOwn(subject, bus.envelope('MetricSample', undefined, { ts }), data);
}

/** Pause between two chunks of samples: 5,000 samples go out over ~250 ms. */
const METRICS_PAUSE_MS = 5;

/** Metric samples published back to back before the event loop gets a turn. */
const METRICS_CHUNK = 100;

async function writeRecord(bus: Bus, key: string, value: GuestRecord | NodeRecord | ApiRecord): Promise<void> {
  const kv = bus.kv.fleetState;
  if (key.startsWith('node.')) {
    // `fenced` belongs to the failover workflow: keep what it wrote.
    const cur = await kvGet(kv, key, NodeRecord);
    if (cur) (value as NodeRecord).fenced = cur.value.fenced;
  }
  await bus.kvPut(kv, key, value);
}

/** What KV held before this process started. */
export async function loadRecords(bus: Bus): Promise<{ guests: GuestRecord[]; nodes: NodeRecord[]; api?: ApiRecord }> {
  const kv = bus.kv.fleetState;
  const [guests, nodes, api] = await Promise.all([kvList(kv, 'guest.', GuestRecord), kvList(kv, 'node.', NodeRecord), kvGet(kv, kvKeys.api(), ApiRecord)]);
  return { guests: [...guests.values()], nodes: [...nodes.values()], api: api?.value };
}
