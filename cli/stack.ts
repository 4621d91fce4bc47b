// The embedded default: nats-server (unless --nats), the simulator (with --sim), then agents,
// each on its own NATS connection as it would be in compose. Used by `up` and the e2e tests.
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HomeostatError, settlesWithin, type AppLogger } from '../core/mod.ts';
import { Bus, clearCurrentState, identityOfAgent, type Identity } from '../bus/mod.ts';
import { AGENT_NAMES, createMetrics, loadAgent, startHeartbeat, type Heartbeat, type AgentHandle, type AgentName, type AgentOptions, type Config, type Metrics, type PveAccess } from '../agents/mod.ts';
import type { Fleet } from '../fleet/manifest.ts';
import type { PveApi } from '../fleet/pve-types.ts';
import { startNatsServer, type NatsServerHandle } from './nats-server.ts';
import { startNatsCluster } from './nats-cluster.ts';
import { startAgentProcesses, type AgentProcesses } from './agent-processes.ts';
import { ephemeralKeyring, loadOrCreateKeyring, trustedKeys, type Keyring } from './keyring.ts';
import type { SimulatorHandle } from '../fleet/sim/mod.ts';

export interface StackOptions {
  config: Config;
  fleet: Fleet;
  log: AppLogger;
  /** Use this NATS server instead of spawning one. */
  natsUrl?: string;
  dataDir?: string;
  natsPort?: number;
  /** Start this many local nats-servers as one cluster (routes, JetStream, 3 replicas). */
  natsCluster?: number;
  /** Run every agent as this many separate processes instead of in this one. */
  replicas?: number;
  /** Per agent and replica: extra `homeostat agent` arguments (with `replicas`). */
  agentArgs?: (agent: AgentName, replica: number) => string[];
  /** The fleet manifest's file, for agent processes (default: the reference fleet). */
  fleetFile?: string;
  /** `hooks`: every guest runs deploy/pve/homeostat-hook, reporting to sensing's receiver (needs options.sensing.alertmanagerPort). */
  sim?: { port?: number; http?: boolean; timeScale?: number; tokenId?: string; tokenSecret?: string; keepState?: boolean; hooks?: boolean };
  agents?: readonly AgentName[];
  /** Each agent's own options (typed per agent), and the heartbeat's. */
  options?: AgentOptions;
  /** The deployment's identities. Default: `<dataDir>/creds/` with the embedded nats-server (which
   *  then runs with authentication on), else fresh keys in memory (used for signing only). */
  keyring?: Keyring;
  /** Connect with the keyring's identities (the server at `natsUrl` has them; tests). */
  auth?: boolean;
  /** One agent in its own process (`homeostat agent`): it connects and signs as this identity
   *  (NATS_CREDS), trusts the keys of HOMEOSTAT_DECISION_KEYS / HOMEOSTAT_OPERATOR_KEYS, and
   *  leaves streams to `up`/`init`. */
  standalone?: { identity?: Identity };
  /** The process's metrics registry (one per process); a fresh one when absent. */
  metrics?: Metrics;
}

export interface Stack {
  natsUrl: string;
  /** The nats-servers this stack started (one, or the cluster's). */
  natsServers: { url: string; pid: number }[];
  /** With `replicas`: the agents' processes. */
  processes?: AgentProcesses;
  /** The operator's credentials file (CLI, console), when the identities are on disk. */
  natsCreds?: string;
  keyring: Keyring;
  pveUrl?: string;
  pveTokenId?: string;
  pveTokenSecret?: string;
  fingerprint?: string;
  sim?: SimulatorHandle;
  pve?: PveApi;
  /** What the agents got as `ctx.pveAccess` (an extra agent a test starts next to the stack needs it too). */
  pveAccess?: PveAccess;
  agents: Map<AgentName, AgentHandle>;
  /** Where the twin's hookscripts report (sim.hooks with a sensing receiver). */
  hookUrl?: string;
  /** Every agent of this stack registers its metrics here. */
  metrics: Metrics;
  /** Stop one agent (tests kill/restart agents this way). */
  stopAgent(name: AgentName): Promise<void>;
  startAgent(name: AgentName): Promise<void>;
  stop(): Promise<void>;
}

/** The agents that talk to the PVE API (the others get no client). */
const PVE_AGENTS: ReadonlySet<AgentName> = new Set(['sensing', 'action', 'workflows']);

/** How long one agent may take to stop before its connection is closed under it. */
const STOP_AGENT_MS = 5000;

// notify before the agents whose events it tells people about
const AGENT_ORDER: readonly AgentName[] = ['notify', 'action', 'decision', 'analysis', 'workflows', 'operator', 'sensing'];

export async function startStack(opts: StackOptions): Promise<Stack> {
  const { config, fleet, log } = opts;
  const metrics = opts.metrics ?? createMetrics();
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log.error({ err: (e as Error).message }, 'stop step failed'));
  };
  try {
    let natsUrl = opts.natsUrl;
    const natsServers: NatsServerHandle[] = [];
    let keyring = opts.keyring;
    let auth = opts.auth ?? false;
    const dataDir = opts.dataDir ?? '.homeostat';
    if (!natsUrl) {
      keyring ??= loadOrCreateKeyring(join(dataDir, 'creds'));
      auth = true;
      if (opts.natsCluster && opts.natsCluster > 1) {
        // every server of the cluster carries the same users and permissions
        const cluster = await startNatsCluster({ dataDir, size: opts.natsCluster, port: opts.natsPort ?? 4222, auth: keyring });
        natsUrl = cluster.url;
        natsServers.push(...cluster.servers);
        cleanups.push(() => cluster.stop());
        log.info({ natsUrl, pids: cluster.servers.map((s) => s.pid), creds: keyring.dir }, 'nats cluster started (authentication on)');
      } else {
        const nats = await startNatsServer({ dataDir: join(dataDir, 'nats'), port: opts.natsPort ?? 4222, auth: keyring });
        natsUrl = nats.url;
        natsServers.push(nats);
        cleanups.push(() => nats.stop());
        log.info({ natsUrl, pid: nats.pid, creds: keyring.dir }, 'nats-server started (authentication on)');
      }
    }
    keyring ??= ephemeralKeyring();
    const ring = keyring;
    const seedOf = (name: Parameters<Keyring['get']>[0]) => (auth ? ring.get(name).seed : undefined);

    // streams and buckets are created (or brought up to date) here, by the admin identity only
    if (!opts.standalone) {
      const admin = await Bus.connect({ servers: natsUrl, source: 'up', log, seed: seedOf('admin'), caFile: config.NATS_CA, manage: true });
      try {
        // the twin starts from its manifest, so homeostat's view of it starts fresh too (history stays)
        if (opts.sim && !opts.sim.keepState) await clearCurrentState(admin.jsm);
      } finally {
        await admin.stop();
      }
    }

    let sim: SimulatorHandle | undefined;
    let pveUrl = config.PVE_URL;
    let tokenId = config.PVE_TOKEN_ID;
    let tokenSecret = config.PVE_TOKEN_SECRET;
    let caPem = config.pveCaPem;
    if (opts.sim) {
      // loaded only when wanted: an agent process has no simulator in it
      const { defaultSnippetsDir, startSimulator } = await import('../fleet/sim/mod.ts');
      sim = await startSimulator({
        fleet,
        port: opts.sim.port ?? 8006,
        http: opts.sim.http ?? false,
        timeScale: opts.sim.timeScale,
        tokenId: opts.sim.tokenId ?? config.PVE_TOKEN_ID,
        tokenSecret: opts.sim.tokenSecret ?? config.PVE_TOKEN_SECRET,
        // without the script (a trimmed install) the twin's guests get no hook: a missing pre-start hook would stop every start
        hookscript: opts.sim.hooks && existsSync(join(defaultSnippetsDir(), 'homeostat-hook')) ? 'local:snippets/homeostat-hook' : undefined,
        log: log.child({ agent: 'sim' }),
      });
      cleanups.push(() => sim!.stop());
      pveUrl = sim.url;
      tokenId = sim.tokenId;
      tokenSecret = sim.tokenSecret;
      caPem = sim.caPem;
      log.info({ pveUrl, fingerprint: sim.fingerprint }, 'simulator started');
    }

    let pve: PveApi | undefined;
    // an agent process whose agent never calls PVE (analysis, decision, …) does not load the PVE
    // client (proxmox-api and undici: ~12 MB of RSS) nor opens its connections
    const wantsPve = !opts.standalone || (opts.agents ?? AGENT_NAMES).some((a) => PVE_AGENTS.has(a));
    if (pveUrl && (!tokenId || !tokenSecret)) {
      throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', 'PVE_TOKEN_ID: expected with PVE_URL (USER@REALM!TOKENID)');
    } else if (pveUrl && tokenId && tokenSecret && wantsPve) {
      const { createPveClient } = await import('../fleet/pve-client.ts');
      const client = createPveClient({ url: pveUrl, tokenId, tokenSecret, caPem, insecure: config.PVE_INSECURE, timeoutMs: config.PVE_TIMEOUT_MS, log: log.child({ agent: 'pve' }), onRequest: (e) => {
        metrics.pveRequests.inc({ method: e.method, status: e.status === undefined ? 'error' : String(e.status) });
        metrics.pveLatency.observe({ method: e.method }, e.ms / 1000);
      } });
      cleanups.push(() => client.close());
      pve = client;
    } else if (!pveUrl && wantsPve) {
      log.warn('no PVE API configured (PVE_URL or --sim): sensing and action stay idle');
    }

    const agents = new Map<AgentName, AgentHandle>();
    const buses = new Map<AgentName, Bus>();
    const beats = new Map<AgentName, Heartbeat>();
    const pveAccess: PveAccess | undefined = pve && pveUrl ? { url: pveUrl, tokenId, tokenSecret, caPem, insecure: config.PVE_INSECURE } : undefined;
    const given = opts.options ?? {};
    // the keys this deployment trusts, unless the caller (or, standalone, the environment) says
    const keys = trustedKeys(ring);
    const trust: AgentOptions = opts.standalone ? {} : {
      action: { decisionKeys: keys.decision },
      decision: { operatorKeys: keys.operators },
    };
    const optionsOf = <N extends AgentName>(name: N): NonNullable<AgentOptions[N]> => ({ ...trust[name], ...given[name] }) as NonNullable<AgentOptions[N]>;
    const startAgent = async <N extends AgentName>(name: N) => {
      const mod = await loadAgent(name);
      const alog = log.child({ agent: name });
      const solo = opts.standalone;
      const identity = solo ? solo.identity : ring.get(identityOfAgent(name));
      const bus = await Bus.connect({ servers: natsUrl!, source: name, log: alog, onDeadLetter: (family, reason) => metrics.deadLetters.inc({ family, reason }), seed: solo ? solo.identity?.seed : seedOf(identityOfAgent(name)), caFile: config.NATS_CA });
      const handle = await mod.start({ name, config, log: alog, bus, fleet, pve, pveAccess, options: optionsOf(name), identity, metrics });
      agents.set(name, handle);
      buses.set(name, bus);
      const beat = startHeartbeat({ bus, agent: name, fleet: fleet.name, log: alog, ...given.heartbeat, progress: handle.progress?.bind(handle) });
      beats.set(name, beat);
      void handle.stopped.then(async (r) => {
        await beat.stop();
        if (r instanceof Error) log.error({ agent: name, err: r.message }, 'agent stopped with an error');
      });
    };
    const stopAgent = async (name: AgentName) => {
      const h = agents.get(name);
      agents.delete(name);
      const bus = buses.get(name);
      bus?.interruptRetries();
      // NATS may be gone (its server killed first): a periodic task retrying a KV listing would
      // hold the stop for minutes. Offline, the connection is closed first, so what waits on NATS
      // fails at once; online or not, the agent gets a deadline, then its connection is closed.
      if (bus && !bus.online) {
        log.warn({ agent: name }, 'stopping while NATS is unreachable: what was not yet stored is left to redelivery and reconcile');
        await bus.abort();
      }
      if (h && !(await settlesWithin(h.stop(), STOP_AGENT_MS))) log.warn({ agent: name, waitedMs: STOP_AGENT_MS }, 'agent did not stop in time (NATS unreachable?): closing its connection');
      const beat = beats.get(name);
      if (beat && !(await settlesWithin(beat.stop(), STOP_AGENT_MS))) log.warn({ agent: name, waitedMs: STOP_AGENT_MS }, 'heartbeat did not stop in time');
      beats.delete(name);
      await buses.get(name)?.stop();
      buses.delete(name);
    };
    const wanted = opts.agents ?? AGENT_NAMES;
    let processes: AgentProcesses | undefined;
    if (opts.replicas) {
      // separate processes read what this one was given from their environment
      let caFile: string | undefined;
      if (caPem && sim) {
        caFile = join(dataDir, 'sim-ca.pem');
        writeFileSync(caFile, caPem);
      }
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        NATS_URL: natsUrl,
        ...(pveUrl ? { PVE_URL: pveUrl } : {}),
        ...(tokenId ? { PVE_TOKEN_ID: tokenId } : {}),
        ...(tokenSecret ? { PVE_TOKEN_SECRET: tokenSecret } : {}),
        ...(caFile ? { PVE_CA_FILE: caFile } : {}),
        ...(opts.fleetFile ? { HOMEOSTAT_FLEET: resolve(opts.fleetFile) } : {}),
        HOMEOSTAT_DECISION_KEYS: keys.decision.join(','),
        HOMEOSTAT_OPERATOR_KEYS: keys.operators.join(','),
      };
      const envFor = (agent: AgentName): NodeJS.ProcessEnv => {
        const creds = auth ? ring.file(identityOfAgent(agent)) : undefined;
        return creds ? { ...env, NATS_CREDS: creds } : env;
      };
      // each serves its metrics on a free loopback port: `up` merges them into its own /metrics
      processes = await startAgentProcesses({ agents: AGENT_ORDER.filter((a) => wanted.includes(a)), replicas: opts.replicas, env: envFor, log, argsFor: opts.agentArgs, metrics: true });
      cleanups.push(() => processes!.stop());
    } else {
      for (const name of AGENT_ORDER) if (wanted.includes(name)) await startAgent(name);
      cleanups.push(async () => {
        for (const name of [...AGENT_ORDER].reverse()) if (agents.has(name)) await stopAgent(name);
      });
    }

    // the twin's hookscripts report to sensing's receiver, as a PVE node's would
    // (with replicas, sensing's first replica listens on the port it was given)
    const amPort = given.sensing?.alertmanagerPort;
    const givenPort = opts.replicas && amPort !== undefined && amPort > 0 ? amPort : undefined;
    const receiverPort = (agents.get('sensing') as { alertmanagerPort?: number } | undefined)?.alertmanagerPort ?? givenPort;
    const hookUrl = sim && opts.sim?.hooks && receiverPort !== undefined ? `http://127.0.0.1:${receiverPort}/pve/hook` : undefined;
    if (sim && hookUrl) {
      sim.state.hooks.env.HOMEOSTAT_HOOK_URL = hookUrl;
      if (config.HOMEOSTAT_HOOK_TOKEN) sim.state.hooks.env.HOMEOSTAT_HOOK_TOKEN = config.HOMEOSTAT_HOOK_TOKEN;
    }

    return {
      natsUrl,
      natsServers: natsServers.map((n) => ({ url: n.url, pid: n.pid })),
      processes,
      natsCreds: ring.file('operator'),
      keyring: ring,
      pveUrl,
      pveTokenId: tokenId,
      pveTokenSecret: tokenSecret,
      fingerprint: sim?.fingerprint,
      sim,
      hookUrl,
      pve,
      pveAccess,
      agents,
      metrics,
      stopAgent,
      startAgent,
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
