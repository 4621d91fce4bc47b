// The web console in a real headless Chromium against a real stack (nats-server, the simulator,
// every agent): all guests on the board, a crash injected in the twin shows and heals live, an
// approval given from the page runs the action, the chat answers. Skips where no Chromium exists.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { Bus } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { startConsole, type ConsoleServer } from '../cli/console/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { hasBrowser, launchBrowser } from './helpers/browser.ts';

let stack: TestStack;
let consoleBus: Bus;
let server: ConsoleServer;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let page: Page;
const errors: string[] = [];

describe.skipIf(!hasBrowser)('web console in Chromium', () => {
  beforeAll(async () => {
    // approvals wait long enough for a browser to click
    stack = await testStack({ source: 'console-test', options: { decision: { advisor: null } }, policies: { approvalTimeoutMs: 60_000 } });
    consoleBus = await Bus.connect({ servers: stack.natsUrl, source: 'console' });
    server = await startConsole({ bus: consoleBus, fleet: stack.fleet, log: createLogger('silent'), port: 0, signer: stack.keyring.get('operator').signer });
    browser = await launchBrowser();
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
  }, 90_000);
  afterAll(async () => {
    await browser?.dispose();
    await server?.close();
    await consoleBus?.stop();
    await stack?.stop();
  });

  const guest = (vmid: number) => page.locator(`li.guest[data-vmid="${vmid}"]`);

  it('lists every guest of the fleet on the board, live, with no page errors and nothing from outside', async () => {
    await expect.poll(() => page.locator('li.guest').count(), { timeout: 15_000 }).toBe(stack.fleet.guests.length);
    for (const g of stack.fleet.guests) await expect.poll(() => guest(g.vmid).getAttribute('data-state')).toBe('running');
    expect(await page.getByTestId('live').textContent()).toContain('live');
    expect(errors).toEqual([]);
    // offline: every resource the page loaded came from the console itself
    const origins = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).origin));
    for (const o of origins) expect(o).toBe(new URL(server.url).origin);
  }, 30_000);

  it('a crash injected in the twin shows on the board and heals, without a reload', async () => {
    const seen: string[] = [];
    await page.exposeFunction('__seen', (s: string) => void seen.push(s));
    // in the page (a string: this file is type-checked without the DOM library)
    await page.evaluate(`(() => {
      const table = document.querySelector('li.guest[data-vmid="159"]').closest('table');
      new MutationObserver(() => {
        const g = document.querySelector('li.guest[data-vmid="159"]');
        if (g) window.__seen(g.getAttribute('data-state') + '/' + g.getAttribute('data-health'));
      }).observe(table, { subtree: true, attributes: true, childList: true });
      window.__marker = 1; // gone if the page reloads
    })()`);
    await stack.api.fault('crash', 159);
    await expect.poll(() => seen.some((s) => !s.startsWith('running/healthy')), { timeout: 10_000 }).toBe(true);
    await expect.poll(async () => `${await guest(159).getAttribute('data-state')}/${await guest(159).getAttribute('data-health')}`, { timeout: 30_000 }).toBe('running/healthy');
    expect(await page.evaluate('window.__marker')).toBe(1);
    // the event feed saw the incident come and go
    await expect.poll(() => page.getByTestId('feed').textContent(), { timeout: 10_000 }).toMatch(/IncidentResolved/);
  }, 60_000);

  it('an incident shows its trace as a timeline', async () => {
    // homeassistant (200) is protected: its crash stays open until an operator approves
    await stack.api.fault('crash', 200);
    const incident = page.getByTestId('incidents').locator('li').filter({ hasText: /200|homeassistant/ }).first();
    await incident.waitFor({ timeout: 20_000 });
    await incident.getByRole('button', { name: 'Trace' }).click();
    const trace = page.getByTestId('trace');
    await trace.waitFor({ timeout: 10_000 });
    await expect.poll(() => trace.locator('ol.timeline li').count(), { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    const steps = await trace.locator('ol.timeline .step').allTextContents();
    expect(steps).toContain('event');
    expect(steps).toContain('incident');
  }, 40_000);

  it('an approval given from the page starts the protected guest again', async () => {
    const item = page.getByTestId('approvals').locator('li').filter({ hasText: '200' }).first();
    await item.waitFor({ timeout: 20_000 });
    expect(await guest(200).getAttribute('data-state')).toBe('stopped');
    await item.getByRole('button', { name: /^Approve/ }).click();
    await expect.poll(() => page.getByTestId('approval-result').textContent(), { timeout: 10_000 }).toMatch(/Approved: start/);
    await expect.poll(async () => `${await guest(200).getAttribute('data-state')}/${await guest(200).getAttribute('data-health')}`, { timeout: 30_000 }).toBe('running/healthy');
    // the decision agent recorded the page's operator identity as the approver
    // (the list re-renders from its own feed: it may trail the guest's state by a moment)
    await expect.poll(() => page.getByTestId('approvals').count(), { timeout: 10_000 }).toBe(0);
  }, 60_000);

  it('the chat answers, keyboard only', async () => {
    await page.locator('#chat-q').focus();
    await page.keyboard.type('why is 159 down?');
    await page.keyboard.press('Enter');
    const log = page.getByTestId('chatlog');
    await expect.poll(async () => (await log.locator('.msg.bot').count()), { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    const answer = await log.locator('.msg.bot p').first().textContent();
    expect(answer).toMatch(/159|db-empleos/);
    expect(answer).not.toMatch(/no answer/);
  }, 40_000);

  it('a chaos experiment started from the page shows live progress, then its report with the MTTR chart', async () => {
    await page.locator('#wf-exp').selectOption('kill-layer1');
    await page.getByRole('button', { name: 'Run chaos' }).click();
    await expect.poll(() => page.getByTestId('workflow-result').textContent(), { timeout: 15_000 }).toMatch(/Chaos kill-layer1: started chaos-/);
    const run = page.locator('li.run[data-kind="chaos"]').first();
    await run.waitFor({ timeout: 15_000 });
    await expect.poll(() => run.getAttribute('data-status'), { timeout: 60_000 }).toBe('done');
    const report = run.getByTestId('chaos-report');
    expect(await report.textContent()).toMatch(/PASS kill-layer1/);
    expect(await report.locator('table.faults tbody tr').count()).toBe(1);
    expect(await report.locator('table.faults tbody td').nth(5).textContent()).toMatch(/within SLO/);
    // uPlot drew the chart: a canvas with a legend naming both series
    expect(await run.getByTestId('mttr-chart').locator('canvas').count()).toBe(1);
    expect(await run.getByTestId('mttr-chart').textContent()).toMatch(/MTTR \(s\)[\s\S]*SLO \(s\)/);
  }, 90_000);

  it('reads in dark mode too, and the screenshot is saved', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    const background = 'getComputedStyle(document.body).backgroundColor';
    const bg = await page.evaluate(background);
    expect(bg).toBe('rgb(18, 21, 27)');
    await page.emulateMedia({ colorScheme: 'light' });
    expect(await page.evaluate(background)).toBe('rgb(246, 247, 249)');
    await page.screenshot({ path: process.env.HOMEOSTAT_SCREENSHOT ?? 'test-results/console.png', fullPage: true });
    expect(errors).toEqual([]);
  });
});
