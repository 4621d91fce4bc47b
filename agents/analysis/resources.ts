// Resource alerts (DiskFull at once, HighCPU / HighMemory held for pressureHoldMs, CertExpiring)
// and external (Alertmanager) alerts. Each firing alert is one notify-only incident, keyed by the
// alert's fingerprint, resolved with the alert.
import type { Alert, AlertName, Envelope, MetricSample } from '../../bus/mod.ts';
import { AlertBook, RESOURCE_ALERTS, SEVERITY, type AlertInfo, type AlertOutput } from './alerts.ts';
import type { IncidentBook } from './incidents.ts';
import type { FleetView } from './model.ts';
import type { Tuning } from './options.ts';

const PRESSURE: AlertName[] = ['DiskFull', 'HighCPU', 'HighMemory'];

export class ResourceRules {
  private readonly lastSample = new Map<string | number, number>();

  constructor(
    private readonly view: FleetView,
    private readonly alerts: AlertBook,
    private readonly book: IncidentBook,
    private readonly tuning: Tuning,
    private readonly fleetName: string,
  ) {}

  onMetric(s: MetricSample, now: number, out: AlertOutput[]): void {
    const key: string | number = s.vmid ?? s.node;
    if (s.vmid !== undefined ? !this.view.has(s.vmid) : !this.view.nodes.has(s.node)) return;
    this.lastSample.set(key, now);
    const t = this.tuning.alerts;
    const who = () => (s.vmid !== undefined ? `${this.view.guests.get(s.vmid)!.name} (${s.vmid})` : `node ${s.node}`);
    const place = { vmid: s.vmid, node: s.node };
    if (s.maxdisk > 0) {
      const free = 100 * (1 - s.disk / s.maxdisk);
      this.apply('DiskFull', key, this.alerts.set('DiskFull', key, free < t.diskFreePct, () => ({ ...place, summary: `${who()}: ${free.toFixed(1)} % disk free (< ${t.diskFreePct} %)` }), now, out), now);
    }
    const cpu = s.cpu * 100;
    this.apply('HighCPU', key, this.alerts.hold('HighCPU', key, cpu > t.cpuPct, t.pressureHoldMs, () => ({ ...place, summary: `${who()}: CPU ${cpu.toFixed(0)} % (> ${t.cpuPct} % for ${t.pressureHoldMs / 1000} s)` }), now, out), now);
    if (s.maxmem > 0) {
      const mem = (100 * s.mem) / s.maxmem;
      this.apply('HighMemory', key, this.alerts.hold('HighMemory', key, mem > t.memPct, t.pressureHoldMs, () => ({ ...place, summary: `${who()}: memory ${mem.toFixed(0)} % (> ${t.memPct} % for ${t.pressureHoldMs / 1000} s)` }), now, out), now);
    }
  }

  onCert(vmid: number, now: number, out: AlertOutput[]): void {
    const g = this.view.guests.get(vmid);
    if (!g || g.certDaysLeft === undefined) return;
    const days = this.tuning.alerts.certDays;
    const info = { vmid, node: g.node, summary: `${g.name} (${vmid}): certificate expires in ${g.certDaysLeft.toFixed(1)} days (< ${days})` };
    this.apply('CertExpiring', vmid, this.alerts.set('CertExpiring', vmid, g.certDaysLeft < days, info, now, out), now);
  }

  /** Samples stopped (guest stopped, node gone): pressure alerts of that target resolve. */
  tick(now: number, out: AlertOutput[]): void {
    for (const [key, at] of this.lastSample) {
      if (now - at < this.tuning.staleMetricsMs) continue;
      this.lastSample.delete(key);
      for (const name of this.alerts.firingFor(key, PRESSURE)) {
        this.alerts.forget(name, key);
        this.apply(name, key, this.alerts.set(name, key, false, { summary: `no samples for ${Math.round((now - at) / 1000)} s` }, now, out), now);
      }
    }
  }

  /** An external alert from Alertmanager (via sensing): one incident per fingerprint while firing. */
  onExternal(env: Envelope<Alert>, now: number): void {
    const a = env.data;
    const fleetLabel = a.labels.homeostat_fleet;
    if (a.origin !== 'alertmanager' || (fleetLabel !== undefined && fleetLabel !== this.fleetName)) return;
    const key = `ext:${a.fingerprint}`;
    const open = this.book.get(this.book.byKey.get(key));
    if (a.status === 'resolved') {
      if (open) this.book.resolve(open, now, `${a.name} resolved in Alertmanager`, `event:${env.id}`);
      return;
    }
    if (open) return; // Alertmanager repeats firing alerts; nothing new
    const g = a.vmid !== undefined ? this.view.guests.get(a.vmid) : undefined;
    this.book.create({
      kind: 'external',
      severity: a.severity,
      title: `${a.name}: ${a.summary}`,
      rootCause: { vmid: a.vmid, node: a.node, name: g?.name ?? (a.vmid === undefined && a.node === undefined ? this.fleetName : undefined), reason: a.summary, alert: a.name },
    }, now, `external alert ${a.name} firing`, `alert:${key}`);
  }

  private apply(name: AlertName, key: string | number, edge: 'fired' | 'resolved' | undefined, now: number): void {
    if (!edge || !RESOURCE_ALERTS.has(name)) return;
    const fp = AlertBook.fingerprint(name, key);
    const open = this.book.get(this.book.byKey.get(fp));
    if (edge === 'resolved') {
      if (open) this.book.resolve(open, now, `${name} resolved`);
      return;
    }
    if (open) return;
    const vmid = typeof key === 'number' ? key : undefined;
    const g = vmid !== undefined ? this.view.guests.get(vmid) : undefined;
    const info: AlertInfo = { summary: `${name} on ${g ? `${g.name} (${vmid})` : `node ${key}`}` };
    this.book.create({
      kind: 'resource',
      severity: SEVERITY[name] ?? 'warning',
      title: info.summary,
      rootCause: { vmid, node: g?.node ?? (vmid === undefined ? String(key) : undefined), name: g?.name, reason: name === 'CertExpiring' ? 'cert-expiring' : name === 'DiskFull' ? 'disk-full' : name === 'HighCPU' ? 'cpu-pressure' : 'memory-pressure', alert: name },
    }, now, `${name} fired: notify only`, `alert:${fp}`);
  }
}
