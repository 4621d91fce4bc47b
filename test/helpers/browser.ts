// Headless Chromium for the console tests (Debian package `chromium`, driven by playwright-core).
// Every launch gets a fresh profile, and the flags keep it from reaching out to the network.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const hasBrowser = existsSync(CHROMIUM);
if (!hasBrowser) console.warn(`browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);

export async function launchBrowser(opts: { colorScheme?: 'light' | 'dark' } = {}): Promise<BrowserContext & { dispose(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'homeostat-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    colorScheme: opts.colorScheme ?? 'light',
    viewport: { width: 1400, height: 1000 },
    args: ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'],
  });
  return Object.assign(ctx, {
    async dispose() {
      await ctx.close();
      rmSync(profile, { recursive: true, force: true });
    },
  });
}
