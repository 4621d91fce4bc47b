// PVE handlers for /nodes/{node}/lxc|qemu/...: the guest endpoints.
import type { GuestType } from '../pve-types.ts';
import type { SimGuest } from './model.ts';
import { PveHttpError, pveDie } from './pve-error.ts';
import { guestStatus, haState, lxcConfig, snapshotList, configDigest } from './views.ts';
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

type OpName = 'start' | 'stop' | 'shutdown' | 'reboot' | 'migrate' | 'snapshot' | 'rollback';
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
  for (const k of String(p.delete ?? '').split(/[,; ]+/).filter(Boolean)) {
    if (k === 'description' || k === 'tags') delete c[k];
    else if (k === 'onboot') c.onboot = false;
    else if (['hostname', 'memory', 'swap', 'cores'].includes(k)) throw new PveHttpError(400, 'Parameter verification failed.', { delete: `unable to delete required option '${k}'` });
  }
  g.config = c;
  return null;
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
};
