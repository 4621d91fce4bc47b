// PVE handlers for /nodes/{node}/lxc|qemu/...: the guest endpoints.
import type { GuestType } from '../pve-types.ts';
import type { SimGuest } from './model.ts';
import { PveHttpError, pveDie } from './pve-error.ts';
import type { Timeframe } from './rrd.ts';
import { guestStatus, haState, lxcConfig, qemuConfig, snapshotList, configDigest } from './views.ts';
import { guestInterfaces } from './views-infra.ts';
import type { PveHandler, PveRequest, SimWorld } from './world.ts';

/** The guest of the path, or PVE's "Configuration file … does not exist" (also for a guest on another node). */
export function guestOf(w: SimWorld, req: PveRequest, type: GuestType): SimGuest {
  const vmid = req.params.vmid as number;
  const g = w.model.guests.get(vmid);
  if (g && g.node === req.node!.name && g.type === type) return g;
  const dir = type === 'lxc' ? 'lxc' : 'qemu-server';
  throw pveDie(`Configuration file 'nodes/${req.node!.name}/${dir}/${vmid}.conf' does not exist`);
}

function list(type: GuestType): PveHandler {
  return (w, req) => {
    const now = Date.now();
    const out: Record<string, unknown>[] = [];
    for (const g of req.node!.guests) if (g.type === type) out.push(guestStatus(w.model, g, now));
    return out.sort((a, b) => (a.vmid as number) - (b.vmid as number));
  };
}

function current(type: GuestType): PveHandler {
  return (w, req) => {
    const g = guestOf(w, req, type);
    const out = guestStatus(w.model, g);
    out.ha = haState(g);
    return out;
  };
}

type OpName = 'start' | 'stop' | 'shutdown' | 'reboot' | 'migrate' | 'snapshot' | 'rollback' | 'delsnapshot';
function op(type: GuestType, name: OpName): PveHandler {
  return (w, req) => {
    const g = guestOf(w, req, type);
    return w.ops[name](g, req.node!, req.user, req.params);
  };
}

function migratePrecondition(type: GuestType): PveHandler {
  return (w, req) => {
    const g = guestOf(w, req, type);
    const others = [...w.model.nodes.values()].filter((n) => n.name !== g.node && w.model.online(n)).map((n) => n.name);
    const running = w.model.pveStatus(g) === 'running' ? 1 : 0;
    if (type === 'lxc') return { running, 'allowed-nodes': others, 'not-allowed-nodes': {} };
    return {
      running, allowed_nodes: others, not_allowed_nodes: {}, local_disks: [], local_resources: [],
      'mapped-resources': [], 'mapped-resource-info': {}, 'has-dbus-vmstate': 0,
    };
  };
}

const snapshots = (type: GuestType): PveHandler => (w, req) => snapshotList(w.model, guestOf(w, req, type));

const getConfig: PveHandler = (w, req) => {
  const g = guestOf(w, req, 'lxc');
  const snap = req.params.snapshot as string | undefined;
  if (snap && !g.snapshots.some((s) => s.name === snap)) throw pveDie(`snapshot '${snap}' does not exist`);
  return lxcConfig(g, snap);
};

const putConfig: PveHandler = (w, req) => {
  const g = guestOf(w, req, 'lxc');
  const p = req.params;
  if (g.lock) throw pveDie(`CT is locked (${g.lock})`);
  if (p.digest !== undefined && p.digest !== configDigest(g)) throw pveDie('detected modified configuration - file changed by other user? Try again.');
  const c = { ...g.config };
  if (p.hostname !== undefined) c.hostname = String(p.hostname);
  if (p.memory !== undefined) c.memory = Number(p.memory);
  if (p.swap !== undefined) c.swap = Number(p.swap);
  if (p.cores !== undefined) c.cores = Number(p.cores);
  if (p.description !== undefined) c.description = String(p.description);
  if (p.tags !== undefined) c.tags = String(p.tags);
  if (p.onboot !== undefined) c.onboot = p.onboot === true;
  if (p.hookscript !== undefined) c.hookscript = hookscriptVolume(String(p.hookscript));
  for (const k of String(p.delete ?? '').split(/[,; ]+/).filter(Boolean)) {
    if (k === 'description' || k === 'tags' || k === 'hookscript') delete c[k];
    else if (k === 'onboot') c.onboot = false;
    else if (['hostname', 'memory', 'swap', 'cores'].includes(k)) throw new PveHttpError(400, 'Parameter verification failed.', { delete: `unable to delete required option '${k}'` });
  }
  g.config = c;
  return null;
};

/** PVE checks that a hookscript is a snippet volume on a storage that holds snippets. */
function hookscriptVolume(v: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9._-]*):(.+)$/.exec(v);
  if (!m) throw new PveHttpError(400, 'Parameter verification failed.', { hookscript: `unable to parse volume ID '${v}'` });
  if (m[1] !== 'local') throw pveDie(`storage '${m[1]}' does not exist`);
  if (!m[2].startsWith('snippets/')) throw pveDie(`'${v}' is not in the snippets directory`);
  return v;
}

// The directory indexes, in PVE's order.
const LXC_DIRS = ['config', 'status', 'vncproxy', 'termproxy', 'vncwebsocket', 'spiceproxy', 'migrate', 'clone', 'rrd', 'firewall', 'snapshot', 'resize', 'interfaces', 'pending', 'rrddata', 'mtunnel'];
const QEMU_DIRS = ['config', 'pending', 'status', 'unlink', 'vncproxy', 'termproxy', 'migrate', 'resize', 'move', 'rrd', 'rrddata', 'monitor', 'agent', 'snapshot', 'spiceproxy', 'sendkey', 'firewall', 'mtunnel', 'remote_migrate'];
const index = (type: GuestType): PveHandler => (w, req) => {
  guestOf(w, req, type);
  return (type === 'lxc' ? LXC_DIRS : QEMU_DIRS).map((subdir) => ({ subdir }));
};

/** `pending`: every config key with its value (the twin applies changes at once, nothing pends). */
const pending = (type: GuestType): PveHandler => (w, req) => {
  const g = guestOf(w, req, type);
  const conf = type === 'lxc' ? lxcConfig(g) : qemuConfig(g);
  delete conf.digest;
  return Object.entries(conf).sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => ({ key, value: String(value) }));
};

const rrddata = (type: GuestType): PveHandler => (w, req) =>
  guestOf(w, req, type).rrd.query(req.params.timeframe as Timeframe, req.params.cf as 'AVERAGE' | 'MAX' | undefined);

const lxcInterfaces: PveHandler = (w, req) => {
  const g = guestOf(w, req, 'lxc');
  if (w.model.pveStatus(g) !== 'running') throw pveDie(`CT ${g.vmid} not running`);
  return guestInterfaces(g);
};

const agentInterfaces: PveHandler = (w, req) => {
  const g = guestOf(w, req, 'qemu');
  if (w.model.pveStatus(g) !== 'running') throw pveDie(`VM ${g.vmid} is not running`);
  // the agent answers once the guest OS is up, not while it boots
  if (g.phase !== 'running') throw pveDie('QEMU guest agent is not running');
  const result = guestInterfaces(g).map((i) => ({ name: i.name, 'hardware-address': i.hwaddr, 'ip-addresses': i['ip-addresses'], statistics: { 'rx-bytes': g.netin, 'tx-bytes': g.netout, 'rx-packets': Math.floor(g.netin / 1400), 'tx-packets': Math.floor(g.netout / 1400), 'rx-errs': 0, 'tx-errs': 0, 'rx-dropped': 0, 'tx-dropped': 0 } }));
  return { result };
};

const snapshotIndex = (type: GuestType): PveHandler => (w, req) => {
  const g = guestOf(w, req, type);
  const name = String(req.params.snapname);
  if (!g.snapshots.some((s) => s.name === name)) throw pveDie(`snapshot '${name}' does not exist`);
  return [{ cmd: 'rollback' }, { cmd: 'config' }];
};

const create = (type: GuestType): PveHandler => (w, req) => w.ops.create(req.node!, type, req.user, req.params);

export const guestRoutes: Record<string, PveHandler> = {
  'GET /nodes/{node}/lxc': list('lxc'),
  'POST /nodes/{node}/lxc': create('lxc'),
  'GET /nodes/{node}/lxc/{vmid}/status/current': current('lxc'),
  'POST /nodes/{node}/lxc/{vmid}/status/start': op('lxc', 'start'),
  'POST /nodes/{node}/lxc/{vmid}/status/stop': op('lxc', 'stop'),
  'POST /nodes/{node}/lxc/{vmid}/status/shutdown': op('lxc', 'shutdown'),
  'POST /nodes/{node}/lxc/{vmid}/status/reboot': op('lxc', 'reboot'),
  'GET /nodes/{node}/lxc/{vmid}/migrate': migratePrecondition('lxc'),
  'POST /nodes/{node}/lxc/{vmid}/migrate': op('lxc', 'migrate'),
  'GET /nodes/{node}/lxc/{vmid}/snapshot': snapshots('lxc'),
  'POST /nodes/{node}/lxc/{vmid}/snapshot': op('lxc', 'snapshot'),
  'POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback': op('lxc', 'rollback'),
  'DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}': op('lxc', 'delsnapshot'),
  'GET /nodes/{node}/lxc/{vmid}/snapshot/{snapname}': snapshotIndex('lxc'),
  'GET /nodes/{node}/lxc/{vmid}': index('lxc'),
  'GET /nodes/{node}/lxc/{vmid}/pending': pending('lxc'),
  'GET /nodes/{node}/lxc/{vmid}/rrddata': rrddata('lxc'),
  'GET /nodes/{node}/lxc/{vmid}/interfaces': lxcInterfaces,
  'GET /nodes/{node}/lxc/{vmid}/config': getConfig,
  'PUT /nodes/{node}/lxc/{vmid}/config': putConfig,
  'GET /nodes/{node}/qemu': list('qemu'),
  'POST /nodes/{node}/qemu': create('qemu'),
  'GET /nodes/{node}/qemu/{vmid}/status/current': current('qemu'),
  'POST /nodes/{node}/qemu/{vmid}/status/start': op('qemu', 'start'),
  'POST /nodes/{node}/qemu/{vmid}/status/stop': op('qemu', 'stop'),
  'POST /nodes/{node}/qemu/{vmid}/status/shutdown': op('qemu', 'shutdown'),
  'POST /nodes/{node}/qemu/{vmid}/status/reboot': op('qemu', 'reboot'),
  'GET /nodes/{node}/qemu/{vmid}/migrate': migratePrecondition('qemu'),
  'POST /nodes/{node}/qemu/{vmid}/migrate': op('qemu', 'migrate'),
  'GET /nodes/{node}/qemu/{vmid}/snapshot': snapshots('qemu'),
  'POST /nodes/{node}/qemu/{vmid}/snapshot': op('qemu', 'snapshot'),
  'POST /nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback': op('qemu', 'rollback'),
  'DELETE /nodes/{node}/qemu/{vmid}/snapshot/{snapname}': op('qemu', 'delsnapshot'),
  'GET /nodes/{node}/qemu/{vmid}/snapshot/{snapname}': snapshotIndex('qemu'),
  'GET /nodes/{node}/qemu/{vmid}': index('qemu'),
  'GET /nodes/{node}/qemu/{vmid}/pending': pending('qemu'),
  'GET /nodes/{node}/qemu/{vmid}/rrddata': rrddata('qemu'),
  'GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces': agentInterfaces,
};
