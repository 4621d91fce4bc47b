// Notification groups in the `notify` KV bucket (key `group.<groupKey>`), changed only by
// compare-and-set: replicas of the notify agent and a restarted one work on the same records, so
// a notification is planned once and each delivery claimed once. A watch keeps a local copy for
// the dispatcher's scan; every change re-reads the record first.
import type { KV } from '@nats-io/kv';
import { kvCas, kvGet, kvList, orderedConsumer, token, type Versioned } from '../../bus/mod.ts';
import type { Logger } from '../../core/mod.ts';
import { NotifyGroup } from './model.ts';

export const groupKvKey = (groupKey: string) => `group.${token(groupKey)}`;
const PREFIX = 'group.';
const dec = new TextDecoder();

/** `fn` sees the current group (undefined: none) and returns the next one, null to delete it, or
 *  undefined to leave it. Resolves with what was written (undefined: nothing). */
export type Mutation = (cur: NotifyGroup | undefined) => NotifyGroup | null | undefined;

export class GroupStore {
  private readonly cache = new Map<string, NotifyGroup>();
  private watching?: Promise<void>;
  private stopWatch?: () => void;

  constructor(private readonly kv: KV, private readonly log: Logger) {}

  /** Load the groups and follow changes (other replicas' writes included). */
  async start(): Promise<void> {
    const w = await orderedConsumer(() => this.kv.watch({ key: `${PREFIX}>`, include: 'updates' }), 'a watch of notify records');
    this.stopWatch = () => w.stop();
    this.watching = (async () => {
      for await (const e of w) {
        if (e.operation !== 'PUT') {
          this.cache.delete(e.key);
          continue;
        }
        try {
          const r = NotifyGroup.safeParse(JSON.parse(dec.decode(e.value)));
          if (r.success) this.cache.set(e.key, r.data);
        } catch {
          this.log.warn({ key: e.key }, 'invalid notification group in KV ignored');
        }
      }
    })();
    // what was there before the watch began (a change the watch already saw is newer)
    const now = await kvList(this.kv, PREFIX, NotifyGroup);
    for (const [k, g] of now) if (!this.cache.has(k)) this.cache.set(k, g);
  }

  groups(): [string, NotifyGroup][] {
    return [...this.cache.entries()];
  }

  get(kvKey: string): NotifyGroup | undefined {
    return this.cache.get(kvKey);
  }

  /** Read, change, compare-and-set; again on a conflict (another replica wrote in between). */
  async mutate(kvKey: string, fn: Mutation): Promise<NotifyGroup | null | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const cur: Versioned<NotifyGroup> | undefined = await kvGet(this.kv, kvKey, NotifyGroup);
      const next = fn(cur?.value);
      if (!cur) this.cache.delete(kvKey);
      if (next === undefined) return undefined;
      if (next === null) {
        if (!cur) return undefined;
        try {
          await this.kv.delete(kvKey, { previousSeq: cur.revision });
          this.cache.delete(kvKey);
          return null;
        } catch {
          continue;
        }
      }
      const rev = await kvCas(this.kv, kvKey, next, cur?.revision ?? 0);
      if (rev !== undefined) {
        this.cache.set(kvKey, next);
        return next;
      }
    }
    throw new Error(`notification group ${kvKey}: too many concurrent changes`);
  }

  async stop(): Promise<void> {
    this.stopWatch?.();
    await this.watching?.catch(() => undefined);
  }
}
