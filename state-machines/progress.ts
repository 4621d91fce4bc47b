// What a machine hands to its `emitProgress` action. The runner publishes it on
// `fleet.workflows.<kind>.<workflowId>.<event>`; the fields line up with bus/schemas WorkflowEvent.

export interface Progress<E extends string = string> {
  event: E;
  vmid?: number;
  node?: string;
  layer?: number;
  /** JSON-serialisable extras (attempt, reason, blockers, the plan, the report, …). */
  detail?: Record<string, unknown>;
}

/** Error text that survives JSON: keeps a stable `code` when the thrower set one. */
export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : e.message;
  }
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}
