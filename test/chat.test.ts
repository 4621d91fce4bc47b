// Chat: built-in intents, and a model (the Ollama TEST DOUBLE) that may only rephrase.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerChat, parseIntent } from '../agents/operator/mod.ts';
import { OllamaPhraser } from '../llm/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startOllamaDouble } from '../testkit/mod.ts';
import { testBus } from './helpers/bus.ts';
import type { Bus } from '../bus/mod.ts';

const fleet = referenceFleet();
let bus: Bus;
beforeAll(async () => {
  bus = await testBus('chat-test');
});
afterAll(async () => bus.stop());

describe('chat intents', () => {
  it.each([
    ['what is down?', { kind: 'whats-down' }],
    ['Is everything OK?', { kind: 'whats-down' }],
    ['why is 159 down?', { kind: 'why', guest: '159' }],
    ['why did db-empleos restart?', { kind: 'why', guest: 'db-empleos' }],
    ['what happens if node-b dies?', { kind: 'what-if-node', node: 'node-b' }],
    ['start layer 2', { kind: 'boot', layer: 2, dryRun: false }],
    ['shutdown layer 4 in dry-run', { kind: 'shutdown', layer: 4, dryRun: true }],
    ['run chaos kill-layer1 in dry-run', { kind: 'chaos-run', name: 'kill-layer1', dryRun: true }],
    ['approve a1b2', { kind: 'approve', id: 'a1b2' }],
    ['deny 01J9ZX', { kind: 'deny', id: '01J9ZX' }],
    ['restart 159', { kind: 'guest-action', verb: 'reboot', guest: '159' }],
    ['failover node-b', { kind: 'failover', node: 'node-b' }],
    ['pending approvals', { kind: 'approvals' }],
    ['list incidents', { kind: 'incidents' }],
    ['make me a sandwich', { kind: 'unknown' }],
  ])('%s', (q, intent) => {
    expect(parseIntent(q)).toEqual(intent);
  });

  it('answers "what happens if node-b dies?" from the manifest, without a model', async () => {
    const a = await answerChat({ question: 'what happens if node-b dies?', requestedBy: 't', confirm: false }, bus, fleet);
    expect(a.usedModel).toBe(false);
    expect(a.answer).toMatch(/node-b runs 5 guest\(s\)/);
    expect(a.answer).toMatch(/db-empleos \(159/);
    expect(a.answer).toMatch(/web-lab22 \(122\)/); // a dependent on another node
    expect(a.answer).toMatch(/fence delay/);
  });

  it('a destructive command asks for confirmation and does nothing yet', async () => {
    const a = await answerChat({ question: 'restart 159', requestedBy: 't', confirm: false }, bus, fleet);
    expect(a.needsConfirmation).toBe(true);
    expect(a.answer).toMatch(/reboot db-empleos \(159\)/);
    const p = await answerChat({ question: 'start 200', requestedBy: 't', confirm: false }, bus, fleet);
    expect(p.needsConfirmation).toBe(true);
    expect(p.answer).toMatch(/protected guest/);
  });

  it('unknown guests and nodes are answered plainly', async () => {
    expect((await answerChat({ question: 'why is 999 down?', requestedBy: 't', confirm: false }, bus, fleet)).answer).toMatch(/no guest "999"/);
    expect((await answerChat({ question: 'what happens if node-z dies?', requestedBy: 't', confirm: false }, bus, fleet)).answer).toMatch(/no node "node-z"/);
  });
});

describe('chat phrasing through the Ollama test double', () => {
  it('uses the model text when it keeps the facts, and says so', async () => {
    const double = await startOllamaDouble({ respond: () => 'If node-b dies, db-empleos (159) and four others go down with it; web-lab22 (122) would turn unhealthy.' });
    try {
      const phraser = new OllamaPhraser({ host: double.url, model: 'qwen2.5:7b-instruct' });
      const a = await answerChat({ question: 'what happens if node-b dies?', requestedBy: 't', confirm: false }, bus, fleet, phraser);
      expect(a.usedModel).toBe(true);
      expect(a.advisorAvailable).toBe(true);
      expect(a.answer).toMatch(/^If node-b dies/);
      // the facts went in as quoted data
      const sent = JSON.stringify(double.requests.at(-1));
      expect(sent).toContain('FLEET_DATA');
    } finally {
      await double.stop();
    }
  });

  it('keeps the built-in answer when the model is down, and says so', async () => {
    const phraser = new OllamaPhraser({ host: 'http://127.0.0.1:1', model: 'x', timeoutMs: 1000 });
    const a = await answerChat({ question: 'what happens if node-b dies?', requestedBy: 't', confirm: false }, bus, fleet, phraser);
    expect(a.usedModel).toBe(false);
    expect(a.advisorAvailable).toBe(false);
    expect(a.answer).toMatch(/node-b runs 5 guest/);
  });
});
