// Fleet-wide operations ask first: the plan and a y/N question on a terminal, --yes for scripts,
// refused when no one could answer.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { confirmPlan, requireConfirmable } from '../cli/confirm.ts';

function tty(answer: string | undefined) {
  const input = Object.assign(new PassThrough(), { isTTY: true });
  const output = new PassThrough();
  let shown = '';
  output.on('data', (d: Buffer) => (shown += d.toString()));
  setImmediate(() => (answer === undefined ? input.end() : input.write(`${answer}\n`)));
  return { io: { input, output }, shown: () => shown };
}

describe('confirmation of fleet-wide operations', () => {
  it('shows the plan and goes on after "y"', async () => {
    const t = tty('y');
    await confirmPlan('shutdown of the whole fleet', 'wave 1: 100, 104', false, t.io);
    expect(t.shown()).toContain('wave 1: 100, 104');
    expect(t.shown()).toContain('Proceed with shutdown of the whole fleet? [y/N]');
  });

  it.each([['n'], [''], ['maybe'], [undefined]])('anything but yes (%j) refuses: nothing started', async (answer) => {
    const t = tty(answer);
    await expect(confirmPlan('boot of the whole fleet', 'plan', false, t.io)).rejects.toMatchObject({ code: 'HOMEOSTAT_ERR_NOT_CONFIRMED' });
  });

  it('without a terminal: refused unless --yes', () => {
    const io = { input: Object.assign(new PassThrough(), { isTTY: false }), output: new PassThrough() };
    expect(() => requireConfirmable('failover of node-b', false, io)).toThrow(/failover of node-b needs a confirmation .* --yes/);
    expect(() => requireConfirmable('failover of node-b', true, io)).not.toThrow();
  });
});
