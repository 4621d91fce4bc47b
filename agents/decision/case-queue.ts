// One evaluation per case at a time: every trigger of a case (incident event, action outcome,
// approval, timer) queues behind the one before it.
import type { Logger } from '../../core/mod.ts';

export class CaseQueue {
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly log: Logger) {}

  /** The returned promise rejects on failure (a consumer then redelivers); the chain itself only
   *  logs, so the next trigger still runs. */
  serial<T>(caseId: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.chains.get(caseId) ?? Promise.resolve()).then(fn);
    const settled = run.then(
      () => undefined,
      (e: unknown) => this.log.error({ caseId, err: (e as Error).message }, 'decision failed'),
    );
    this.chains.set(caseId, settled);
    void settled.then(() => {
      if (this.chains.get(caseId) === settled) this.chains.delete(caseId);
    });
    return run;
  }

  /** Fire and forget: errors are already logged by the chain. */
  background(caseId: string, fn: () => Promise<void>): void {
    this.serial(caseId, fn).catch(() => undefined);
  }

  /** Wait for the work already queued (tests, clean stop). */
  async idle(): Promise<void> {
    while (this.chains.size) await Promise.allSettled([...this.chains.values()]);
  }
}
