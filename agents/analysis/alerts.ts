// Alerts are facts with a start and an end: `set(name, key, on)` fires on the rising edge and
// resolves on the falling one, and says which happened. Pressure alerts (cpu/mem) must hold for a
// while before they fire.
import type { Alert, AlertName } from '../../bus/mod.ts';

export interface AlertInfo {
  summary: string;
  vmid?: number;
  node?: string;
}

export interface AlertOutput {
  kind: 'alert';
  alert: Alert;
}

export const SEVERITY: Record<string, Alert['severity']> = {
  GuestDown: 'critical',
  HealthCheckFailed: 'warning',
  NodeDown: 'critical',
  DiskFull: 'critical',
  HighCPU: 'warning',
  HighMemory: 'warning',
  CertExpiring: 'warning',
  PveUnavailable: 'critical',
};

export const RESOURCE_ALERTS = new Set<string>(['DiskFull', 'HighCPU', 'HighMemory', 'CertExpiring']);

export class AlertBook {
  private readonly firing = new Map<string, Alert>();
  private readonly overSince = new Map<string, number>();

  constructor(private readonly fleetName: string) {}

  static fingerprint(name: string, key: string | number): string {
    return `${name}:${key}`;
  }

  isFiring(name: AlertName, key: string | number): boolean {
    return this.firing.has(AlertBook.fingerprint(name, key));
  }

  /** Mark as firing without announcing it (rebuilding memory after a restart). */
  remember(name: AlertName, key: string | number, info: AlertInfo, startsAt: string): void {
    this.firing.set(AlertBook.fingerprint(name, key), this.make(name, key, info, startsAt));
  }

  /** `info` may be a function: it is only built when the alert changes (hot path: every sample). */
  set(name: AlertName, key: string | number, on: boolean, info: AlertInfo | (() => AlertInfo), now: number, out: AlertOutput[]): 'fired' | 'resolved' | undefined {
    const fp = AlertBook.fingerprint(name, key);
    const cur = this.firing.get(fp);
    if (on === !!cur) return undefined;
    if (typeof info === 'function') info = info();
    if (on && !cur) {
      const alert = this.make(name, key, info, new Date(now).toISOString());
      this.firing.set(fp, alert);
      out.push({ kind: 'alert', alert });
      return 'fired';
    }
    if (!on && cur) {
      this.firing.delete(fp);
      out.push({ kind: 'alert', alert: { ...cur, status: 'resolved', endsAt: new Date(now).toISOString(), summary: info.summary.slice(0, 2000) } });
      return 'resolved';
    }
    return undefined;
  }

  /** Like `set`, but `on` must have held for `holdMs` before the alert fires. */
  hold(name: AlertName, key: string | number, over: boolean, holdMs: number, info: AlertInfo | (() => AlertInfo), now: number, out: AlertOutput[]): 'fired' | 'resolved' | undefined {
    const fp = AlertBook.fingerprint(name, key);
    if (!over) {
      this.overSince.delete(fp);
      return this.set(name, key, false, info, now, out);
    }
    const since = this.overSince.get(fp) ?? now;
    this.overSince.set(fp, since);
    return now - since >= holdMs ? this.set(name, key, true, info, now, out) : undefined;
  }

  /** Firing alerts whose fingerprint starts with one of the names, for a key (stale metrics). */
  firingFor(key: string | number, names: Iterable<string>): AlertName[] {
    const out: AlertName[] = [];
    for (const n of names) if (this.firing.has(AlertBook.fingerprint(n, key))) out.push(n as AlertName);
    return out;
  }

  forget(name: string, key: string | number): void {
    this.overSince.delete(AlertBook.fingerprint(name, key));
  }

  private make(name: AlertName, key: string | number, info: AlertInfo, startsAt: string): Alert {
    const a: Alert = {
      name,
      status: 'firing',
      severity: SEVERITY[name] ?? 'warning',
      fingerprint: AlertBook.fingerprint(name, key).slice(0, 200),
      summary: info.summary.slice(0, 2000),
      startsAt,
      origin: 'analysis',
      labels: { fleet: this.fleetName.slice(0, 1000) },
    };
    if (info.vmid !== undefined) a.vmid = info.vmid;
    if (info.node !== undefined) a.node = info.node;
    return a;
  }
}
