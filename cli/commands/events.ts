// `homeostat events`: replay (--since) then follow fleet events; --json gives one envelope per line.
import { HomeostatError } from '../../core/mod.ts';
import { parseSince, subscribeFleetEvents, type FleetEvent } from '../../bus/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { withBus } from '../client.ts';
import { paint, printJson, println, type Color } from '../output.ts';
import { localTime } from '../../core/mod.ts';

const HELP = `Usage: homeostat events [--subject S] [--since T] [--no-follow] [--json] [--nats URL]

Subscribe to fleet events. Persisted subjects (events, alerts, incidents, decisions, actions,
workflows, dead letters) come from the FLEET stream; metrics are live only
(--subject 'fleet.metrics.>').

  --subject S   NATS subject pattern (default fleet.>)
  --since T     replay from a duration ago (30s, 15m, 1h, 2d) or an ISO time, then follow
  --no-follow   stop after the replay
  --json        one envelope per line: {"subject","seq","id","ts","source","type","correlationId","causationId","data"}
Times are local with the zone's offset (--json keeps the ISO UTC ts). While following, a line on
stderr says what is followed and when the connection to NATS drops and comes back. Honours NO_COLOR.`;

const typeColor = (type: string): Color => {
  if (/Failed|Down|Unavailable|Unreachable|Fired|Opened|Denied|DeadLetter|Invalid/.test(type)) return 'red';
  if (/Succeeded|Up$|Available|Resolved|Approved|HEALTHY|DONE/.test(type)) return 'green';
  if (/Requested|Started|Decision|Updated/.test(type)) return 'yellow';
  return 'cyan';
};

export function summarize(ev: FleetEvent): string {
  const d = (ev.env.data ?? {}) as Record<string, unknown>;
  const parts: string[] = [];
  const pick = (k: string) => (d[k] !== undefined && d[k] !== null && typeof d[k] !== 'object' ? `${k}=${String(d[k])}` : undefined);
  for (const k of ['vmid', 'name', 'node', 'state', 'health', 'status', 'verb', 'verdict', 'actionId', 'incidentId', 'id', 'event', 'reason', 'summary', 'title']) {
    const p = pick(k);
    if (p) parts.push(p);
  }
  const target = d.target as { vmid?: number } | undefined;
  if (target?.vmid) parts.push(`target=${target.vmid}`);
  return parts.join(' ').slice(0, 240);
}

export function formatEvent(ev: FleetEvent): string {
  const t = localTime(ev.env.ts).slice(11);
  if (ev.invalid) return `${paint(t, 'gray')} ${paint('INVALID', 'red')} ${ev.subject} ${ev.invalid}`;
  return `${paint(t, 'gray')} ${paint(ev.env.type.padEnd(18), typeColor(ev.env.type))} ${ev.subject.padEnd(38)} ${summarize(ev)}`;
}

export async function eventsMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, { ...COMMON_OPTIONS, subject: { type: 'string' }, since: { type: 'string' }, 'no-follow': { type: 'boolean', default: false } }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const since = values.since === undefined ? undefined : parseSince(values.since);
  if (values.since !== undefined && !since) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--since: expected a duration like 15m or an ISO time, got ${JSON.stringify(values.since)}`);
  const ac = new AbortController();
  const onSignal = () => ac.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await withBus(values, async (bus) => {
    const subject = values.subject ?? 'fleet.>';
    const follow = !values['no-follow'];
    const note = (m: string) => process.stderr.write(`${paint(m, 'gray', Boolean(process.stderr.isTTY))}\n`);
    note(`${follow ? 'following' : 'replaying'} ${subject}${since ? ` since ${localTime(since)}` : ''} on ${bus.nc.getServer()}${follow ? ' … Ctrl-C to stop' : ''}`);
    if (follow) {
      void (async () => {
        for await (const st of bus.nc.status()) {
          if (st.type === 'disconnect') note(paint(`disconnected from NATS (${bus.nc.getServer()}); reconnecting — events meanwhile are replayed when the stream allows`, 'yellow', Boolean(process.stderr.isTTY)));
          else if (st.type === 'reconnect') note(paint(`reconnected to NATS; following ${subject} again`, 'green', Boolean(process.stderr.isTTY)));
        }
      })().catch(() => undefined);
    }
    const stream = subscribeFleetEvents(bus, { subject: values.subject, since, follow: !values['no-follow'], signal: ac.signal });
    for await (const ev of stream) {
      if (values.json) printJson({ subject: ev.subject, seq: ev.seq, ...ev.env, ...(ev.invalid ? { invalid: ev.invalid } : {}) });
      else println(formatEvent(ev));
      if (ac.signal.aborted) break;
    }
  });
  return 0;
}
