// Operator verbs through the real binary against a full stack on the twin: start|stop|reboot as
// proposals through the policy gate, maintenance as desired state, fault injection without curl,
// workflows list and cancel.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DesiredState, kvGet, kvKeys, replayStored } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { BIN, runCli } from './helpers/cli.ts';

let stack: TestStack;
let creds: string;
beforeAll(async () => {
  // approvals wait longer than a CLI process takes to start on a loaded machine
  stack = await testStack({ source: 'cli-verbs', policies: { approvalTimeoutMs: 60_000 } });
  // the CLI signs approvals and denials with the operator identity, as `up` writes it
  creds = join(mkdtempSync(join(tmpdir(), 'homeostat-creds-')), 'operator.nk');
  writeFileSync(creds, `${stack.keyring.get('operator').seed}\n`, { mode: 0o600 });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const cli = (args: string[]) => runCli(args, { NATS_URL: stack.natsUrl, PVE_URL: stack.pveUrl!, PVE_TOKEN_ID: stack.pveTokenId!, PVE_TOKEN_SECRET: stack.pveTokenSecret!, HOMEOSTAT_DATA_DIR: '/nonexistent', NATS_CREDS: creds });
const healthy = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

describe('operator verbs', () => {
  it('reboot goes through the gate: allowed for 159, an approval for protected 200, an error for 999', async () => {
    const ok = await cli(['reboot', '159']);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/reboot 159: allowed\s+\[action act-/);
    const prot = await cli(['reboot', '200']);
    expect(prot.code, prot.err).toBe(0);
    expect(prot.out).toMatch(/reboot 200: waits for an approval \(homeostat approve act-/);
    const id = /approve (act-[\w-]+)/.exec(prot.out)![1];
    const deny = await cli(['deny', id.slice(0, 10)]);
    expect(deny.code, deny.err).toBe(0);
    const none = await cli(['start', '999']);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no guest 999/);
    await until(() => healthy(159), 30_000);
  }, 60_000);

  it('maintenance on leaves a crashed guest alone; off hands it back and it is healed; fault needs no curl', async () => {
    const on = await cli(['maintenance', 'on', '104']);
    expect(on.code, on.err).toBe(0);
    expect((await kvGet(stack.bus.kv.fleetState, kvKeys.desired(104), DesiredState))?.value.maintenance).toBe(true);
    const t0 = new Date();
    const f = await cli(['fault', 'crash', '104']);
    expect(f.code, f.err).toBe(0);
    expect(f.out).toMatch(/injected crash on 104/);
    await until(async () => !(await healthy(104)), 5000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await healthy(104)).toBe(false); // nobody healed it
    expect((await replayStored(stack.bus, 'fleet.incidents.>', t0)).filter((e) => e.env.type === 'IncidentOpened')).toEqual([]);
    const off = await cli(['maintenance', 'off', '104']);
    expect(off.code, off.err).toBe(0);
    await until(() => healthy(104), 30_000);
    const list = await cli(['fault', 'list']);
    expect(list.code, list.err).toBe(0);
    const bad = await cli(['fault', 'explode', '104']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/unknown fault kind "explode"; kinds: crash/);
  }, 60_000);

  it('workflows list, and cancel of a chaos experiment runs its rollbacks', async () => {
    // a fault homeostat does not heal by itself: the experiment waits, and is cancelled meanwhile
    const file = join(mkdtempSync(join(tmpdir(), 'homeostat-verbs-')), 'slow.yaml');
    writeFileSync(file, ['name: slow-disk', 'steadyState:', '  - probe: all-guests-healthy', 'method:', '  - fault: disk-fill', '    target: 243',
      'rollbacks:', '  - action: clear-faults', 'slo:', '  mttrMs: 60000', ''].join('\n'));
    const run = spawn(process.execPath, [BIN, 'chaos', 'run', file, '--yes', '--json'], { env: { ...process.env, NATS_URL: stack.natsUrl } });
    let out = '';
    run.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('FAULT.INJECTED'), 30_000);
    const list = await cli(['workflows', 'list']);
    expect(list.code, list.err).toBe(0);
    const id = /(chaos-[0-9a-z]+)\s+chaos\s+running/.exec(list.out)?.[1];
    expect(id, list.out).toBeTruthy();
    const c = await cli(['cancel', id!.slice(0, 12)]);
    expect(c.code, c.err).toBe(0);
    expect(c.out).toMatch(/its rollbacks run now/);
    await new Promise((r) => run.on('close', r));
    expect(out).toContain('ROLLBACK.DONE');
    expect(out).toContain('CHAOS.ABORTED');
    await until(async () => (await stack.api.fleet()).guests.every((g) => g.healthy), 60_000);
  }, 120_000);
});
