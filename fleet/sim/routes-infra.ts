// PVE handlers for what real clients (proxmoxer, Ansible's proxmox modules, the web UI) read next
// to the guests: free vmids, storage, pools, users/tokens/permissions, node network, version and
// RRD history. Answers and error texts follow PVE 9.
import type { Timeframe } from './rrd.ts';
import { paramError, pveDie } from './pve-error.ts';
import { PVE_VERSION, guestResource } from './views.ts';
import { STORAGES, nodeNetwork, nodeStorage, permissions, pools, storageConfig, storageDef, users } from './views-infra.ts';
import type { PveHandler, SimWorld } from './world.ts';

/** PVE's datacenter.cfg default range for `next-id`. */
const NEXTID_LOWER = 100;
const NEXTID_UPPER = 1_000_000;

const nextid: PveHandler = (w, req) => {
  const wanted = req.params.vmid as number | undefined;
  if (wanted !== undefined) {
    if (w.model.guests.has(wanted)) throw paramError({ vmid: `VM ${wanted} already exists` });
    return wanted;
  }
  for (let i = NEXTID_LOWER; i < NEXTID_UPPER; i++) if (!w.model.guests.has(i)) return i;
  throw pveDie(`unable to get any free VMID in range [${NEXTID_LOWER}, ${NEXTID_UPPER}]`);
};

function storageOr500(id: string) {
  const s = storageDef(id);
  if (!s) throw pveDie(`storage '${id}' does not exist`);
  return s;
}

const nodeStorageList: PveHandler = (w, req) => {
  const p = req.params;
  const wanted = p.content ? String(p.content).split(/[,; ]+/) : [];
  return STORAGES
    .filter((s) => (!p.storage || s.storage === p.storage) && wanted.every((c) => s.content.split(',').includes(c)))
    .map((s) => nodeStorage(w.model, req.node!, s));
};

const storageStatus: PveHandler = (w, req) => {
  const item = nodeStorage(w.model, req.node!, storageOr500(String(req.params.storage)));
  delete item.storage;
  delete item.used_fraction;
  return item;
};

function poolMembers(w: SimWorld, poolid: string, type?: string): Record<string, unknown>[] {
  const pool = pools(w.model).find((p) => p.poolid === poolid);
  if (!pool) throw pveDie(`pool '${poolid}' does not exist`);
  const now = Date.now();
  return pool.guests
    .filter((g) => !type || type === g.type)
    .map((g) => guestResource(w.model, g, w.model.online(w.model.nodes.get(g.node)!), now));
}

const poolList: PveHandler = (w, req) => {
  const poolid = req.params.poolid as string | undefined;
  const all = pools(w.model).map((p) => ({ poolid: p.poolid, comment: p.comment }));
  if (poolid === undefined) return all;
  const found = all.filter((p) => p.poolid === poolid);
  return found.map((p) => ({ ...p, members: poolMembers(w, p.poolid, req.params.type as string | undefined) }));
};

const poolGet: PveHandler = (w, req) => {
  const poolid = String(req.params.poolid);
  const members = poolMembers(w, poolid, req.params.type as string | undefined);
  return { comment: pools(w.model).find((p) => p.poolid === poolid)!.comment, members };
};

function userOr500(tokenId: string, userid: string) {
  const u = users(tokenId).find((x) => x.userid === userid);
  if (!u) throw pveDie(`no such user ('${userid}')`);
  return u;
}

const userList: PveHandler = (_w, req) =>
  users(req.user).map((u) => ({
    userid: u.userid, enable: 1, expire: 0, 'realm-type': u.userid.split('@')[1], ...(u.comment ? { comment: u.comment } : {}),
    ...(req.params.full === true ? { tokens: u.tokens } : {}),
  }));

const userGet: PveHandler = (_w, req) => {
  const u = userOr500(req.user, String(req.params.userid));
  const tokens = Object.fromEntries(u.tokens.map(({ tokenid, ...rest }) => [tokenid, rest]));
  return { enable: 1, expire: 0, groups: [], ...(u.comment ? { comment: u.comment } : {}), tokens };
};

const tokenList: PveHandler = (_w, req) => userOr500(req.user, String(req.params.userid)).tokens;

const permissionList: PveHandler = (w, req) => {
  const who = req.params.userid as string | undefined;
  const path = req.params.path as string | undefined;
  if (who !== undefined && who !== req.user && who !== req.user.split('!')[0]) userOr500(req.user, who.split('!')[0]);
  return permissions(w.model, path);
};

const rrddata: PveHandler = (_w, req) => req.node!.rrd.query(req.params.timeframe as Timeframe, req.params.cf as 'AVERAGE' | 'MAX' | undefined);

export const infraRoutes: Record<string, PveHandler> = {
  'GET /cluster/nextid': nextid,
  'GET /storage': (_w, req) => STORAGES.filter((s) => !req.params.type || s.type === req.params.type).map(storageConfig),
  'GET /storage/{storage}': (_w, req) => storageConfig(storageOr500(String(req.params.storage))),
  'GET /nodes/{node}/storage': nodeStorageList,
  'GET /nodes/{node}/storage/{storage}/status': storageStatus,
  'GET /pools': poolList,
  'GET /pools/{poolid}': poolGet,
  'GET /access/users': userList,
  'GET /access/users/{userid}': userGet,
  'GET /access/users/{userid}/token': tokenList,
  'GET /access/domains': () => [
    { realm: 'pam', type: 'pam', comment: 'Linux PAM standard authentication' },
    { realm: 'pve', type: 'pve', comment: 'Proxmox VE authentication server' },
  ],
  'GET /access/permissions': permissionList,
  'GET /nodes/{node}/version': () => ({ ...PVE_VERSION }),
  'GET /nodes/{node}/network': (_w, req) => {
    const t = req.params.type as string | undefined;
    return nodeNetwork(req.node!).filter((i) => !t || i.type === t || (t.startsWith('any_') && i.type === 'bridge') || t === 'include_sdn');
  },
  'GET /nodes/{node}/rrddata': rrddata,
};
