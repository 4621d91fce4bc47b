// Identities on the bus: a real nats-server with authorization on (the configuration `up` writes),
// one nkey per agent and one for the operator. Each may publish only its own subjects; a client
// without credentials cannot connect at all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { Bus, type IdentityName } from '../bus/mod.ts';
import { isHomeostatError } from '../core/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { ephemeralKeyring, type Keyring } from '../cli/keyring.ts';

let server: NatsServerHandle;
let dir: string;
let ring: Keyring;
const conns = new Map<IdentityName, NatsConnection>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'homeostat-auth-'));
  ring = ephemeralKeyring();
  server = await startNatsServer({ dataDir: dir, port: 0, auth: ring });
  // streams and buckets come from `up` (the admin identity), not from the agents
  const admin = await Bus.connect({ servers: server.url, source: 'up', seed: ring.get('admin').seed, manage: true });
  await admin.stop();
}, 30_000);
afterAll(async () => {
  for (const nc of conns.values()) await nc.close().catch(() => undefined);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function as(name: IdentityName): Promise<NatsConnection> {
  let nc = conns.get(name);
  if (!nc) {
    nc = await connect({ servers: server.url, authenticator: nkeyAuthenticator(new TextEncoder().encode(ring.get(name).seed)) });
    conns.set(name, nc);
  }
  return nc;
}

/** Publish as a request: a refused publish answers with the server's permissions violation;
 *  anything else (a JetStream ack, no responders) means the server let it through. */
async function mayPublish(name: IdentityName, subject: string): Promise<boolean> {
  const nc = await as(name);
  try {
    await nc.request(subject, '{}', { timeout: 3000 });
    return true;
  } catch (e) {
    return !/Permissions Violation/i.test(String((e as Error).message));
  }
}

const RULES: [IdentityName, string, boolean][] = [
  ['sensing', 'fleet.events.guest.node-a.100', true],
  ['sensing', '$KV.fleet-state.guest.100', true],
  ['sensing', 'fleet.actions.approved', false],
  ['sensing', 'fleet.incidents.inc-1.opened', false],
  ['sensing', '$KV.locks.guest.100', false],
  ['analysis', 'fleet.incidents.inc-1.opened', true],
  ['analysis', 'fleet.actions.approved', false],
  ['decision', 'fleet.actions.approved', true],
  ['decision', 'fleet.decisions.inc-1', true],
  ['decision', 'fleet.actions.succeeded', false],
  ['decision', 'fleet.events.guest.node-a.100', false],
  ['decision', '$KV.locks.guest.100', false],
  ['action', 'fleet.actions.succeeded', true],
  ['action', 'fleet.actions.rejected', true],
  ['action', '$KV.locks.guest.100', true],
  ['action', 'fleet.actions.approved', false],
  ['action', 'fleet.decisions.inc-1', false],
  ['workflows', 'fleet.propose.action', true],
  ['workflows', 'fleet.workflows.boot.b-1.LAYER.DONE', true],
  ['workflows', 'fleet.actions.approved', false],
  ['operator', 'fleet.cmd.approve', true],
  ['operator', 'fleet.chat', true],
  ['operator', 'fleet.actions.approved', false],
  ['operator', 'fleet.propose.action', false],
  ['operator', 'fleet.events.guest.node-a.100', false],
  ['operator', '$KV.fleet-state.desired.100', false],
  ['operator', '$JS.API.STREAM.DELETE.AUDIT', false],
  ['operator-agent', 'fleet.actions.approved', false],
  ['notify', '$KV.notify.group.incident_1', true],
  ['notify', 'fleet.actions.approved', false],
  ['notify', 'fleet.incidents.inc-1.opened', false],
  ['notify', '$KV.incidents.inc-1', false],
  ['sensing', '$JS.API.STREAM.PURGE.AUDIT', false],
];

describe('identities on the bus', () => {
  it('a client without credentials is refused', async () => {
    const e = await Bus.connect({ servers: server.url, source: 'anon', connectTimeoutMs: 3000 }).then(() => undefined, (x: unknown) => x);
    expect(isHomeostatError(e, 'HOMEOSTAT_ERR_AUTH')).toBe(true);
    expect(String((e as Error).message)).toMatch(/Authorization Violation/i);
  });

  it('a key the server does not know is refused', async () => {
    const e = await Bus.connect({ servers: server.url, source: 'stranger', seed: ephemeralKeyring().get('operator').seed, connectTimeoutMs: 3000 }).then(() => undefined, (x: unknown) => x);
    expect(isHomeostatError(e, 'HOMEOSTAT_ERR_AUTH')).toBe(true);
  });

  it.each(RULES)('%s publishing %s: allowed %s', async (name, subject, allowed) => {
    expect(await mayPublish(name, subject)).toBe(allowed);
  });

  it('every agent identity opens the streams and buckets `up` created, and reads them', async () => {
    for (const name of ['sensing', 'analysis', 'decision', 'action', 'workflows', 'notify', 'operator-agent', 'operator'] as const) {
      const bus = await Bus.connect({ servers: server.url, source: name, seed: ring.get(name).seed, connectTimeoutMs: 5000 });
      expect(await bus.kv.fleetState.get('nothing-here'), name).toBeNull();
      await bus.stop();
    }
  });
});
