// No Docker engine here: parse compose.yaml and check every command it names exists in the CLI.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/main.ts';
import { AGENT_NAMES } from '../agents/mod.ts';
import { identityOfAgent } from '../bus/mod.ts';

interface Service {
  command?: string[];
  image?: string;
  profiles?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };

describe('compose.yaml', () => {
  it('has nats with JetStream and a volume, ollama, one service per agent, and a sim profile', () => {
    const s = compose.services;
    // a three-server cluster, every server with JetStream, a name and routes to all three
    const servers = ['nats', 'nats-2', 'nats-3'];
    for (const n of servers) {
      expect(s[n].command, n).toEqual(expect.arrayContaining(['-js', '--cluster_name', '--routes']));
      const routes = s[n].command![s[n].command!.indexOf('--routes') + 1].split(',');
      expect(routes.map((r) => new URL(r).hostname).sort(), n).toEqual(servers);
    }
    expect(s.ollama.image).toMatch(/^ollama\//);
    for (const a of AGENT_NAMES) expect(s[a]?.command?.slice(0, 3), a).toEqual(['homeostat', 'agent', a]);
    expect(s.sim.profiles).toEqual(['sim']);
    for (const a of AGENT_NAMES) expect(s[a].environment?.NATS_URL).toBe('nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222');
  });

  it('provisions identities first: init writes them, the NATS servers start on their authorization, init-streams creates the streams, then the agents start as themselves', () => {
    const s = compose.services;
    const completed = { condition: 'service_completed_successfully' };
    expect(compose.volumes).toHaveProperty('homeostat');
    // init: one-shot, writes the volume
    expect(s.init.command).toEqual(['homeostat', 'init', '--data-dir', '/homeostat']);
    expect(s.init.volumes).toContain('homeostat:/homeostat');
    expect(s.init.restart).toBe('no');
    // every server reads init's authorization block (included by server-N.conf, with the tag of
    // sensing's lease store N: one store per server), after init completed
    for (const [i, n] of ['nats', 'nats-2', 'nats-3'].entries()) {
      expect(s[n].command!.slice(0, 2), n).toEqual(['-c', `/homeostat/nats/server-${i + 1}.conf`]);
      expect(s[n].volumes, n).toContain('homeostat:/homeostat:ro');
      expect(s[n].depends_on, n).toEqual({ init: completed });
    }
    // init-streams: the streams as admin, once the servers run
    const streams = s['init-streams'];
    expect(streams.command!.slice(0, 4)).toEqual(['homeostat', 'init', '--data-dir', '/homeostat']);
    expect(streams.command![streams.command!.indexOf('--nats') + 1]).toBe('nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222');
    expect(Object.keys(streams.depends_on ?? {}).sort()).toEqual(['nats', 'nats-2', 'nats-3']);
    expect(streams.restart).toBe('no');
    // every agent: after init-streams, its own identity, the trust file, the volume read-only
    for (const a of AGENT_NAMES) {
      expect(s[a].depends_on, a).toMatchObject({ 'init-streams': completed });
      expect(s[a].environment?.NATS_CREDS, a).toBe(`/homeostat/creds/${identityOfAgent(a)}.nk`);
      expect(s[a].environment?.HOMEOSTAT_TRUST_FILE, a).toBe('/homeostat/creds/trust.json');
      expect(s[a].volumes, a).toContain('homeostat:/homeostat:ro');
    }
    // the console approves as the operator
    expect(s.console.environment?.NATS_CREDS).toBe('/homeostat/creds/operator.nk');
  });

  it('every service command exists in the CLI and accepts its flags (--help exits 0)', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      if (!svc.command || svc.command[0] !== 'homeostat') continue;
      const [, cmd, ...rest] = svc.command;
      expect(Object.keys(COMMANDS), name).toContain(cmd);
      if (cmd === 'agent') expect(AGENT_NAMES as readonly string[]).toContain(rest[0]);
      const flags = rest.filter((a) => a.startsWith('--'));
      const r = spawnSync(process.execPath, ['bin/homeostat.js', cmd, ...(cmd === 'agent' ? [rest[0]] : []), ...flags.filter((f) => f === '--http'), '--help'], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
      for (const f of flags) expect(r.stdout, `${name} flag ${f}`).toContain(f);
    }
  }, 120_000); // one CLI process per service: slow on a loaded 2-core machine
});
