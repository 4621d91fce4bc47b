// The two shapes Alertmanager speaks, validated with zod, and their mapping to our Alert schema:
// the `POST /api/v2/alerts` array (what Prometheus sends to Alertmanager) and the webhook_config
// notification (version "4"). Label and annotation text is data, never instructions: it is
// truncated and passed on as-is.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { Alert } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';

const MAX_ALERTS = 1000;
const Labels = z.record(z.string().min(1).max(200), z.string().max(10_000)).refine((l) => Object.keys(l).length <= 100, 'at most 100 labels');

const PostableAlert = z.object({
  labels: Labels,
  annotations: Labels.optional(),
  startsAt: z.string().max(64).optional(),
  endsAt: z.string().max(64).optional(),
  generatorURL: z.string().max(2000).optional(),
});

export const PostableAlerts = z.array(PostableAlert).min(1).max(MAX_ALERTS);

export const WebhookPayload = z.object({
  version: z.literal('4'),
  receiver: z.string().max(500).optional(),
  status: z.enum(['firing', 'resolved']),
  alerts: z.array(PostableAlert.extend({ status: z.enum(['firing', 'resolved']), fingerprint: z.string().max(200).optional() })).max(MAX_ALERTS),
  groupLabels: Labels.optional(),
  commonLabels: Labels.optional(),
  commonAnnotations: Labels.optional(),
  externalURL: z.string().max(2000).optional(),
  groupKey: z.string().max(5000).optional(),
  truncatedAlerts: z.number().int().min(0).optional(),
});

export type ParsedPayload = { ok: true; alerts: Alert[]; shape: 'v2' | 'webhook' } | { ok: false; error: string };

function iso(v: string | undefined): string | undefined {
  if (!v || v.startsWith('0001-')) return undefined; // Go's zero time: "not set"
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

function fingerprintOf(labels: Record<string, string>): string {
  const canon = Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join('\u0000');
  return createHash('sha256').update(canon).digest('hex').slice(0, 16);
}

function severityOf(s: string | undefined): Alert['severity'] {
  const v = (s ?? '').toLowerCase();
  if (['critical', 'error', 'page', 'high'].includes(v)) return 'critical';
  if (['info', 'none', 'low'].includes(v)) return 'info';
  return 'warning';
}

function clip(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) out[k.slice(0, 200)] = v.slice(0, 1000);
  return out;
}

/** Where an alert points in our fleet: labels vmid / node / instance (host part) / guest name. */
function placeOf(labels: Record<string, string>, fleet: Fleet): { vmid?: number; node?: string } {
  const out: { vmid?: number; node?: string } = {};
  const host = labels.instance?.replace(/^\[?([^\]]*?)\]?(:\d+)?$/, '$1');
  const vmid = Number(labels.vmid);
  if (Number.isInteger(vmid) && vmid >= 100 && vmid <= 999_999_999) out.vmid = vmid;
  else {
    const byName = fleet.guests.find((g) => g.name === labels.guest || g.name === labels.name || (host && g.name === host));
    if (byName) out.vmid = byName.vmid;
  }
  if (labels.node && labels.node.length <= 64) out.node = labels.node;
  else if (host && fleet.nodes.some((n) => n.name === host)) out.node = host;
  else if (out.vmid !== undefined && fleet.byVmid.has(out.vmid)) out.node = fleet.byVmid.get(out.vmid)!.node;
  return out;
}

function toAlert(
  a: z.infer<typeof PostableAlert> & { status?: 'firing' | 'resolved'; fingerprint?: string },
  fleet: Fleet,
  now: number,
): Alert {
  const labels = clip(a.labels);
  const annotations = a.annotations ?? {};
  const endsAt = iso(a.endsAt);
  const status = a.status ?? (endsAt && Date.parse(endsAt) <= now ? 'resolved' : 'firing');
  const name = (labels.alertname || 'External').slice(0, 120);
  const summary = (annotations.summary ?? annotations.description ?? annotations.message ?? name).slice(0, 2000);
  const alert: Alert = {
    name,
    status,
    severity: severityOf(labels.severity),
    fingerprint: (a.fingerprint || fingerprintOf(a.labels)).slice(0, 200),
    summary,
    startsAt: iso(a.startsAt) ?? new Date(now).toISOString(),
    origin: 'alertmanager',
    labels: { ...labels, homeostat_fleet: fleet.name.slice(0, 1000) },
    ...placeOf(labels, fleet),
  };
  if (endsAt && status === 'resolved') alert.endsAt = endsAt;
  return alert;
}

/** Validate either shape; every alert must also pass our own Alert schema or the whole request is refused. */
export function parseAlertPayload(body: unknown, fleet: Fleet, now = Date.now()): ParsedPayload {
  let alerts: Alert[];
  let shape: 'v2' | 'webhook';
  if (Array.isArray(body)) {
    const r = PostableAlerts.safeParse(body);
    if (!r.success) return { ok: false, error: issue(r.error) };
    alerts = r.data.map((a) => toAlert(a, fleet, now));
    shape = 'v2';
  } else {
    const r = WebhookPayload.safeParse(body);
    if (!r.success) return { ok: false, error: issue(r.error) };
    alerts = r.data.alerts.map((a) => toAlert(a, fleet, now));
    shape = 'webhook';
  }
  for (const [i, a] of alerts.entries()) {
    const v = Alert.safeParse(a);
    if (!v.success) return { ok: false, error: `alerts[${i}]: ${issue(v.error)}` };
  }
  return { ok: true, alerts, shape };
}

function issue(e: z.ZodError): string {
  const i = e.issues[0];
  return `${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`.slice(0, 500);
}
