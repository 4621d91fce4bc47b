// No Docker engine here: parse compose.yaml and check every command it names exists in the CLI.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/main.ts';
import { AGENT_NAMES } from '../agents/mod.ts';

interface Service { command?: string[]; image?: string; profiles?: string[]; environment?: Record<string, string> }
const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as { services: Record<string, Service> };

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
