// PVE handlers for the cluster-wide and per-node (non-guest) endpoints, tasks, HA and access.
import type { HaResource } from './model.ts';
import { PveHttpError, paramError, pveDie } from './pve-error.ts';
import { parseUpid, type SimTask, type TaskFilter } from './tasks.ts';
import { PVE_VERSION, clusterResources, clusterStatus, nodeListItem, nodeStatus } from './views.ts';
import { WithTotal, type PveHandler, type PveRequest, type SimWorld } from './world.ts';

function taskOf(w: SimWorld, req: PveRequest): SimTask {
  const upid = req.params.upid as string;
  const parsed = parseUpid(upid);
  if (!parsed) throw paramError({ upid: 'unable to parse worker upid' });
  const t = w.tasks.get(upid);
  if (!t || parsed.node !== req.node!.name) throw paramError({ upid: 'no such task' });
  return t;
}

function taskItem(t: SimTask): Record<string, unknown> {
  const out: Record<string, unknown> = { upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user };
  if (t.status === 'stopped') {
    out.endtime = t.endtime;
    out.status = t.exitstatus;
  }
  return out;
}

const taskStatus: PveHandler = (w, req) => {
  const t = taskOf(w, req);
  const out: Record<string, unknown> = { ...taskItem(t), status: t.status };
  delete out.endtime;
  if (t.status === 'stopped') out.exitstatus = t.exitstatus;
  return out;
};

const taskLog: PveHandler = (w, req) => {
  const t = taskOf(w, req);
  const start = (req.params.start as number | undefined) ?? 0;
  const limit = (req.params.limit as number | undefined) || 50;
  // PVE answers an empty log with one line saying so
  const lines = t.log.length ? t.log : ['no content'];
  const page = lines.slice(start, start + limit).map((text, i) => ({ n: start + i + 1, t: text }));
  return new WithTotal(page, lines.length);
};

const taskList: PveHandler = (w, req) => {
  const p = req.params;
  const f: TaskFilter = {
    start: p.start as number | undefined, limit: p.limit as number | undefined, since: p.since as number | undefined, until: p.until as number | undefined,
    errors: p.errors === true, source: p.source as TaskFilter['source'], statusfilter: p.statusfilter as string | undefined,
    typefilter: p.typefilter as string | undefined, userfilter: p.userfilter as string | undefined, vmid: p.vmid as number | undefined,
  };
  const r = w.tasks.list(req.node!.name, f);
  return new WithTotal(r.items.map(taskItem), r.total);
};

/** `/cluster/tasks`: the recent tasks of every node, running first, newest first, like pvestatd's task index. */
const clusterTasks: PveHandler = (w) => {
  const all = [...w.model.nodes.keys()].flatMap((n) => w.tasks.list(n, { source: 'all', limit: 50 }).items);
  all.sort((a, b) => (a.status === b.status ? b.starttime - a.starttime : a.status === 'running' ? -1 : 1));
  return all.map((t) => ({ ...taskItem(t), saved: t.status === 'stopped' ? '1' : '0' }));
};

/** One weekly backup of every guest, the job a fresh PVE install suggests. */
const backupJobs: PveHandler = () => {
  const week = 7 * 86_400;
  const now = Math.floor(Date.now() / 1000);
  return [{
    id: 'backup-homeostat', type: 'vzdump', enabled: 1, schedule: 'sun 01:00', all: 1, storage: 'local', mode: 'snapshot', compress: 'zstd',
    'notes-template': '{{guestname}}', 'next-run': now - (now % week) + week + 3600,
  }];
};

const nodePower: PveHandler = (w, req) => {
  // the node reboots (back after a while, guests stopped) or shuts down (until its fault is healed)
  const reboot = req.params.command === 'reboot';
  w.faults.inject({ kind: 'node-down', target: req.node!.name, ...(reboot ? { durationMs: Math.max(1, Math.round(30_000 * w.timeScale)) } : {}), params: { via: `POST /nodes/${req.node!.name}/status command=${req.params.command}` } });
  return null;
};

function parseSid(w: SimWorld, sid: string, type?: string): { sid: string; type: 'ct' | 'vm'; vmid: number } {
  const m = /^(?:(ct|vm):)?(\d+)$/.exec(sid)!;
  const vmid = Number(m[2]);
  const g = w.model.guests.get(vmid);
  if (!g) throw pveDie(`unable to find VM '${vmid}'`);
  const actual = g.type === 'lxc' ? 'ct' : 'vm';
  const wanted = m[1] ?? type ?? actual;
  if (wanted !== actual) throw paramError({ sid: `VM ${vmid} is not of type '${wanted}'` });
  return { sid: `${actual}:${vmid}`, type: actual, vmid };
}

const haResources: PveHandler = (w, req) => {
  const out: Record<string, unknown>[] = [];
  for (const g of w.model.guests.values()) {
    if (!g.ha || (req.params.type && req.params.type !== g.ha.type)) continue;
    out.push(haItem(g.ha));
  }
  return out;
};

function haItem(h: HaResource): Record<string, unknown> {
  return { sid: h.sid, type: h.type, state: h.state, max_restart: h.max_restart, max_relocate: h.max_relocate, failback: h.failback ? 1 : 0, digest: 'a3f1c0b2d4e5f60718293a4b5c6d7e8f90a1b2c3', ...(h.group ? { group: h.group } : {}), ...(h.comment ? { comment: h.comment } : {}) };
}

const haResource: PveHandler = (w, req) => {
  const { sid, vmid } = parseSid(w, String(req.params.sid));
  const h = w.model.guests.get(vmid)!.ha;
  if (!h) throw pveDie(`no such resource '${sid}'`);
  return haItem(h);
};

const haAdd: PveHandler = (w, req) => {
  const p = req.params;
  const { sid, type, vmid } = parseSid(w, p.sid as string, p.type as string | undefined);
  const g = w.model.guests.get(vmid)!;
  if (g.ha) throw pveDie(`resource ID '${sid}' already defined`);
  const ha: HaResource = {
    sid, type, state: (p.state as HaResource['state'] | undefined) ?? 'started', max_restart: (p.max_restart as number | undefined) ?? 1,
    max_relocate: (p.max_relocate as number | undefined) ?? 1, failback: p.failback !== false,
  };
  if (p.group) ha.group = String(p.group);
  if (p.comment) ha.comment = String(p.comment);
  g.ha = ha;
  return null;
};

const haStatus: PveHandler = (w) => {
  const m = w.model;
  const master = m.localNode();
  const ts = Math.floor(Date.now() / 1000);
  const when = new Date(ts * 1000).toString().slice(0, 24);
  const quorate = m.quorate();
  const out: Record<string, unknown>[] = [{ id: 'quorum', type: 'quorum', node: master.name, status: quorate ? 'OK' : 'No quorum on node', quorate: quorate ? 1 : 0 }];
  const ha = [...m.guests.values()].filter((g) => g.ha);
  if (!ha.length) return out;
  out.push({ id: 'master', type: 'master', node: master.name, status: `${master.name} (active, ${when})`, timestamp: ts });
  for (const n of m.nodes.values()) {
    const has = ha.some((g) => g.node === n.name);
    const status = m.online(n) ? `${n.name} (${has ? 'active' : 'idle'}, ${when})` : `${n.name} (old timestamp - dead?, ${when})`;
    out.push({ id: `lrm:${n.name}`, type: 'lrm', node: n.name, status, timestamp: ts });
  }
  for (const g of ha) {
    const h = g.ha!;
    const n = m.nodes.get(g.node)!;
    const state = m.online(n) ? (h.state === 'started' && m.pveStatus(g) !== 'running' ? 'starting' : h.state) : n.fenced ? 'recovery' : 'fence';
    out.push({
      id: `service:${h.sid}`, type: 'service', sid: h.sid, node: g.node, state, status: `${h.sid} (${g.node}, ${state})`, crm_state: state,
      request_state: h.state, max_restart: h.max_restart, max_relocate: h.max_relocate, failback: h.failback ? 1 : 0, ...(h.group ? { group: h.group } : {}),
    });
  }
  return out;
};

export const clusterRoutes: Record<string, PveHandler> = {
  'GET /version': () => ({ ...PVE_VERSION }),
  'GET /nodes': (w) => [...w.model.nodes.values()].map((n) => nodeListItem(w.model, n)),
  'GET /nodes/{node}/status': (w, req) => nodeStatus(w.model, req.node!),
  'POST /nodes/{node}/status': nodePower,
  'GET /cluster/status': (w) => clusterStatus(w.model),
  'GET /cluster/resources': (w, req) => clusterResources(w.model, req.params.type as string | undefined),
  'GET /nodes/{node}/tasks': taskList,
  'GET /cluster/tasks': clusterTasks,
  'GET /cluster/options': () => ({ keyboard: 'en-us', console: 'html5' }),
  'GET /cluster/backup': backupJobs,
  'GET /cluster/ha/resources/{sid}': haResource,
  'GET /nodes/{node}/tasks/{upid}/status': taskStatus,
  'GET /nodes/{node}/tasks/{upid}/log': taskLog,
  'GET /cluster/ha/resources': haResources,
  'POST /cluster/ha/resources': haAdd,
  'GET /cluster/ha/status/current': haStatus,
  'GET /access/ticket': () => null,
  // homeostat uses API tokens; a password login is refused like a wrong password
  'POST /access/ticket': () => {
    throw new PveHttpError(401, 'authentication failure');
  },
};
