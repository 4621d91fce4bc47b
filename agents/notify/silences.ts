// `homeostat silence <vmid|node> <duration>`: nothing new is told about a silenced guest (or any
// guest of a silenced node) until the silence ends. Resolutions still go through, so a group
// already announced can close. Silences live in fleet-state (the decision agent keeps them).
import { activeSilences, silenceFor, type Bus, type SilenceRecord } from '../../bus/mod.ts';
import type { Logger } from '../../core/mod.ts';
import type { Op } from './model.ts';

/** Read at most this often: a burst of messages costs one KV listing. */
const CACHE_MS = 1000;

export class SilenceFilter {
  private cached: { at: number; list: SilenceRecord[] } | undefined;

  constructor(private readonly bus: Bus, private readonly log: Logger) {}

  private async list(now: number): Promise<SilenceRecord[]> {
    if (this.cached && now - this.cached.at < CACHE_MS) return this.cached.list;
    const list = await activeSilences(this.bus.kv.fleetState, now).catch((e: unknown) => {
      this.log.warn({ err: (e as Error).message }, 'could not read silences; notifying as if none');
      return [];
    });
    this.cached = { at: now, list };
    return list;
  }

  async filter(ops: Op[], now = Date.now()): Promise<Op[]> {
    if (!ops.some((o) => o.op === 'upsert')) return ops;
    const list = await this.list(now);
    if (!list.length) return ops;
    return ops.filter((o) => {
      if (o.op !== 'upsert') return true;
      const s = silenceFor(list, { vmid: o.item.vmid, node: o.item.node }, now);
      if (s) this.log.info({ group: o.group, item: o.item.key, silence: s.id, until: s.until }, 'silenced: not notified');
      return !s;
    });
  }
}
