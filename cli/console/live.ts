// The console's live feed: one set of NATS subscriptions per console process, fanned out to every
// open page over Server-Sent Events. Each fleet message goes out as it arrives (`event: fleet`);
// a fresh status snapshot (`event: status`) follows any change, at most every `snapshotMs`, so a
// page never has to reload or poll. Metrics samples are not forwarded (too many, not shown).
import type { ServerResponse } from 'node:http';
import { decode, patterns, type Bus, type Stoppable } from '../../bus/mod.ts';
import type { Logger } from '../../core/mod.ts';

const FORWARDED = [patterns.events, patterns.alerts, patterns.incidents, patterns.decisions, patterns.actions, patterns.workflows, patterns.dlq];
/** A page that stops reading is dropped once this much is buffered for it. */
const MAX_BUFFERED = 4 * 1024 * 1024;

export interface LiveFeed {
  attach(res: ServerResponse): void;
  clients(): number;
  stop(): Promise<void>;
}

export function startLiveFeed(opts: { bus: Bus; log: Logger; snapshot: () => Promise<unknown>; snapshotMs?: number; heartbeatMs?: number }): LiveFeed {
  const clients = new Set<ServerResponse>();
  const snapshotMs = opts.snapshotMs ?? 250;
  const send = (res: ServerResponse, event: string, data: unknown) => {
    if (res.writableLength > MAX_BUFFERED) {
      res.destroy();
      clients.delete(res);
      return;
    }
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const broadcast = (event: string, data: unknown) => {
    for (const c of clients) send(c, event, data);
  };

  // snapshots: one in flight at a time, the next one after `snapshotMs`, only when something changed
  let dirty = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const refresh = () => {
    dirty = true;
    if (running || timer || stopped || !clients.size) return;
    timer = setTimeout(() => {
      timer = undefined;
      dirty = false;
      running = opts.snapshot().then(
        (s) => broadcast('status', s),
        (e: unknown) => opts.log.warn({ err: (e as Error).message }, 'console: status snapshot failed'),
      ).finally(() => {
        running = undefined;
        if (dirty) refresh();
      });
    }, snapshotMs);
  };

  const subs: Stoppable[] = FORWARDED.map((pattern) => {
    const sub = opts.bus.nc.subscribe(pattern, {
      callback: (_e, m) => {
        const r = decode(m.subject, m.data);
        if (!r.ok) return; // the agents dead-letter it; the page shows the dead letter instead
        if (clients.size) broadcast('fleet', { subject: m.subject, type: r.env.type, ts: r.env.ts, id: r.env.id, data: r.env.data });
        refresh();
      },
    });
    return { stop: async () => sub.unsubscribe() };
  });
  const heartbeat = setInterval(() => {
    for (const c of clients) c.write(': keep-alive\n\n');
    refresh();
  }, opts.heartbeatMs ?? 5000);

  return {
    attach(res) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.write('retry: 1000\n\n');
      clients.add(res);
      res.on('close', () => clients.delete(res));
      void opts.snapshot().then((s) => send(res, 'status', s), (e: unknown) => send(res, 'problem', { message: (e as Error).message }));
    },
    clients: () => clients.size,
    async stop() {
      stopped = true;
      clearInterval(heartbeat);
      if (timer) clearTimeout(timer);
      await Promise.all(subs.map((s) => s.stop()));
      await running;
      for (const c of clients) c.end();
      clients.clear();
    },
  };
}
