// `up --replicas N`: every agent as N separate `homeostat agent <name>` processes (plain node on
// dist/), each waiting for its ready line. A replica that dies is started again after a pause;
// the others carry on meanwhile (that is what the replicas are for).
import { spawn, type ChildProcess } from 'node:child_process';
import { PARENT_PIPE_ENV } from './signals.ts';
import { fileURLToPath } from 'node:url';
import { HomeostatError } from '../core/mod.ts';
import type { AgentName } from '../agents/mod.ts';
import type { AppLogger } from '../core/mod.ts';


export interface AgentProcess {
  agent: AgentName;
  replica: number;
  pid: number;
  /** Its own Prometheus endpoint (with `metrics`), from its ready line. */
  metricsUrl?: string;
}

export interface AgentProcesses {
  list(): AgentProcess[];
  stop(): Promise<void>;
}

export interface AgentProcessOptions {
  agents: readonly AgentName[];
  replicas: number;
  env: (agent: AgentName) => NodeJS.ProcessEnv;
  log: AppLogger;
  /** Extra arguments for one replica (the Alertmanager receiver belongs to sensing's first). */
  argsFor?: (agent: AgentName, replica: number) => string[];
  restartDelayMs?: number;
  /** Each process serves its metrics on a free loopback port (`up` merges them). */
  metrics?: boolean;
}

/** bin/homeostat.js from dist/cli/ or from cli/ (tests run the sources). */
export function binPath(): string {
  const here = fileURLToPath(import.meta.url);
  return here.includes('/dist/cli/') ? fileURLToPath(new URL('../../bin/homeostat.js', import.meta.url)) : fileURLToPath(new URL('../bin/homeostat.js', import.meta.url));
}

export async function startAgentProcesses(opts: AgentProcessOptions): Promise<AgentProcesses> {
  const slots = new Map<string, { agent: AgentName; replica: number; child?: ChildProcess; metricsUrl?: string }>();
  let stopping = false;
  const restartDelay = opts.restartDelayMs ?? 1000;

  const launch = (agent: AgentName, replica: number): Promise<void> => {
    const key = `${agent}#${replica}`;
    const child = spawn(process.execPath, [binPath(), 'agent', agent, ...(opts.metrics ? ['--metrics-port', '0'] : []), ...(opts.argsFor?.(agent, replica) ?? [])], {
      // stdin stays open as a lifeline: when `up` dies in any way it closes and the agent stops (cli/signals.ts)
      env: { ...opts.env(agent), HOMEOSTAT_REPLICA: String(replica), [PARENT_PIPE_ENV]: '1' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const slot: { agent: AgentName; replica: number; child?: ChildProcess; metricsUrl?: string } = { agent, replica, child };
    slots.set(key, slot);
    return new Promise<void>((resolve, reject) => {
      let out = '';
      let ready = false;
      child.stdout!.on('data', (b: Buffer) => {
        if (ready) return;
        out += b.toString();
        const line = out.split('\n').find((l) => l.includes('"ready":true'));
        if (line !== undefined && (out.indexOf(line) + line.length < out.length)) {
          ready = true;
          try {
            slot.metricsUrl = (JSON.parse(line) as { metricsUrl?: string }).metricsUrl;
          } catch {
            // a ready line we cannot read: the process runs, its metrics are not merged
          }
          resolve();
        }
      });
      child.once('error', (e) => reject(new HomeostatError('HOMEOSTAT_ERR_AGENT_PROCESS', `cannot start agent ${agent}: ${e.message}`)));
      child.once('exit', (code, signal) => {
        if (!ready) {
          reject(new HomeostatError('HOMEOSTAT_ERR_AGENT_PROCESS', `agent ${agent} (replica ${replica}) exited before it was ready (${signal ?? code})`));
          return;
        }
        if (stopping) return;
        opts.log.warn({ agent, replica, pid: child.pid, code, signal }, 'agent process died; starting it again');
        restart(agent, replica);
      });
    });
  };

  /** Again and again until it is up (a cluster electing leaders may refuse a start for a while). */
  const restart = (agent: AgentName, replica: number, attempt = 0): void => {
    setTimeout(() => {
      if (stopping) return;
      launch(agent, replica).catch((e: unknown) => {
        opts.log.error({ agent, replica, err: (e as Error).message }, 'agent restart failed; trying again');
        restart(agent, replica, attempt + 1);
      });
    }, Math.min(restartDelay * 2 ** attempt, 10_000)).unref();
  };

  const stop = async () => {
    stopping = true;
    await Promise.all([...slots.values()].map(({ child }) => new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      child.kill('SIGTERM');
    })));
  };

  try {
    // one agent kind at a time, in the order given (action before decision, sensing last), replicas together
    for (const agent of opts.agents) {
      await Promise.all(Array.from({ length: opts.replicas }, (_, i) => launch(agent, i + 1)));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    list: () => [...slots.values()].filter((s) => s.child?.pid).map((s) => ({ agent: s.agent, replica: s.replica, pid: s.child!.pid!, ...(s.metricsUrl ? { metricsUrl: s.metricsUrl } : {}) })),
    stop,
  };
}
