// The self-check of the loop itself (`homeostat doctor`, and one line in `status`): read-only, from
// what the agents publish (heartbeats in the agents bucket, sensing's api record, the advisor
// record), the durable consumers' state on the server, and the dead letters of the last hour.
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { AdvisorRecord, ApiRecord, FLEET_STREAM, HeartbeatRecord, IncidentRecord, kvGet, kvKeys, kvList, patterns, type Bus } from '../bus/mod.ts';
import { AGENT_NAMES } from '../agents/mod.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';
export interface Check {
  name: string;
  status: CheckStatus;
  summary: string;
  data?: unknown;
}
export interface SelfCheck {
  ok: boolean;
  at: string;
  checks: Check[];
}

const SKEW_WARN_MS = 2000;
const SKEW_FAIL_MS = 10_000;
const secs = (ms: number) => `${ms < 10_000 ? (ms / 1000).toFixed(1) : Math.round(ms / 1000)} s`;

interface Beat {
  rec: HeartbeatRecord;
  /** When the server stored it (its clock). */
  serverAt: number;
}

async function heartbeats(bus: Bus): Promise<Beat[]> {
  const out: Beat[] = [];
  const keys: string[] = [];
  for await (const k of await bus.kv.agents.keys()) keys.push(k);
  await Promise.all(keys.map(async (k) => {
    const e = await bus.kv.agents.get(k);
    if (!e || e.operation !== 'PUT') return;
    const r = HeartbeatRecord.safeParse(JSON.parse(new TextDecoder().decode(e.value)));
    if (r.success) out.push({ rec: r.data, serverAt: e.created.getTime() });
  }));
  return out;
}

/** Dead letters stored in the last hour, and the server's clock (an ephemeral consumer's creation time). */
async function deadLettersAndServerTime(bus: Bus): Promise<{ count: number; skewMs: number; uncertaintyMs: number }> {
  const t0 = Date.now();
  const info = await bus.jsm.consumers.add(FLEET_STREAM, {
    filter_subject: patterns.dlq,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(t0 - 3600_000).toISOString(),
    ack_policy: AckPolicy.None,
    inactive_threshold: 10_000 * 1_000_000,
    mem_storage: true,
  });
  const t1 = Date.now();
  await bus.jsm.consumers.delete(FLEET_STREAM, info.name).catch(() => undefined);
  return { count: info.num_pending, skewMs: Date.parse(info.created) - (t0 + t1) / 2, uncertaintyMs: (t1 - t0) / 2 };
}

function agentCheck(agent: string, beats: Beat[], now: number): Check {
  const mine = beats.filter((b) => b.rec.agent === agent);
  if (!mine.length) return { name: `agent ${agent}`, status: 'fail', summary: `${agent}: never seen (no heartbeat; is it running?)` };
  const alive = mine.filter((b) => b.rec.status === 'running' && now - b.serverAt <= 3 * b.rec.intervalMs + 2000);
  const data = mine.map((b) => ({ instance: b.rec.instance, status: b.rec.status, at: b.rec.at, counters: b.rec.counters, stalled: b.rec.stalled }));
  if (!alive.length) {
    const last = mine.reduce((a, b) => (b.serverAt > a.serverAt ? b : a));
    const why = last.rec.status === 'stopped' ? `stopped ${secs(now - last.serverAt)} ago` : `no heartbeat for ${secs(now - last.serverAt)}`;
    return { name: `agent ${agent}`, status: 'fail', summary: `${agent}: down (${why})`, data };
  }
  const stalled = alive.find((b) => b.rec.stalled);
  if (stalled) return { name: `agent ${agent}`, status: stalled.rec.stalled!.kind === 'pve' ? 'warn' : 'fail', summary: `${agent}: stalled since ${stalled.rec.stalled!.since}: ${stalled.rec.stalled!.reason}`, data };
  const handled = alive.reduce((n, b) => n + Object.values(b.rec.counters).reduce((x, y) => x + y, 0), 0);
  return { name: `agent ${agent}`, status: 'ok', summary: `${agent}: alive${alive.length > 1 ? ` (${alive.length} instances)` : ''}, last heartbeat ${secs(now - Math.max(...alive.map((b) => b.serverAt)))} ago, ${handled} handled`, data };
}

function sensingPoll(beats: Beat[], now: number): Check {
  const b = beats.filter((x) => x.rec.agent === 'sensing' && x.rec.status === 'running').sort((x, y) => y.serverAt - x.serverAt)[0];
  if (!b) return { name: 'sensing poll', status: 'fail', summary: 'last sensing poll: unknown (sensing not running)' };
  const d = b.rec.detail as { intervalMs?: number; lastRoundAt?: string };
  if (d.intervalMs === undefined) return { name: 'sensing poll', status: 'warn', summary: 'sensing polls nothing: no PVE API configured' };
  if (!d.lastRoundAt) return { name: 'sensing poll', status: now - Date.parse(b.rec.startedAt) > 3 * d.intervalMs + 5000 ? 'fail' : 'warn', summary: 'last sensing poll: none completed yet' };
  // the agent's clock, corrected by its skew against the server
  const age = now - (Date.parse(d.lastRoundAt) - (Date.parse(b.rec.at) - b.serverAt));
  // what the heartbeat says is up to one heartbeat old
  const ok = age <= 3 * d.intervalMs + b.rec.intervalMs + 2000;
  return { name: 'sensing poll', status: ok ? 'ok' : 'fail', summary: `last sensing poll ${secs(Math.max(0, age))} ago (every ${secs(d.intervalMs)})`, data: { ageMs: Math.max(0, Math.round(age)), intervalMs: d.intervalMs } };
}

async function consumerLag(bus: Bus, beats: Beat[]): Promise<Check> {
  const seen = new Map<string, { stream: string; durable: string }>();
  for (const b of beats) if (b.rec.status === 'running') for (const c of b.rec.consumers) seen.set(`${c.stream}/${c.durable}`, c);
  const rows = (await Promise.all([...seen.values()].map(async (c) => {
    const i = await bus.jsm.consumers.info(c.stream, c.durable).catch(() => undefined);
    return i ? { stream: c.stream, durable: c.durable, pending: i.num_pending, ackPending: i.num_ack_pending, redelivered: i.num_redelivered } : undefined;
  }))).filter((r) => r !== undefined);
  if (!rows.length) return { name: 'consumer lag', status: 'warn', summary: 'consumer lag: no durable consumer reported by a running agent' };
  const worst = rows.reduce((a, b) => (b.pending + b.ackPending > a.pending + a.ackPending ? b : a));
  const lagging = rows.filter((r) => r.pending > 100);
  return {
    name: 'consumer lag',
    status: lagging.length ? 'warn' : 'ok',
    summary: `consumer lag: ${rows.length} durable(s), most behind ${worst.durable} (${worst.pending} pending, ${worst.ackPending} in progress)`,
    data: rows,
  };
}

/** Everything `homeostat doctor` checks. `ok` is false when any check fails (warnings do not). */
export async function selfCheck(bus: Bus): Promise<SelfCheck> {
  const [beats, dlq, api, advisor, incidents] = await Promise.all([
    heartbeats(bus),
    deadLettersAndServerTime(bus).catch(() => undefined),
    kvGet(bus.kv.fleetState, kvKeys.api(), ApiRecord),
    kvGet(bus.kv.fleetState, kvKeys.advisor(), AdvisorRecord),
    kvList(bus.kv.incidents, '', IncidentRecord),
  ]);
  // judge ages on the server's clock when it is known (this machine's may be off)
  const now = Date.now() + (dlq?.skewMs ?? 0);
  const checks: Check[] = [];
  checks.push({ name: 'nats', status: 'ok', summary: `NATS ${bus.nc.getServer()} (nats-server ${bus.nc.info?.version ?? '?'}), JetStream answers` });
  for (const a of AGENT_NAMES) checks.push(agentCheck(a, beats, now));
  checks.push(sensingPoll(beats, now));
  checks.push(await consumerLag(bus, beats));
  checks.push(dlq === undefined
    ? { name: 'dead letters', status: 'warn', summary: 'dead letters: could not count' }
    : { name: 'dead letters', status: dlq.count ? 'warn' : 'ok', summary: `${dlq.count} dead letter(s) in the last hour${dlq.count ? " (homeostat events --subject 'fleet.dlq.>' --since 1h)" : ''}`, data: { lastHour: dlq.count } });
  checks.push(!api
    ? { name: 'pve api', status: 'warn', summary: 'PVE API: unknown (sensing has not polled it yet)' }
    : api.value.available
      ? { name: 'pve api', status: 'ok', summary: `PVE API reachable (sensing's last poll; since ${api.value.since})` }
      : { name: 'pve api', status: 'fail', summary: `PVE API unreachable since ${api.value.since}${api.value.code ? ` (${api.value.code})` : ''}: ${api.value.reason ?? ''}`, data: api.value });
  const adv = advisor?.value;
  checks.push(!adv
    ? { name: 'advisor', status: 'ok', summary: 'advisor: not checked yet (healing by runbooks meanwhile)' }
    : adv.available
      ? { name: 'advisor', status: 'ok', summary: `advisor (Ollama) reachable, model ${adv.model ?? '?'} (checked ${adv.checkedAt})`, data: adv }
      : /no advisor configured/.test(adv.reason ?? '')
        ? { name: 'advisor', status: 'ok', summary: 'advisor: none configured (healing by runbooks)', data: adv }
        : { name: 'advisor', status: 'warn', summary: `advisor (Ollama) unreachable: ${adv.reason ?? 'unknown'} (checked ${adv.checkedAt}); healing by runbooks`, data: adv });
  checks.push(notifierCheck(beats));
  checks.push(clockCheck(beats, dlq));
  const own = [...incidents.values()].filter((i) => i.status === 'open' && (i.kind === 'self' || i.kind === 'api'));
  checks.push(own.length
    ? { name: 'own incidents', status: 'fail', summary: `open incidents of homeostat itself: ${own.map((i) => `${i.id} ${i.title}`).join('; ')}`, data: own.map((i) => ({ id: i.id, title: i.title })) }
    : { name: 'own incidents', status: 'ok', summary: 'no open incident of homeostat itself' });
  return { ok: checks.every((c) => c.status !== 'fail'), at: new Date().toISOString(), checks };
}

/** The notifiers' health, as the notify agent's heartbeat reports it (names only, never URLs). */
function notifierCheck(beats: Beat[]): Check {
  const b = beats.filter((x) => x.rec.agent === 'notify' && x.rec.status === 'running').sort((x, y) => y.serverAt - x.serverAt)[0];
  const list = (b?.rec.detail as { notifiers?: { name: string; ok: boolean | null; lastError?: string; lastErrorAt?: string; lastOkAt?: string }[] } | undefined)?.notifiers;
  if (!b || !list) return { name: 'notifiers', status: 'warn', summary: 'notifiers: unknown (the notify agent is not running)' };
  if (!list.length) return { name: 'notifiers', status: 'ok', summary: 'notifiers: none configured (HOMEOSTAT_NOTIFY or the manifest\'s notify.urls): nobody is told of incidents that need a human', data: list };
  const failing = list.filter((n) => n.ok === false);
  if (failing.length) {
    return { name: 'notifiers', status: 'warn', summary: `notifiers: ${failing.map((n) => `${n.name} failing (${n.lastError ?? '?'}, at ${n.lastErrorAt ?? '?'})`).join('; ')}`, data: list };
  }
  const used = list.filter((n) => n.ok === true).length;
  return { name: 'notifiers', status: 'ok', summary: `notifiers: ${list.map((n) => n.name).join(', ')} — ${used ? `${used} delivered their last notification` : 'none used yet'}`, data: list };
}

function clockCheck(beats: Beat[], server?: { skewMs: number; uncertaintyMs: number }): Check {
  const skews = beats.filter((b) => b.rec.status === 'running').map((b) => ({ who: `${b.rec.agent}@${b.rec.host}`, ms: Date.parse(b.rec.at) - b.serverAt }));
  if (server) skews.push({ who: 'this machine', ms: server.skewMs });
  if (!skews.length) return { name: 'clock skew', status: 'warn', summary: 'clock skew: nothing to compare' };
  const worst = skews.reduce((a, b) => (Math.abs(b.ms) > Math.abs(a.ms) ? b : a));
  const abs = Math.abs(worst.ms);
  return {
    name: 'clock skew',
    status: abs >= SKEW_FAIL_MS ? 'fail' : abs >= SKEW_WARN_MS ? 'warn' : 'ok',
    summary: `clock skew against the NATS server: at most ${secs(abs)} (${worst.who})`,
    data: skews.map((s) => ({ ...s, ms: Math.round(s.ms) })),
  };
}

/** One line for `homeostat status`. */
export function selfCheckLine(s: SelfCheck): string {
  const bad = s.checks.filter((c) => c.status === 'fail');
  if (!bad.length) {
    const warn = s.checks.filter((c) => c.status === 'warn').length;
    const alive = s.checks.filter((c) => c.name.startsWith('agent ') && c.status === 'ok').length;
    const poll = s.checks.find((c) => c.name === 'sensing poll')?.summary ?? '';
    return `self-check: ok — ${alive}/${AGENT_NAMES.length} agents alive, ${poll}${warn ? `, ${warn} warning(s)` : ''} (homeostat doctor)`;
  }
  return `self-check: ${bad.length} problem(s): ${bad.map((c) => c.summary).join('; ')} (homeostat doctor)`;
}
