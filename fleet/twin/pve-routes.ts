// Handlers for every path of the PVE schema subset, shaped like PVE 9's answers.
import { createHash } from 'node:crypto';
import type { GuestSpec } from '../manifest.ts';
import { ApiError, GuestOps } from './guest-ops.ts';
import { isTrue } from './params.ts';
import type { SimGuest, SimState } from './state.ts';
import type { TaskTable } from './tasks.ts';

export interface RouteCtx {
  state: SimState;
  tasks: TaskTable;
  ops: GuestOps;
  path: Record<string, string>;
  params: Record<string, string>;
}
export type Handler = (c: RouteCtx) => unknown;

const b = (v: boolean) => (v ? 1 : 0);

function guestOf(c: RouteCtx, type: 'lxc' | 'qemu'): SimGuest {
  const vmid = Number(c.path.vmid);
  const g = c.state.guests.get(vmid);
  if (!g || g.type !== type || g.node !== c.path.node) {
    throw new ApiError(500, `Configuration file 'nodes/${c.path.node}/${type === 'lxc' ? 'lxc' : 'qemu-server'}/${vmid}.conf' does not exist`);
  }
  return g;
}

function guestEntry(c: RouteCtx, g: SimGuest) {
  const m = c.state.metrics(g);
  const base = { vmid: g.vmid, name: g.name, status: g.status, cpu: m.cpu, cpus: m.cpus, mem: m.mem, maxmem: m.maxmem, maxdisk: m.maxdisk, uptime: m.uptime, netin: m.netin, netout: m.netout, diskread: m.diskread, diskwrite: m.diskwrite, tags: `layer-${g.spec.layer}` };
  return g.type === 'lxc'
    ? { ...base, type: 'lxc', disk: m.disk, maxswap: m.maxswap, ...(g.busy ? {} : {}) }
    : { ...base, qmpstatus: g.status, ...(g.status === 'running' ? { pid: 1000 + g.vmid, 'running-qemu': '10.0.2', 'running-machine': 'pc-i440fx-10.0+pve0' } : {}) };
}

function guestStatus(c: RouteCtx, type: 'lxc' | 'qemu') {
  const g = guestOf(c, type);
  return { ...guestEntry(c, g), ha: { managed: b(g.haManaged), ...(g.haManaged ? { state: 'started' } : {}) } };
}

function listGuests(c: RouteCtx, type: 'lxc' | 'qemu') {
  return [...c.state.guests.values()].filter((g) => g.node === c.path.node && g.type === type).map((g) => guestEntry(c, g));
}

function createGuest(c: RouteCtx, type: 'lxc' | 'qemu') {
  const vmid = Number(c.params.vmid);
  if (c.state.guests.has(vmid)) throw new ApiError(500, `${type === 'lxc' ? 'CT' : 'VM'} ${vmid} already exists on node '${c.state.guests.get(vmid)!.node}'`);
  const spec: GuestSpec = {
    vmid, name: c.params.hostname ?? c.params.name ?? `guest-${vmid}`, node: c.path.node, type, layer: 99, protected: false, role: '',
    bootMs: 2000, shutdownMs: 1000, memMiB: Number(c.params.memory ?? 512), cores: Number(c.params.cores ?? 1), diskGiB: 8,
  };
  const task = c.tasks.create(c.path.node, type === 'lxc' ? 'vzcreate' : 'qmcreate', String(vmid), 'root@pam');
  c.tasks.run(task, [{ afterMs: c.state.scaled(500), act: () => {
    c.state.guests.set(vmid, { spec, vmid, name: spec.name, node: spec.node, type, status: 'stopped', hung: false, snapshots: [], seed: vmid, haManaged: false });
  } }]);
  return task.upid;
}

function migratePrecondition(c: RouteCtx, type: 'lxc' | 'qemu') {
  const g = guestOf(c, type);
  const others = [...c.state.nodes.values()].filter((n) => n.name !== g.node);
  const allowed = others.filter((n) => n.online).map((n) => n.name);
  const notAllowed = Object.fromEntries(others.filter((n) => !n.online).map((n) => [n.name, { unavailable_storages: [] }]));
  if (type === 'lxc') return { running: g.status === 'running', 'allowed-nodes': allowed, 'not-allowed-nodes': notAllowed, 'dependent-ha-resources': [] };
  return { running: g.status === 'running', allowed_nodes: allowed, not_allowed_nodes: notAllowed, local_disks: [], local_resources: [], 'mapped-resources': [], 'mapped-resource-info': {}, 'has-dbus-vmstate': false, 'dependent-ha-resources': [] };
}

function lxcConfig(c: RouteCtx) {
  const g = guestOf(c, 'lxc');
  const cfg = { arch: 'amd64', cores: g.spec.cores, memory: g.spec.memMiB, swap: 512, hostname: g.name, ostype: 'debian', rootfs: `local-zfs:subvol-${g.vmid}-disk-0,size=${g.spec.diskGiB}G`, net0: `name=eth0,bridge=vmbr0,ip=dhcp,type=veth`, onboot: true, unprivileged: true, description: g.spec.role, tags: `layer-${g.spec.layer}`, startup: `order=${g.spec.layer}` };
  return { ...cfg, digest: createHash('sha1').update(JSON.stringify(cfg)).digest('hex') };
}

function snapshots(c: RouteCtx, type: 'lxc' | 'qemu') {
  const g = guestOf(c, type);
  const list: { name: string; description: string; snaptime?: number; parent?: string; running?: number }[] = g.snapshots.map((s, i) => ({ ...s, ...(i > 0 ? { parent: g.snapshots[i - 1].name } : {}) }));
  list.push({ name: 'current', description: 'You are here!', running: b(g.status === 'running'), ...(g.snapshots.length ? { parent: g.snapshots.at(-1)!.name } : {}) });
  return list;
}

function taskList(c: RouteCtx) {
  const p = c.params;
  let list = [...c.tasks.list(c.path.node)].reverse();
  if (p.vmid) list = list.filter((t) => t.id === p.vmid);
  if (p.typefilter) list = list.filter((t) => t.type === p.typefilter);
  if (p.userfilter) list = list.filter((t) => t.user.includes(p.userfilter));
  if (p.source === 'active') list = list.filter((t) => t.status === 'running');
  if (isTrue(p.errors)) list = list.filter((t) => t.status === 'stopped' && t.exitstatus !== 'OK');
  if (p.statusfilter) {
    const want = p.statusfilter.split(',');
    list = list.filter((t) => want.includes(t.status === 'running' ? 'running' : t.exitstatus === 'OK' ? 'ok' : 'error'));
  }
  if (p.since) list = list.filter((t) => t.starttime >= Number(p.since));
  if (p.until) list = list.filter((t) => t.starttime <= Number(p.until));
  const start = Number(p.start ?? 0);
  const limit = Number(p.limit ?? 50);
  return list.slice(start, start + limit).map((t) => ({
    upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user,
    ...(t.status === 'stopped' ? { endtime: t.endtime, status: t.exitstatus } : {}),
  }));
}

function taskOf(c: RouteCtx) {
  const t = c.tasks.get(c.path.upid);
  if (!t || t.node !== c.path.node) throw new ApiError(500, `unable to open file '/var/log/pve/tasks/active' - no such task`);
  return t;
}

function clusterResources(c: RouteCtx) {
  const type = c.params.type;
  const out: unknown[] = [];
  if (!type || type === 'node') {
    for (const n of c.state.nodes.values()) {
      const m = c.state.nodeMetrics(n);
      out.push(n.online
        ? { id: `node/${n.name}`, type: 'node', node: n.name, status: 'online', cpu: m.cpu, maxcpu: m.maxcpu, mem: m.mem, maxmem: m.maxmem, disk: m.disk, maxdisk: m.maxdisk, uptime: m.uptime, level: '', 'cgroup-mode': 2 }
        : { id: `node/${n.name}`, type: 'node', node: n.name, status: 'offline' });
    }
  }
  if (!type || type === 'vm') {
    for (const g of c.state.guests.values()) {
      const e = guestEntry(c, g) as Record<string, unknown>;
      const up = c.state.nodeOnline(g.node);
      out.push({ id: `${g.type}/${g.vmid}`, type: g.type, vmid: g.vmid, name: g.name, node: g.node, status: up ? g.status : 'unknown', template: false, maxcpu: g.spec.cores, ...(up ? { cpu: e.cpu, mem: e.mem, maxmem: e.maxmem, disk: e.disk ?? 0, maxdisk: e.maxdisk, uptime: e.uptime, netin: e.netin, netout: e.netout, diskread: e.diskread, diskwrite: e.diskwrite } : {}), tags: e.tags, ...(g.haManaged ? { hastate: 'started' } : {}) });
    }
  }
  if (!type || type === 'storage') {
    for (const n of c.state.nodes.values()) out.push({ id: `storage/${n.name}/local-zfs`, type: 'storage', storage: 'local-zfs', node: n.name, status: n.online ? 'available' : 'unknown', disk: 40 * 1024 ** 3, maxdisk: 400 * 1024 ** 3, content: 'images,rootdir', plugintype: 'zfspool', shared: false });
  }
  return out;
}

function clusterStatus(c: RouteCtx) {
  const nodes = [...c.state.nodes.values()];
  const online = nodes.filter((n) => n.online).length;
  return [
    { type: 'cluster', id: 'cluster', name: c.state.clusterName, nodes: nodes.length, quorate: b(online * 2 > nodes.length), version: nodes.length + 2 },
    ...nodes.map((n, i) => ({ type: 'node', id: `node/${n.name}`, name: n.name, nodeid: i + 1, online: b(n.online), local: b(i === 0), ip: `10.0.0.${11 + i}`, level: '' })),
  ];
}

function haStatus(c: RouteCtx) {
  const nodes = [...c.state.nodes.values()];
  const master = nodes.find((n) => n.online)?.name ?? nodes[0].name;
  const now = Math.floor(Date.now() / 1000);
  return [
    { id: 'quorum', type: 'quorum', node: master, status: nodes.filter((n) => n.online).length * 2 > nodes.length ? 'OK' : 'No quorum', quorate: 1 },
    { id: 'master', type: 'master', node: master, status: `${master} (active, ${new Date().toUTCString()})`, timestamp: now },
    ...nodes.map((n) => ({ id: `lrm:${n.name}`, type: 'lrm', node: n.name, status: n.online ? `${n.name} (idle, ${new Date().toUTCString()})` : `${n.name} (old timestamp - dead?, ${new Date().toUTCString()})`, timestamp: now })),
    ...[...c.state.guests.values()].filter((g) => g.haManaged).map((g) => ({ id: `service:ct:${g.vmid}`, type: 'service', sid: `ct:${g.vmid}`, node: g.node, state: g.status === 'running' ? 'started' : 'stopped', status: `ct:${g.vmid} (${g.node}, ${g.status === 'running' ? 'started' : 'stopped'})`, max_restart: 1, max_relocate: 1, request_state: 'started', crm_state: 'started' })),
  ];
}

function nodeStatus(c: RouteCtx) {
  const n = c.state.nodes.get(c.path.node)!;
  const m = c.state.nodeMetrics(n);
  return {
    'boot-info': { mode: 'efi', secureboot: false }, cpu: m.cpu,
    cpuinfo: { cores: Math.max(1, m.maxcpu / 2), cpus: m.maxcpu, model: 'AMD EPYC 7302P 16-Core Processor', sockets: 1, mhz: '3000.000', hvm: '1', flags: 'fpu vme de pse' },
    'current-kernel': { machine: 'x86_64', release: '6.14.8-2-pve', sysname: 'Linux', version: '#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2' },
    loadavg: [(m.cpu * m.maxcpu).toFixed(2), '0.50', '0.40'],
    memory: { total: m.maxmem, used: m.mem, free: m.maxmem - m.mem, available: m.maxmem - m.mem },
    pveversion: 'pve-manager/9.0.10/deadbeef1234abcd', kversion: 'Linux 6.14.8-2-pve',
    rootfs: { total: m.maxdisk, used: m.disk, free: m.maxdisk - m.disk, avail: m.maxdisk - m.disk },
    swap: { total: 8 * 1024 ** 3, used: 0, free: 8 * 1024 ** 3 }, uptime: m.uptime, idle: 0, wait: 0.001,
  };
}

const guestPaths = (t: 'lxc' | 'qemu'): Record<string, Handler> => ({
  [`GET /nodes/{node}/${t}`]: (c) => listGuests(c, t),
  [`POST /nodes/{node}/${t}`]: (c) => createGuest(c, t),
  [`GET /nodes/{node}/${t}/{vmid}/status/current`]: (c) => guestStatus(c, t),
  [`POST /nodes/{node}/${t}/{vmid}/status/start`]: (c) => c.ops.start(guestOf(c, t)),
  [`POST /nodes/{node}/${t}/{vmid}/status/stop`]: (c) => c.ops.stop(guestOf(c, t)),
  [`POST /nodes/{node}/${t}/{vmid}/status/shutdown`]: (c) => c.ops.shutdown(guestOf(c, t), Number(c.params.timeout ?? 60), isTrue(c.params.forceStop)),
  [`POST /nodes/{node}/${t}/{vmid}/status/reboot`]: (c) => c.ops.reboot(guestOf(c, t)),
  [`GET /nodes/{node}/${t}/{vmid}/migrate`]: (c) => migratePrecondition(c, t),
  [`POST /nodes/{node}/${t}/{vmid}/migrate`]: (c) => c.ops.migrate(guestOf(c, t), c.params.target, { online: isTrue(c.params.online), restart: isTrue(c.params.restart) }),
});

export const PVE_ROUTES: Record<string, Handler> = {
  'GET /version': () => ({ version: '9.0.10', release: '9.0', repoid: 'deadbeef1234abcd', console: 'xtermjs' }),
  'GET /nodes': (c) => [...c.state.nodes.values()].map((n) => {
    if (!n.online) return { node: n.name, status: 'offline' };
    const m = c.state.nodeMetrics(n);
    return { node: n.name, status: 'online', cpu: m.cpu, maxcpu: m.maxcpu, mem: m.mem, maxmem: m.maxmem, uptime: m.uptime, level: '', ssl_fingerprint: '' };
  }),
  'GET /nodes/{node}/status': nodeStatus,
  'POST /nodes/{node}/status': () => null,
  'GET /cluster/status': clusterStatus,
  'GET /cluster/resources': clusterResources,
  ...guestPaths('lxc'),
  ...guestPaths('qemu'),
  'GET /nodes/{node}/lxc/{vmid}/snapshot': (c) => snapshots(c, 'lxc'),
  'POST /nodes/{node}/lxc/{vmid}/snapshot': (c) => c.ops.snapshot(guestOf(c, 'lxc'), c.params.snapname, c.params.description),
  'POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback': (c) => c.ops.rollback(guestOf(c, 'lxc'), c.path.snapname, isTrue(c.params.start)),
  'GET /nodes/{node}/lxc/{vmid}/config': lxcConfig,
  'PUT /nodes/{node}/lxc/{vmid}/config': (c) => {
    guestOf(c, 'lxc');
    return null;
  },
  'GET /nodes/{node}/tasks': taskList,
  'GET /nodes/{node}/tasks/{upid}/status': (c) => {
    const t = taskOf(c);
    return { upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user, status: t.status, ...(t.status === 'stopped' ? { exitstatus: t.exitstatus } : {}) };
  },
  'GET /nodes/{node}/tasks/{upid}/log': (c) => {
    const t = taskOf(c);
    const start = Number(c.params.start ?? 0);
    const limit = Number(c.params.limit ?? 50);
    return t.log.slice(start, start + limit).map((line, i) => ({ n: start + i + 1, t: line }));
  },
  'GET /cluster/ha/resources': (c) => [...c.state.guests.values()].filter((g) => g.haManaged && (!c.params.type || c.params.type === (g.type === 'lxc' ? 'ct' : 'vm'))).map((g) => ({ sid: `${g.type === 'lxc' ? 'ct' : 'vm'}:${g.vmid}`, type: g.type === 'lxc' ? 'ct' : 'vm', state: 'started', max_restart: 1, max_relocate: 1, digest: 'a'.repeat(40) })),
  'POST /cluster/ha/resources': (c) => {
    const m = /^(?:(ct|vm):)?(\d+)$/.exec(c.params.sid);
    const g = m ? c.state.guests.get(Number(m[2])) : undefined;
    if (!g) throw new ApiError(500, `unable to find VM/CT '${c.params.sid}'`);
    if (g.haManaged) throw new ApiError(500, `resource ID '${c.params.sid}' already defined`);
    g.haManaged = true;
    return null;
  },
  'GET /cluster/ha/status/current': haStatus,
  'GET /access/ticket': () => null,
  'POST /access/ticket': () => {
    throw new ApiError(401, 'authentication failure');
  },
};
