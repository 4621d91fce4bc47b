// Fleets for tests that share the run's nats-server with other files.
import { buildFleet, type Fleet } from '../../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../../fleet/reference-fleet.ts';

/** The reference fleet under other vmids and node names, so no other test file's events reach it. */
export function isolatedFleet(name: string, offset: number): Fleet {
  const m = structuredClone(REFERENCE_MANIFEST);
  return buildFleet({
    name,
    nodes: m.nodes.map((n) => ({ ...n, name: `${name}-${n.name}` })),
    guests: m.guests.map((g) => ({ ...g, vmid: g.vmid + offset, name: `${name}-${g.name}`, node: `${name}-${g.node}`, dependsOn: g.dependsOn?.map((d) => d + offset) })),
    policies: { senseIntervalMs: 200 },
  });
}
