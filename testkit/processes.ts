// Processes of a running `homeostat up --replicas N` (Linux: ps and /proc): to SIGKILL one agent
// mid-work the way an operator's worst day would.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The pid of the `homeostat agent <agent>` child of `upPid` as it is now (a restart changes it). */
export function agentProcessPid(upPid: number, agent: string): number | undefined {
  const out = spawnSync('ps', ['-o', 'pid=', '--ppid', String(upPid)], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of out.split('\n').map((l) => Number(l.trim())).filter(Boolean)) {
    let argv: string[] = [];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    const i = argv.indexOf('agent');
    if (i >= 0 && argv[i + 1] === agent) return pid;
  }
  return undefined;
}
