// `up --nats-cluster N`: N local nats-servers joined by routes, JetStream on each (clustered
// JetStream needs a server name per server and ≥ 3 servers for replicated streams). Clients get
// every server's URL and reconnect to any of them.
import { join } from 'node:path';
import { connect, nkeyAuthenticator } from '@nats-io/transport-node';
import { leaseStoreTag } from '../bus/mod.ts';
import { HomeostatError } from '../core/mod.ts';
import { freePort, startNatsServer, type NatsServerHandle } from './nats-server.ts';
import type { Keyring } from './keyring.ts';

export interface NatsClusterHandle {
  /** Comma-separated client URLs, what every homeostat command accepts as --nats / NATS_URL. */
  url: string;
  servers: NatsServerHandle[];
  stop(): Promise<void>;
}

export const CLUSTER_NAME = 'homeostat';

export async function startNatsCluster(opts: { dataDir: string; size: number; host?: string; port?: number; auth?: Keyring }): Promise<NatsClusterHandle> {
  const host = opts.host ?? '127.0.0.1';
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < opts.size; i++) {
    clientPorts.push(i === 0 && opts.port ? opts.port : await freePort());
    routePorts.push(await freePort());
  }
  const routes = routePorts.map((p) => `nats-route://${host}:${p}`).join(',');
  const servers: NatsServerHandle[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    // together: each waits for its routes, and JetStream elects its meta leader once a majority is up
    const started = await Promise.allSettled(clientPorts.map((port, i) => startNatsServer({
      dataDir: join(opts.dataDir, `nats-${i + 1}`),
      host,
      port,
      auth: opts.auth,
      // the tag places one of sensing's lease stores on this server (bus/jetstream.ts)
      tags: [leaseStoreTag(i)],
      args: ['-n', `homeostat-${i + 1}`, '--cluster_name', CLUSTER_NAME, '--cluster', `nats://${host}:${routePorts[i]}`, '--routes', routes],
    })));
    for (const r of started) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const url = servers.map((s) => s.url).join(',');
    await waitForJetStream(url, opts.auth?.get('admin').seed);
    return { url, servers, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Until the cluster's JetStream answers API calls (a meta leader is elected). */
async function waitForJetStream(servers: string, seed?: string, timeoutMs = 30_000): Promise<void> {
  const nc = await connect({ servers: servers.split(','), reconnect: true, ...(seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) } : {}) });
  try {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const m = await nc.request('$JS.API.INFO', undefined, { timeout: 2000 });
        const r = JSON.parse(new TextDecoder().decode(m.data)) as { error?: { description?: string } };
        if (!r.error) return;
      } catch {
        // no responders yet: the meta leader is still being elected
      }
      if (Date.now() > end) throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `the NATS cluster's JetStream did not become ready in ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await nc.close();
  }
}
