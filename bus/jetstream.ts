// JetStream setup: streams FLEET and AUDIT, KV buckets. `up` and `init` create them or bring their
// config up to date (manage); every other client only opens them, creating one only when it is
// missing (a first run without `up`), which an identity without the stream permissions cannot.
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { retry } from '../core/mod.ts';
import { AUDIT_STREAM_SUBJECTS, FLEET_OWN_SUBJECTS } from './subjects.ts';

const NS = 1_000_000;
const SEC = 1000 * NS;
export const FLEET_STREAM = 'FLEET';
export const AUDIT_STREAM = 'AUDIT';
/** Dedup window: a re-published action id inside it is dropped by the server. */
export const DEDUP_WINDOW_MS = 10 * 60 * 1000;

export const BUCKETS = {
  fleetState: 'fleet-state',
  incidents: 'incidents',
  locks: 'locks',
  workflows: 'workflows',
  /** Each agent instance's heartbeat (agents/runtime/heartbeat.ts); entries age out after a day. */
  agents: 'agents',
  notify: 'notify',
} as const;
export type BucketName = (typeof BUCKETS)[keyof typeof BUCKETS];

export interface FleetKv {
  fleetState: KV;
  incidents: KV;
  locks: KV;
  workflows: KV;
  agents: KV;
  /** Notification groups, their outbox and the notifiers' health (the notify agent). */
  notify: KV;
}

function fleetConfig(replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name: FLEET_STREAM,
    subjects: FLEET_OWN_SUBJECTS,
    // nats-server 2.9 keeps one source per stream name, so AUDIT owns actions+decisions and
    // FLEET sources it whole: FLEET still holds every persisted subject, in one replayable log.
    sources: [{ name: AUDIT_STREAM }],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: 7 * 24 * 3600 * SEC,
    max_bytes: 1024 * 1024 * 1024,
    duplicate_window: DEDUP_WINDOW_MS * NS,
    num_replicas: replicas,
  };
}

function auditConfig(replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name: AUDIT_STREAM,
    subjects: AUDIT_STREAM_SUBJECTS,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_age: 365 * 24 * 3600 * SEC,
    duplicate_window: DEDUP_WINDOW_MS * NS,
    num_replicas: replicas,
  };
}

// A fresh JetStream server may need a moment before it answers API requests.
const withRetry = <T>(fn: () => Promise<T>, attempts = 20): Promise<T> => retry(fn, { attempts, baseMs: 100, maxMs: 1000 });

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  const name = cfg.name;
  try {
    const info = await jsm.streams.info(name);
    const { name: _n, storage: _s, ...update } = cfg;
    void _n;
    void _s;
    // replicas only ever go up here: a client that sees one server must not shrink a cluster's stream
    update.num_replicas = Math.max(info.config.num_replicas ?? 1, cfg.num_replicas ?? 1);
    await jsm.streams.update(name, { ...info.config, ...update });
  } catch (e) {
    if ((e as { name?: string }).name === 'StreamNotFoundError' || /not found/i.test(String((e as Error).message))) {
      await jsm.streams.add(cfg);
    } else {
      throw e;
    }
  }
}

/** Replicas for streams and buckets created here: 3 on a cluster (what losing one server
 *  without losing data takes), 1 on a single server. Existing streams and buckets keep theirs. */
export function defaultReplicas(nc: NatsConnection): number {
  return nc.info?.cluster ? 3 : 1;
}

async function exists(jsm: JetStreamManager, stream: string): Promise<boolean> {
  try {
    await jsm.streams.info(stream);
    return true;
  } catch (e) {
    if ((e as { name?: string }).name === 'StreamNotFoundError' || /not found/i.test(String((e as Error).message))) return false;
    throw e;
  }
}

export async function ensureJetStream(nc: NatsConnection, opts: { manage?: boolean; replicas?: number } = {}): Promise<{ jsm: JetStreamManager; kv: FleetKv }> {
  const replicas = opts.replicas ?? defaultReplicas(nc);
  // a cluster electing its leaders may need longer before it answers API requests
  const attempts = replicas > 1 ? 10 : 5;
  const jsm = await withRetry(() => jetstreamManager(nc, { timeout: 5000 }));
  for (const cfg of [auditConfig(replicas), fleetConfig(replicas)]) {
    if (opts.manage || !(await withRetry(() => exists(jsm, cfg.name), attempts))) await withRetry(() => ensureStream(jsm, cfg), attempts);
  }
  const kvm = new Kvm(nc);
  const open = async (bucket: string, history = 1, ttl?: number) => {
    if (!opts.manage && (await withRetry(() => exists(jsm, `KV_${bucket}`), attempts))) return kvm.open(bucket);
    return withRetry(() => kvm.create(bucket, { history, storage: StorageType.File, replicas, ...(ttl ? { ttl } : {}) }), attempts);
  };
  const kv: FleetKv = {
    fleetState: await open(BUCKETS.fleetState),
    incidents: await open(BUCKETS.incidents, 5),
    locks: await open(BUCKETS.locks),
    workflows: await open(BUCKETS.workflows, 5),
    agents: await open(BUCKETS.agents, 1, 24 * 3600 * 1000),
    notify: await open(BUCKETS.notify),
  };
  // `up` and `init`: now, while every server is there (agents open them: openLeaseStores)
  if (opts.manage) await withRetry(() => ensureLeaseStores(nc, jsm), attempts);
  return { jsm, kv };
}

/** Sensing's node leases live in lease stores of their own, not in fleet-state: on a cluster three
 *  single-replica buckets, each on a server of its own (placement tag `leaseStoreTag(i)`, which `up
 *  --nats-cluster` gives its servers), and a lease counts when a majority of them hold it
 *  (agents/sensing/partition.ts). A replicated bucket cannot be written while its stream elects a
 *  leader, and nats-server 2.9 takes 4–9 s for that when the server leading it dies (more on a
 *  loaded host): with the leases in fleet-state, a sensing replica that died with that server was
 *  taken over only after 6.4–8.4 s (bench/scale), and the live replicas' leases ran out meanwhile.
 *  A single-replica bucket has no election: losing any one server leaves two stores that answer at
 *  once. On a single server, one store. */
export const LEASE_STORE_PREFIX = 'sensing-leases-';
export const leaseStoreNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `${LEASE_STORE_PREFIX}${i + 1}`);
/** The server tag a lease store is placed by (the i-th store, 0-based). */
export const leaseStoreTag = (i: number): string => `homeostat-lease-${i + 1}`;
/** How many lease stores: 3 on a cluster, 1 on a single server (the same rule as the replicas). */
export const leaseStoreCount = (nc: NatsConnection): number => (defaultReplicas(nc) > 1 ? 3 : 1);

const notFound = (e: unknown) => (e as { name?: string }).name === 'StreamNotFoundError' || /not found/i.test(String((e as Error).message));

/** Create the lease stores that are missing. Each goes to the server tagged for it. A cluster
 *  without those tags (servers started elsewhere) gets three replicated stores instead: placed by
 *  JetStream, single-replica ones all landed on one server (nats-server 2.9.10), whose loss
 *  would take every lease; replicated, a lost server's stores elect a leader (as fleet-state
 *  does) and the majority waits for that at worst. The answer says where each one is. */
export async function ensureLeaseStores(nc: NatsConnection, jsm: JetStreamManager, timeoutMs = 5000): Promise<{ store: string; server?: string }[]> {
  const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }));
  const names = leaseStoreNames(leaseStoreCount(nc));
  return Promise.all(names.map(async (name, i) => {
    const info = await jsm.streams.info(`KV_${name}`).catch((e: unknown) => {
      if (notFound(e)) return undefined;
      throw e;
    });
    if (info) return { store: name, server: info.cluster?.leader };
    const opts = { history: 1, storage: StorageType.File, replicas: 1 };
    if (names.length > 1) {
      const placed = await kvm.create(name, { ...opts, placement: { cluster: '', tags: [leaseStoreTag(i)] } }).then(() => true, () => false);
      if (!placed) await kvm.create(name, { ...opts, replicas: 3 });
    } else {
      await kvm.create(name, opts);
    }
    const now = await jsm.streams.info(`KV_${name}`).catch(() => undefined);
    return { store: name, server: now?.cluster?.leader };
  }));
}

/** Handles on the lease stores whose every request gives up after `timeoutMs`. Bound without a
 *  request (a store on a dead server still gets its handle: its requests fail, the others make
 *  the majority); a missing one is created when this identity may (a first run without `up`). */
export async function openLeaseStores(nc: NatsConnection, timeoutMs: number): Promise<KV[]> {
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
  await ensureLeaseStores(nc, jsm, timeoutMs).catch(() => undefined);
  const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }));
  return Promise.all(leaseStoreNames(leaseStoreCount(nc)).map((name) => kvm.open(name)));
}

/** Empty the current-state buckets (fleet-state, incidents, locks, workflows, notify); the streams, i.e.
 *  the history, are kept. `up --sim` does this because its twin starts fresh every time. */
export async function clearCurrentState(jsm: JetStreamManager): Promise<void> {
  for (const bucket of [...Object.values(BUCKETS), ...leaseStoreNames(3)]) {
    await jsm.streams.purge(`KV_${bucket}`).catch(() => undefined);
  }
}

/** A second handle on an existing bucket whose every request gives up after `timeoutMs` (the
 *  shared handles wait 5 s): for loops that must come round again quickly while the bucket's
 *  stream elects a new leader (the singletons' leases, cli/commands/agent.ts). */
export async function openKvWithTimeout(nc: NatsConnection, bucket: string, timeoutMs: number): Promise<KV> {
  return new Kvm(jetstream(nc, { timeout: timeoutMs })).open(bucket);
}
