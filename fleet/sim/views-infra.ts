// PVE's answers about what surrounds the guests: storage (sized by what the guests use, so a
// disk-fill shows), node networks, guest interfaces, users and tokens, pools. Built from the model.
import { createHash } from 'node:crypto';
import { GiB, type SimGuest, type SimModel, type SimNode } from './model.ts';

export interface StorageDef {
  storage: string;
  type: 'dir' | 'lvmthin';
  content: string;
  path?: string;
  thinpool?: string;
  vgname?: string;
}

/** The default storages of a PVE install; `local` holds snippets, so hookscripts can live there. */
export const STORAGES: readonly StorageDef[] = [
  { storage: 'local', type: 'dir', content: 'backup,iso,snippets,vztmpl', path: '/var/lib/vz' },
  { storage: 'local-lvm', type: 'lvmthin', content: 'images,rootdir', thinpool: 'data', vgname: 'pve' },
];
const THIN_POOL_BYTES = 1800 * GiB;
const ROOT_BYTES = 100 * GiB;
const ROOT_USED = 12 * GiB;

const digestOf = (v: unknown) => createHash('sha1').update(JSON.stringify(v)).digest('hex');

export function storageDef(id: string): StorageDef | undefined {
  return STORAGES.find((s) => s.storage === id);
}

/** `/storage` items: the cluster-wide storage configuration. */
export function storageConfig(s: StorageDef): Record<string, unknown> {
  return { ...s, digest: digestOf(STORAGES) };
}

/** Bytes used and total of a storage on a node; the thin pool holds the guests' disks as they fill. */
export function storageUsage(m: SimModel, n: SimNode, s: StorageDef): { total: number; used: number; avail: number } {
  if (s.type === 'dir') return { total: ROOT_BYTES, used: ROOT_USED, avail: ROOT_BYTES - ROOT_USED };
  let used = 0;
  for (const g of n.guests) used += m.usage(g).disk;
  return { total: THIN_POOL_BYTES, used, avail: THIN_POOL_BYTES - used };
}

/** `/nodes/{node}/storage` item (and, without `storage`, its `/status`). */
export function nodeStorage(m: SimModel, n: SimNode, s: StorageDef): Record<string, unknown> {
  const up = m.online(n);
  const u = storageUsage(m, n, s);
  return {
    storage: s.storage, type: s.type, content: s.content, shared: 0, enabled: 1, active: up ? 1 : 0,
    total: u.total, used: u.used, avail: u.avail, used_fraction: Math.round((u.used / u.total) * 1e6) / 1e6,
  };
}

/** `/nodes/{node}/network`: the NIC and the bridge the guests sit on, addressed like the node. */
export function nodeNetwork(n: SimNode): Record<string, unknown>[] {
  return [
    { iface: 'nic0', type: 'eth', method: 'manual', method6: 'manual', families: ['inet'], active: 1, exists: 1, autostart: 0, priority: 3 },
    {
      iface: 'vmbr0', type: 'bridge', method: 'static', method6: 'manual', families: ['inet'], active: 1, autostart: 1, priority: 4,
      address: n.ip, netmask: '24', cidr: `${n.ip}/24`, gateway: '10.10.0.1', bridge_ports: 'nic0', bridge_stp: 'off', bridge_fd: '0',
    },
  ];
}

const hexByte = (n: number) => (n & 0xff).toString(16).toUpperCase().padStart(2, '0');

/** The guest's MAC on vmbr0 (Proxmox's BC:24:11 prefix), derived from its vmid. */
export function guestMac(g: SimGuest): string {
  return `BC:24:11:${hexByte(g.vmid >> 16)}:${hexByte(g.vmid >> 8)}:${hexByte(g.vmid)}`;
}

/** The guest's address on vmbr0: unique per vmid in the fleet's 10.20.0.0/16 guest network. */
export function guestIp(g: SimGuest): string {
  return `10.20.${Math.floor(g.vmid / 250) % 256}.${(g.vmid % 250) + 2}`;
}

function iface(name: string, mac: string, v4: string, p4: number, v6: string, p6: number): Record<string, unknown> {
  return {
    name, hwaddr: mac, 'hardware-address': mac, inet: `${v4}/${p4}`, inet6: `${v6}/${p6}`,
    'ip-addresses': [{ 'ip-address': v4, 'ip-address-type': 'inet', prefix: p4 }, { 'ip-address': v6, 'ip-address-type': 'inet6', prefix: p6 }],
  };
}

/** What the container (lxc `interfaces`) or the QEMU guest agent reports about its interfaces. */
export function guestInterfaces(g: SimGuest): Record<string, unknown>[] {
  const mac = guestMac(g);
  const ll = `fe80::be24:11ff:fe${mac.slice(12, 14)}:${mac.slice(15, 17)}${mac.slice(18, 20)}`.toLowerCase();
  return [iface('lo', '00:00:00:00:00:00', '127.0.0.1', 8, '::1', 128), iface(g.type === 'lxc' ? 'eth0' : 'ens18', mac, guestIp(g), 16, ll, 64)];
}

/** The users the twin knows: root, and the user of the API token in use (with that token). */
export interface SimUser {
  userid: string;
  comment: string;
  tokens: { tokenid: string; comment: string; privsep: number; expire: number }[];
}

export function users(tokenId: string): SimUser[] {
  const [user, token] = tokenId.split('!');
  const out: SimUser[] = [{ userid: 'root@pam', comment: '', tokens: [] }];
  const tokens = [{ tokenid: token, comment: 'homeostat agents', privsep: 1, expire: 0 }];
  if (user === 'root@pam') out[0].tokens = tokens;
  else out.push({ userid: user, comment: 'homeostat self-healing', tokens });
  return out;
}

/** The role docs/real-pve.md grants homeostat's token on `/`, plus the audit rights listings need. */
export const TOKEN_PRIVS = ['Datastore.Audit', 'Pool.Audit', 'Sys.Audit', 'VM.Audit', 'VM.Migrate', 'VM.PowerMgmt', 'VM.Snapshot', 'VM.Snapshot.Rollback'];

/** `/access/permissions`: the privileges per ACL path, propagated from `/` like PVE's ACL tree. */
export function permissions(m: SimModel, path?: string): Record<string, Record<string, number>> {
  const privs = Object.fromEntries(TOKEN_PRIVS.map((p) => [p, 1]));
  const paths = path !== undefined ? [path] : ['/', '/access', '/nodes', '/pool', '/sdn', '/storage', '/vms', ...[...m.nodes.keys()].map((n) => `/nodes/${n}`), ...[...m.guests.keys()].map((v) => `/vms/${v}`)];
  return Object.fromEntries(paths.map((p) => [p, { ...privs }]));
}

/** One pool per boot layer, holding that layer's guests. */
export function pools(m: SimModel): { poolid: string; comment: string; guests: SimGuest[] }[] {
  const layers = new Map<number, SimGuest[]>();
  for (const g of m.guests.values()) layers.set(g.layer, [...(layers.get(g.layer) ?? []), g]);
  return [...layers.entries()].sort(([a], [b]) => a - b).map(([layer, guests]) => ({
    poolid: `layer${layer}`, comment: `boot layer ${layer}`, guests: guests.sort((a, b) => a.vmid - b.vmid),
  }));
}
