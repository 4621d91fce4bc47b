// Console latency: a crash injected in the twin → the guest's event on NATS (baseline: what any
// subscriber gets) → the guest marked down on the console page in headless Chromium (or, without a
// browser, on the SSE stream). Goal: the page within 100 ms of NATS, so a crash is on screen within
// a second of sensing it.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { Bus, decode, patterns, type GuestEvent } from '../bus/mod.ts';
import { startStack } from '../cli/stack.ts';
import { startConsole } from '../cli/console/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { benchNats, emit, isMain, round, stats } from './harness.ts';
import { simApi } from '../testkit/mod.ts';

const PICK = [101, 159, 122, 100, 155, 124];
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function run(): Promise<void> {
  const nats = await benchNats();
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  manifest.policies = { senseIntervalMs: 500, cooldownMs: 0 };
  const fleet = buildFleet(manifest);
  const log = createLogger('warn');
  const stack = await startStack({ config: loadConfig({ LOG_LEVEL: 'warn' }), fleet, log, natsUrl: nats.url, sim: { port: 0, http: true, timeScale: 0.1 } });
  const bus = await Bus.connect({ servers: nats.url, source: 'bench' });
  const consoleBus = await Bus.connect({ servers: nats.url, source: 'console' });
  const server = await startConsole({ bus: consoleBus, fleet, log, port: 0 });
  const sim = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  const profile = mkdtempSync(join(tmpdir(), 'homeostat-bench-chromium-'));
  const browser = existsSync(CHROMIUM)
    ? await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'] })
    : undefined;
  // when each guest was first reported down on NATS
  const downAt = new Map<number, number>();
  const sub = bus.nc.subscribe(patterns.guestEvents, {
    callback: (_e, m) => {
      const r = decode<GuestEvent>(m.subject, m.data);
      if (r.ok && r.env.data.state !== 'running' && !downAt.has(r.env.data.vmid)) downAt.set(r.env.data.vmid, Date.now());
    },
  });
  try {
    const page = browser ? (browser.pages()[0] ?? (await browser.newPage())) : undefined;
    const seenOnPage = new Map<number, number>();
    if (page) {
      await page.goto(server.url);
      await page.waitForSelector('li.guest[data-state="running"]', { timeout: 30_000 });
      // stamped in the page with the same wall clock as this process (no round trip in the figure)
      await page.evaluate(`window.__downAt = {}; new MutationObserver(() => {
        for (const g of document.querySelectorAll('li.guest:not([data-state="running"])')) window.__downAt[g.getAttribute('data-vmid')] ??= Date.now();
      }).observe(document.body, { subtree: true, attributes: true, childList: true })`);
    }
    const sse = page ? undefined : await fetch(new URL('/api/live', server.url));
    if (sse) {
      void (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of sse.body!) {
          for (const m of decoder.decode(chunk as Uint8Array).matchAll(/"vmid":(\d+),[^\n]*"state":"(stopped|paused|unknown)"/g)) {
            const vmid = Number(m[1]);
            if (!seenOnPage.has(vmid)) seenOnPage.set(vmid, Date.now());
          }
        }
      })().catch(() => undefined);
    }
    await sleep(3000);
    const lags: number[] = [];
    const total: number[] = [];
    for (const vmid of PICK) {
      const t0 = Date.now();
      await sim.fault('crash', vmid);
      const until = Date.now() + 15_000;
      while ((!downAt.has(vmid) || !seenOnPage.has(vmid)) && Date.now() < until) {
        await sleep(20);
        const stamped = page ? ((await page.evaluate(`window.__downAt[${vmid}]`)) as number | undefined) : undefined;
        if (stamped !== undefined) seenOnPage.set(vmid, stamped);
      }
      if (downAt.has(vmid) && seenOnPage.has(vmid)) {
        lags.push(seenOnPage.get(vmid)! - downAt.get(vmid)!);
        total.push(seenOnPage.get(vmid)! - t0);
      }
      await sleep(4000); // healed before the next one
    }
    const lag = stats(lags);
    const all = stats(total);
    emit({
      bench: 'console', via: page ? 'chromium' : 'sse', crashes: PICK.length, seen: lags.length,
      nats_to_page_p50_ms: lag.p50, nats_to_page_max_ms: lag.max,
      fault_to_page_p50_ms: round(all.p50), fault_to_page_max_ms: round(all.max), sense_interval_ms: fleet.policies.senseIntervalMs,
      goal: 'p50: page <= NATS + 100 ms, fault -> page <= sense interval + 1000 ms',
      pass: lags.length === PICK.length && lag.p50 <= 100 && all.p50 <= fleet.policies.senseIntervalMs + 1000,
    });
  } finally {
    sub.unsubscribe();
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    await server.close();
    await consoleBus.stop();
    await sim.close();
    await bus.stop();
    await stack.stop();
    await nats.cleanup();
  }
}

if (isMain(import.meta.url)) await run();
