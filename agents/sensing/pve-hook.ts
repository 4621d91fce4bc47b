// PVE hookscript reports (deploy/pve/homeostat-hook POSTs `{vmid, phase, node?, ts?}` to
// /pve/hook on sensing's receiver). A report is a hint, not a fact: sensing answers it with an
// immediate round against the PVE API, and only what the API confirms becomes an event. So a
// forged report can cost one extra poll, never a remediation.
import { timingSafeEqual, createHash } from 'node:crypto';
import { z } from 'zod';
import type { Fleet } from '../../fleet/manifest.ts';

export const HOOK_PATH = '/pve/hook';

export const HookReport = z.object({
  vmid: z.coerce.number().int().min(100).max(999_999_999),
  phase: z.enum(['pre-start', 'post-start', 'pre-stop', 'post-stop']),
  node: z.string().min(1).max(64).optional(),
  /** Unix seconds (or ms) when the hook ran on the node. */
  ts: z.number().optional(),
});
export type HookReport = z.infer<typeof HookReport>;

export type HookParse = { ok: true; report: HookReport; known: boolean } | { ok: false; error: string };

export function parseHookReport(body: unknown, fleet: Fleet): HookParse {
  const r = HookReport.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    return { ok: false, error: `${i.path.join('.') || 'body'}: ${i.message}` };
  }
  return { ok: true, report: r.data, known: fleet.byVmid.has(r.data.vmid) };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** `Authorization: Bearer <token>` when a token is configured; constant-time compare. */
export function hookAuthorized(header: string | undefined, token: string | undefined): boolean {
  if (!token) return true;
  const given = /^Bearer\s+(\S+)$/i.exec(header ?? '')?.[1];
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}
