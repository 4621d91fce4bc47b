// A CLI that never misleads, through the real binary against a full stack on the twin: ids by
// unique prefix, vmid or --last; no success for a guest that does not exist; a broken pipe is a
// quiet end; `events` says what it follows; chaos list wraps instead of cutting; Ctrl-C while
// following a workflow is not a timeout.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayStored, type Incident } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack({ source: 'cli-honest' });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
function cli(args: string[], opts: { shell?: string } = {}) {
  const env = { ...process.env, NO_COLOR: '1', NATS_URL: stack.natsUrl, LOG_LEVEL: 'warn' };
  const p = opts.shell
    ? spawn('sh', ['-c', opts.shell.replace('$HOMEOSTAT', `${process.execPath} ${BIN}`)], { env })
    : spawn(process.execPath, [BIN, ...args], { env });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number; out: string; err: string }>((resolve) => p.on('close', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), out, err })));
  return { p, done, out: () => out, err: () => err };
}

describe('a CLI that never misleads', () => {
  it('trace takes a vmid, --last, or a unique prefix of the id', async () => {
    const t0 = new Date();
    await stack.api.fault('crash', 159);
    const opened = await until(async () => (await replayStored(stack.bus, 'fleet.incidents.>', t0)).find((e) => e.env.type === 'IncidentOpened'), 15_000);
    const id = (opened.env.data as Incident).id;
    await until(async () => (await stack.api.fleet()).guests.find((g) => g.vmid === 159)?.healthy === true, 30_000);
    for (const ref of [['159'], ['--last'], [id.slice(0, 10)], [id.slice(4, 14)]]) {
      const r = await cli(['trace', ...ref]).done;
      expect(r.code, `${ref.join(' ')}: ${r.err}`).toBe(0);
      expect(r.out.split('\n')[0]).toContain(id);
      // human timestamps carry the zone
      expect(r.out).toMatch(/\d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{2}:\d{2}/);
    }
    const none = await cli(['trace', 'inc-zzzz']).done;
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/HOMEOSTAT_ERR_NOT_FOUND: no incident matches "inc-zzzz"/);
  }, 60_000);

  it('approve of an unknown id and release of a guest that does not exist fail', async () => {
    const a = await cli(['approve', 'act-nope']).done;
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/no pending action matches "act-nope"/);
    const r = await cli(['release', '999']).done;
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no guest 999/);
    const ok = await cli(['release', '155']).done;
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/155 had no flap hold-down: nothing to release/);
  }, 30_000);

  it('a broken pipe ends quietly; events says what it follows on stderr', async () => {
    const piped = await cli([], { shell: '$HOMEOSTAT events --no-follow --since 1h | head -n 1' }).done;
    expect(piped.out.trim().split('\n')).toHaveLength(1);
    expect(piped.err).not.toMatch(/EPIPE|Error|at /);
    const live = cli(['events']);
    await until(() => /following fleet\.> .* Ctrl-C to stop/.test(live.err()), 10_000);
    expect(live.out()).not.toMatch(/following/); // stdout stays data only
    live.p.kill('SIGINT');
    expect((await live.done).code).toBe(0);
  }, 90_000); // each spawn of the CLI compiles its sources: slow on a busy 2-core machine

  it('chaos list wraps descriptions at word boundaries and never cuts them', async () => {
    const r = await cli(['chaos', 'list']).done;
    const j = JSON.parse((await cli(['chaos', 'list', '--json']).done).out) as { description?: string }[];
    const words = j.flatMap((x) => (x.description ?? '').split(/\s+/).filter(Boolean));
    const shown = r.out.split(/\s+/);
    for (const w of words) expect(shown, w).toContain(w);
  }, 90_000); // each spawn of the CLI compiles its sources: slow on a busy 2-core machine

  it('Ctrl-C while following a workflow stops following, says so, and is not a timeout', async () => {
    const run = cli(['chaos', 'run', 'kill-layer1', '--yes']);
    await until(() => run.out().includes('CHAOS.PLANNED') || run.out().includes('STEADY_STATE'), 20_000);
    run.p.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.err).toMatch(/stopped following [\w-]+; it keeps running/);
    expect(r.err).not.toMatch(/TIMEOUT/);
    // let the experiment finish (its rollbacks) before the stack goes
    await until(async () => (await stack.api.fleet()).guests.every((g) => g.healthy), 60_000);
  }, 90_000);
});
