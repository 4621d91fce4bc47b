// The reference fleet of ../shared/REFERENCE-FLEET.md, placed on three nodes by role, and a
// generator of larger fleets for benchmarks.
import { buildFleet, type Fleet, type FleetManifest } from './manifest.ts';

type GuestIn = Omit<FleetManifest['guests'][number], 'type' | 'protected' | 'role' | 'shutdownMs' | 'memMiB' | 'cores' | 'diskGiB'> &
  Partial<FleetManifest['guests'][number]>;

const guests: GuestIn[] = [
  // layer 1 — infra base
  { vmid: 101, name: 'omada21', node: 'node-c', layer: 1, dependsOn: [], bootMs: 3000, role: 'TP-Link Omada network controller' },
  { vmid: 102, name: 'twingate-connector', node: 'node-c', layer: 1, dependsOn: [], bootMs: 1500, role: 'zero-trust access gateway' },
  { vmid: 120, name: 'monitoring30', node: 'node-b', layer: 1, dependsOn: [], bootMs: 4000, role: 'observability (Prometheus / Grafana)' },
  // layer 2 — core services
  { vmid: 159, name: 'db-empleos', node: 'node-b', layer: 2, dependsOn: [101], bootMs: 5000, role: 'PostgreSQL database', protected: false },
  { vmid: 155, name: 'nodebb', node: 'node-b', layer: 2, dependsOn: [101], bootMs: 3000, role: 'forum backend' },
  { vmid: 124, name: 'devops-lab', node: 'node-a', layer: 2, dependsOn: [101, 102], bootMs: 4000, role: 'CI/CD environment' },
  // layer 3 — apps / web
  { vmid: 122, name: 'web-lab22', node: 'node-c', layer: 3, dependsOn: [159, 155], bootMs: 2000, role: 'web services and front end (DMZ reverse proxy)' },
  { vmid: 243, name: 'ollama-server', node: 'node-a', layer: 3, dependsOn: [101], bootMs: 8000, role: 'local LLM inference (GPU passthrough)' },
  { vmid: 289, name: 'ridemotohub', node: 'node-a', layer: 3, dependsOn: [159], bootMs: 3500, role: 'custom application platform' },
  // layer 4 — user / media
  { vmid: 100, name: 'casaos-media', node: 'node-b', layer: 4, dependsOn: [122], bootMs: 2500, role: 'media server' },
  { vmid: 200, name: 'homeassistant', node: 'node-c', layer: 4, dependsOn: [101, 120], bootMs: 3000, role: 'home automation', protected: true },
  { vmid: 104, name: 'nvr69', node: 'node-b', layer: 4, dependsOn: [101, 120], bootMs: 2000, role: 'video surveillance' },
];

export const REFERENCE_MANIFEST = {
  name: 'reference',
  nodes: [
    { name: 'node-a', role: 'AI/ML compute with GPU passthrough', cpus: 32, memGiB: 128, capacity: 8 },
    { name: 'node-b', role: 'data and operations hub (ZFS, ECC, SSO, observability)', cpus: 16, memGiB: 64, capacity: 10 },
    { name: 'node-c', role: 'security sentinel (SIEM, DNS filtering, DMZ reverse proxy)', cpus: 8, memGiB: 32, capacity: 8 },
  ],
  guests: guests.map((g) => ({ type: 'lxc' as const, shutdownMs: Math.round(g.bootMs / 2), ...g })),
  policies: {},
};

export function referenceFleet(): Fleet {
  return buildFleet(structuredClone(REFERENCE_MANIFEST));
}

/** A synthetic fleet for benchmarks: `guests` guests in `layers` layers over `nodes` nodes; each guest
 *  depends on up to two guests of the layer below. Boot times 1–8 s unless `bootMs` is given. */
export function generateFleet(opts: { guests: number; layers: number; nodes?: number; bootMs?: (i: number) => number; seed?: number; policies?: Record<string, unknown> }): Fleet {
  const nodeCount = opts.nodes ?? 3;
  let seed = opts.seed ?? 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const perLayer = Math.ceil(opts.guests / opts.layers);
  const layerOf = (i: number) => Math.min(opts.layers, Math.floor(i / perLayer) + 1);
  const gs = Array.from({ length: opts.guests }, (_, i) => {
    const layer = layerOf(i);
    const lowStart = (layer - 2) * perLayer;
    const dependsOn = layer === 1 ? [] : [...new Set([lowStart + Math.floor(rand() * perLayer), lowStart + Math.floor(rand() * perLayer)])]
      .filter((d) => d >= 0 && d < opts.guests && layerOf(d) === layer - 1)
      .map((d) => 1000 + d);
    return {
      vmid: 1000 + i,
      name: `guest-${1000 + i}`,
      node: `node-${i % nodeCount}`,
      type: 'lxc' as const,
      layer,
      dependsOn,
      bootMs: opts.bootMs ? opts.bootMs(i) : 1000 + Math.floor(rand() * 7000),
    };
  });
  return buildFleet({
    name: `generated-${opts.guests}`,
    nodes: Array.from({ length: nodeCount }, (_, i) => ({ name: `node-${i}`, capacity: opts.guests })),
    guests: gs,
    ...(opts.policies ? { policies: opts.policies } : {}),
  });
}
