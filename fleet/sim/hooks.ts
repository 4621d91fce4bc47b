// Guest hookscripts as PVE runs them (PVE::GuestHelpers::exec_hookscript): the guest's
// `hookscript` volume (`<storage>:snippets/<file>`) is executed as `<file> <vmid> <phase>` on
// pre-start, post-start, pre-stop and post-stop (post-stop also after a crash). A failing
// pre-start aborts the start; any other failure is a warning. The twin runs the real script
// (deploy/pve/homeostat-hook by default) from its snippets directory, with `env` added.
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../core/mod.ts';
import type { SimGuest } from './model.ts';

export const HOOK_PHASES = ['pre-start', 'post-start', 'pre-stop', 'post-stop'] as const;
export type HookPhase = (typeof HOOK_PHASES)[number];

const RUN_TIMEOUT_MS = 30_000;

/** deploy/pve of this checkout (from the sources or from dist/). */
export function defaultSnippetsDir(): string {
  for (const rel of ['../../deploy/pve', '../../../deploy/pve']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(dir)) return dir;
  }
  return fileURLToPath(new URL('../../deploy/pve', import.meta.url));
}

export interface HookResult {
  /** Lines the script printed (they go into the task log, as on PVE). */
  output: string[];
  /** PVE's message when the script could not run or failed. */
  error?: string;
}

export class HookRunner {
  /** Added to the script's environment, e.g. HOMEOSTAT_HOOK_URL (settable after start). */
  env: Record<string, string> = {};
  private running = 0;

  constructor(
    private readonly snippetsDir: string,
    private readonly log: Logger,
  ) {}

  /** Scripts still executing (tests and shutdown wait on it). */
  inFlight(): number {
    return this.running;
  }

  /** check_hookscript: a snippet volume of an existing, executable file. */
  private scriptPath(volume: string): string {
    const m = /^([a-zA-Z][a-zA-Z0-9._-]*):snippets\/([^/]+)$/.exec(volume);
    if (!m) throw new Error(`'${volume}' is not in the snippets directory`);
    const path = join(this.snippetsDir, m[2]);
    if (!existsSync(path)) throw new Error(`script '${volume}' does not exist`);
    try {
      accessSync(path, constants.X_OK);
    } catch {
      throw new Error(`script '${volume}' is not executable`);
    }
    return path;
  }

  async run(g: SimGuest, phase: HookPhase): Promise<HookResult> {
    const volume = g.config.hookscript;
    if (!volume) return { output: [] };
    this.running++;
    try {
      const path = this.scriptPath(volume);
      const { code, out } = await new Promise<{ code: number | string | null; out: string }>((resolve) => {
        // the node's /etc/homeostat/hook.env is the twin's `env`; HOMEOSTAT_NODE: the hook runs on the guest's node
        const env = { ...process.env, HOMEOSTAT_HOOK_CONF: '/dev/null', ...this.env, HOMEOSTAT_NODE: g.node };
        execFile(path, [String(g.vmid), phase], { env, timeout: RUN_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
          resolve({ code: err ? ((err as NodeJS.ErrnoException & { code?: number | string }).code ?? 1) : 0, out: `${stdout}${stderr}` });
        });
      });
      const output = out.split('\n').filter(Boolean);
      if (code === 0) return { output };
      return { output, error: `hookscript error for ${g.vmid} on ${phase}: command '${path} ${g.vmid} ${phase}' failed: exit code ${code}` };
    } catch (e) {
      return { output: [], error: `hookscript error for ${g.vmid} on ${phase}: ${(e as Error).message}` };
    } finally {
      this.running--;
    }
  }

  /** Runs the hook where no task waits on it (post-stop after a crash): the outcome is only logged. */
  fire(g: SimGuest, phase: HookPhase): void {
    if (!g.config.hookscript) return;
    void this.run(g, phase).then((r) => {
      if (r.error) this.log.warn({ vmid: g.vmid, phase, output: r.output.slice(-5) }, r.error);
      else this.log.debug({ vmid: g.vmid, phase }, 'hookscript ran');
    });
  }
}
