// Shared by benchmarks: a private nats-server, percentiles, JSON-line output.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';

export async function benchNats(): Promise<NatsServerHandle & { cleanup(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-bench-'));
  const s = await startNatsServer({ dataDir: dir, port: 0 });
  return { ...s, cleanup: async () => { await s.stop(); rmSync(dir, { recursive: true, force: true }); } };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function stats(samples: number[]): { p50: number; p99: number; max: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), max: round(s[s.length - 1] ?? NaN), n: s.length };
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), ...line })}\n`);
}

export const isMain = (url: string) => process.argv[1] !== undefined && url.endsWith(process.argv[1].replace(/^.*\//, '/')) ;
