import { describe, expect, inject, it } from 'vitest';
import { Bus } from '../bus/mod.ts';

describe('test nats-server', () => {
  it('has JetStream with FLEET and AUDIT', async () => {
    const bus = await Bus.connect({ servers: inject('natsUrl'), source: 'test' });
    const names: string[] = [];
    for await (const s of bus.jsm.streams.list()) names.push(s.config.name);
    expect(names).toEqual(expect.arrayContaining(['FLEET', 'AUDIT']));
    await bus.stop();
  });
});
