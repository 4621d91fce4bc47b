// PVE's answers for the read endpoints, built from the model. Field names and types follow the
// schema's `returns`; booleans are 0/1 like PVE's Perl encoder writes them.
import { createHash } from 'node:crypto';
import { GiB, MiB, type SimGuest, type SimModel, type SimNode } from './model.ts';
import { STORAGES, guestMac, storageUsage } from './views-infra.ts';

export const PVE_VERSION = { version: '9.0.11', release: '9.0', repoid: '3bf5476b8a4699e2' };
const KERNEL = { sysname: 'Linux', release: '6.14.11-4-pve', version: '#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4 (2025-10-10T08:04Z)', machine: 'x86_64' };
const b = (v: boolean) => (v ? 1 : 0);

export function haState(g: SimGuest): Record<string, unknown> {
  if (!g.ha) return { managed: 0 };
  return { managed: 1, state: g.ha.state, ...(g.ha.group ? { group: g.ha.group } : {}) };
}

/** Fields shared by /nodes/{node}/lxc|qemu items and status/current. */
export function guestStatus(m: SimModel, g: SimGuest, now = Date.now()): Record<string, unknown> {
  const u = m.usage(g);
  const running = m.pveStatus(g) === 'running';
  const out: Record<string, unknown> = {
    vmid: g.vmid,
    name: g.config.hostname,
    status: m.pveStatus(g),
    cpu: Math.round(u.cpu * 1e4) / 1e4,
    cpus: g.config.cores,
    mem: u.mem,
    maxmem: g.config.memory * MiB,
    maxdisk: g.maxdisk,
    netin: running ? g.netin : 0,
    netout: running ? g.netout : 0,
    diskread: running ? g.diskread : 0,
    diskwrite: running ? g.diskwrite : 0,
    uptime: m.uptimeSec(g, now),
    template: 0,
  };
  if (g.type === 'lxc') {
    out.disk = running ? u.disk : 0;
    out.maxswap = g.config.swap * MiB;
    out.type = 'lxc';
  } else {
    out.qmpstatus = m.pveStatus(g);
    if (running) {
      out.pid = 10_000 + (g.vmid % 50_000);
      out['running-machine'] = 'pc-i440fx-10.0+pve1';
      out['running-qemu'] = '10.0.2';
    }
    out.serial = 0;
  }
  if (running) {
    const p = g.faults.cpuSpike > 0 ? 40 : Math.round(g.cpu * 20 * 100) / 100;
    out.pressurecpusome = p;
    out.pressureiosome = 0.01;
    out.pressureiofull = 0;
    out.pressurememorysome = g.faults.memSpike > 0 ? 12.5 : 0;
    out.pressurememoryfull = g.faults.memSpike > 0 ? 6.2 : 0;
  }
  if (g.lock) out.lock = g.lock;
  if (g.config.tags) out.tags = g.config.tags;
  return out;
}

export function nodeListItem(m: SimModel, n: SimNode, now = Date.now()): Record<string, unknown> {
  const base = { node: n.name, status: m.online(n) ? 'online' : 'offline', id: `node/${n.name}`, type: 'node', level: '' };
  if (!m.online(n)) return base;
  return {
    ...base,
    cpu: Math.round(n.cpu * 1e4) / 1e4, maxcpu: n.spec.cpus, mem: n.mem, maxmem: Math.round(n.spec.memGiB * GiB),
    disk: 12 * GiB, maxdisk: 100 * GiB, uptime: Math.floor((now - n.bootedAt) / 1000),
    ssl_fingerprint: m.fingerprint ?? fakeFingerprint(n.name),
  };
}

function fakeFingerprint(seed: string): string {
  return createHash('sha256').update(seed).digest('hex').toUpperCase().match(/../g)!.join(':');
}

export function nodeStatus(m: SimModel, n: SimNode, now = Date.now()): Record<string, unknown> {
  const total = Math.round(n.spec.memGiB * GiB);
  const load = (n.cpu * n.spec.cpus).toFixed(2);
  return {
    uptime: Math.floor((now - n.bootedAt) / 1000),
    cpu: Math.round(n.cpu * 1e4) / 1e4,
    wait: 0.0012,
    idle: 0,
    loadavg: [load, load, load],
    cpuinfo: { cpus: n.spec.cpus, cores: Math.max(1, n.spec.cpus / 2), sockets: 1, model: 'AMD EPYC 7302P 16-Core Processor', mhz: '3000.000', hvm: '1', user_hz: 100, flags: 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov' },
    'boot-info': { mode: 'efi', secureboot: 0 },
    'current-kernel': KERNEL,
    kversion: `${KERNEL.sysname} ${KERNEL.release} ${KERNEL.version}`,
    pveversion: `pve-manager/${PVE_VERSION.version}/${PVE_VERSION.repoid}`,
    memory: { total, used: n.mem, free: total - n.mem, available: total - n.mem },
    swap: { total: 8 * GiB, used: 0, free: 8 * GiB },
    ksm: { shared: 0 },
    rootfs: { total: 100 * GiB, used: 12 * GiB, free: 88 * GiB, avail: 83 * GiB },
  };
}

export function clusterStatus(m: SimModel): Record<string, unknown>[] {
  const local = m.localNode();
  const out: Record<string, unknown>[] = [{ type: 'cluster', id: 'cluster', name: m.clusterName, nodes: m.nodes.size, quorate: b(m.quorate()), version: m.nodes.size + 2 }];
  for (const n of m.nodes.values()) {
    out.push({ type: 'node', id: `node/${n.name}`, name: n.name, nodeid: n.nodeid, ip: n.ip, online: b(m.online(n)), local: b(n === local), level: '' });
  }
  return out;
}

// Hot path (sensing polls it for the whole fleet): one flat literal per guest, no spreads.
export function guestResource(m: SimModel, g: SimGuest, nodeUp: boolean, now: number): Record<string, unknown> {
  let r: Record<string, unknown>;
  if (!nodeUp) {
    r = { id: `${g.type}/${g.vmid}`, type: g.type, vmid: g.vmid, node: g.node, name: g.config.hostname, status: 'unknown', template: 0 };
  } else {
    const u = m.usage(g);
    const running = m.pveStatus(g) === 'running';
    r = {
      id: `${g.type}/${g.vmid}`, type: g.type, vmid: g.vmid, node: g.node, name: g.config.hostname, status: running ? 'running' : 'stopped', template: 0,
      cpu: Math.round(u.cpu * 1e4) / 1e4, maxcpu: g.config.cores, mem: u.mem, maxmem: g.config.memory * MiB,
      disk: running || g.type === 'qemu' ? (g.type === 'lxc' ? u.disk : 0) : 0, maxdisk: g.maxdisk,
      netin: running ? g.netin : 0, netout: running ? g.netout : 0, diskread: running ? g.diskread : 0, diskwrite: running ? g.diskwrite : 0,
      uptime: m.uptimeSec(g, now),
    };
    if (g.lock) r.lock = g.lock;
  }
  if (g.ha) r.hastate = g.ha.state;
  if (g.config.tags) r.tags = g.config.tags;
  return r;
}

export function clusterResources(m: SimModel, type?: string): Record<string, unknown>[] {
  const now = Date.now();
  const out: Record<string, unknown>[] = [];
  for (const n of m.nodes.values()) {
    const up = m.online(n);
    if (!type || type === 'vm') for (const g of n.guests) out.push(guestResource(m, g, up, now));
    if (!type || type === 'node') {
      const item = nodeListItem(m, n, now);
      delete item.ssl_fingerprint;
      out.push({ ...item, 'cgroup-mode': 2 });
    }
    if (!type || type === 'storage') {
      const status = up ? 'available' : 'unknown';
      for (const s of STORAGES) {
        const u = storageUsage(m, n, s);
        out.push({ id: `storage/${n.name}/${s.storage}`, type: 'storage', storage: s.storage, node: n.name, status, plugintype: s.type, content: s.content, shared: 0, disk: u.used, maxdisk: u.total });
      }
    }
    if (!type || type === 'sdn') out.push({ id: `sdn/${n.name}/localnetwork`, type: 'sdn', sdn: 'localnetwork', node: n.name, status: up ? 'ok' : 'unknown' });
  }
  return out;
}

export function configDigest(g: SimGuest): string {
  return createHash('sha1').update(JSON.stringify(g.config)).digest('hex');
}

export function lxcConfig(g: SimGuest, snapName?: string): Record<string, unknown> {
  const snap = snapName ? g.snapshots.find((s) => s.name === snapName) : undefined;
  const c = snap ? snap.config : g.config;
  const out: Record<string, unknown> = {
    arch: 'amd64', ostype: 'debian', hostname: c.hostname, memory: c.memory, swap: c.swap, cores: c.cores, unprivileged: 1,
    features: 'nesting=1', onboot: b(c.onboot),
    rootfs: `local-lvm:vm-${g.vmid}-disk-0,size=${Math.round(g.maxdisk / GiB)}G`,
    net0: `name=eth0,bridge=vmbr0,hwaddr=${guestMac(g)},ip=dhcp,type=veth`,
    digest: configDigest(g),
  };
  if (c.description) out.description = c.description;
  if (c.tags) out.tags = c.tags;
  if (c.hookscript) out.hookscript = c.hookscript;
  if (snap) {
    out.snaptime = snap.snaptime;
    if (snap.parent) out.parent = snap.parent;
  } else {
    if (g.lock) out.lock = g.lock;
    if (g.parentSnap) out.parent = g.parentSnap;
  }
  return out;
}

/** A VM's configuration as `qm config` shows it (the twin has no qemu config endpoint; `pending` uses it). */
export function qemuConfig(g: SimGuest): Record<string, unknown> {
  const c = g.config;
  const out: Record<string, unknown> = {
    name: c.hostname, memory: c.memory, cores: c.cores, sockets: 1, ostype: 'l26', cpu: 'x86-64-v2-AES', scsihw: 'virtio-scsi-single',
    boot: 'order=scsi0;net0', agent: '1', onboot: b(c.onboot), smbios1: `uuid=${createHash('md5').update(String(g.vmid)).digest('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')}`,
    scsi0: `local-lvm:vm-${g.vmid}-disk-0,iothread=1,size=${Math.round(g.maxdisk / GiB)}G`,
    net0: `virtio=${guestMac(g)},bridge=vmbr0`, digest: configDigest(g),
  };
  if (c.description) out.description = c.description;
  if (c.tags) out.tags = c.tags;
  if (c.hookscript) out.hookscript = c.hookscript;
  return out;
}

export function snapshotList(m: SimModel, g: SimGuest): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = g.snapshots.map((s) => ({ name: s.name, description: s.description, snaptime: s.snaptime, ...(s.parent ? { parent: s.parent } : {}) }));
  out.push({ name: 'current', description: 'You are here!', running: b(m.pveStatus(g) === 'running'), digest: configDigest(g), ...(g.parentSnap ? { parent: g.parentSnap } : {}) });
  return out;
}
