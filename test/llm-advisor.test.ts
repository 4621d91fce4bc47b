// OllamaAdvisor against the Ollama TEST DOUBLE, through the real `ollama` client: every way a
// model answer can be wrong ends as { ok: false, code } — never a throw, never a proposal.
import { createServer } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { NullAdvisor, OllamaAdvisor, Proposal, type AdvisorResult, type OllamaAdvisorOptions } from '../llm/mod.ts';
import { context159, incident159, json, proposal, startOllamaDouble, type DoubleReply, type OllamaDouble } from '../testkit/mod.ts';

const MODEL = 'qwen2.5:7b-instruct';
let double: OllamaDouble;

beforeAll(async () => { double = await startOllamaDouble({ models: [MODEL] }); });
afterAll(async () => double.stop());
beforeEach(() => {
  double.setModels([MODEL]);
  double.requests.length = 0;
  double.hits.length = 0;
});

const advisor = (o: Partial<OllamaAdvisorOptions> = {}) => new OllamaAdvisor({ host: double.url, model: MODEL, timeoutMs: 2000, ...o });

async function ask(reply: DoubleReply, o: Partial<OllamaAdvisorOptions> = {}, ctx = context159()): Promise<AdvisorResult> {
  double.setResponder(() => reply);
  return advisor(o).propose(incident159(), ctx);
}

function failure(r: AdvisorResult) {
  if (r.ok) throw new Error(`expected a discard, got ${json(r.proposal)}`);
  return r;
}

describe.each([true, false])('OllamaAdvisor (stream: %s)', (stream) => {
  it('parses and validates a good proposal', async () => {
    const r = await ask(json(proposal()), { stream });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.proposal).toEqual(proposal());
    expect(r.model).toBe(MODEL);
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);
    expect(double.requests[0].stream).toBe(stream);
  });

  it('sends the Proposal JSON Schema as `format`, system + user messages, temperature 0', async () => {
    await ask(json(proposal()), { stream });
    const req = double.requests[0];
    expect(req.format).toEqual(z.toJSONSchema(Proposal));
    expect(req.model).toBe(MODEL);
    expect(req.messages.map((m) => m.role)).toEqual(['system', 'user']);
    expect(req.options).toMatchObject({ temperature: 0 });
  });

  it('invalid JSON → invalid-json, with an excerpt for the record', async () => {
    const r = failure(await ask('Sure! I would reboot 159. {"verb":', { stream }));
    expect(r.code).toBe('invalid-json');
    expect(r.excerpt).toContain('Sure! I would reboot 159.');
  });

  it.each([
    ['confidence out of range', { ...proposal(), confidence: 3 }],
    ['missing rationale', { ...proposal(), rationale: undefined }],
    ['an extra key', { ...proposal(), command: 'rm -rf /' }],
    ['a string vmid', { ...proposal(), target: { vmid: '159' } }],
    ['an array', [proposal()]],
  ])('wrong schema (%s) → schema', async (_name, body) => {
    expect(failure(await ask(json(body), { stream })).code).toBe('schema');
  });

  it('unknown verb → unknown-verb', async () => {
    const r = failure(await ask(json({ ...proposal(), verb: 'restart' }), { stream }));
    expect(r.code).toBe('unknown-verb');
    expect(r.reason).toContain('restart');
  });

  it.each(['destroy', 'delete', 'set-config', 'resize'])('verb %s → forbidden-verb', async (verb) => {
    expect(failure(await ask(json({ ...proposal(), verb }), { stream })).code).toBe('forbidden-verb');
  });

  it('a known verb the policy does not allow here → forbidden-verb', async () => {
    const r = failure(await ask(json(proposal({ verb: 'migrate', params: { targetNode: 'node-a' } })), { stream }));
    expect(r.code).toBe('forbidden-verb');
  });

  it.each([
    ['a vmid outside the fleet', { vmid: 999 }],
    ['a fleet guest outside the slice (protected homeassistant)', { vmid: 200 }],
    ['an unknown node', { vmid: 159, node: 'node-z' }],
    ['the wrong node for the guest', { vmid: 159, node: 'node-a' }],
  ])('target %s → unknown-target', async (_name, target) => {
    expect(failure(await ask(json(proposal({ target })), { stream })).code).toBe('unknown-target');
  });

  it('output over 16 KiB → too-large', async () => {
    const huge = json({ ...proposal(), rationale: 'x'.repeat(20_000) });
    const r = failure(await ask({ content: huge, chunkChars: 512 }, { stream }));
    expect(r.code).toBe('too-large');
  });

  it('a slow model → timeout via AbortSignal, well before the model would answer', async () => {
    const r = failure(await ask({ content: json(proposal()), delayMs: 5_000 }, { stream, timeoutMs: 300 }));
    expect(r.code).toBe('timeout');
    expect(r.latencyMs).toBeLessThan(2_000);
  });

  it('the token limit hit (done_reason "length") → too-large', async () => {
    const r = failure(await ask({ content: '{"verb":"reboot","rationale":"aaaa', doneReason: 'length' }, { stream }));
    expect(r.code).toBe('too-large');
  });
});

describe('OllamaAdvisor transport', () => {
  it('a model that streams too slowly → timeout mid-stream', async () => {
    const r = failure(await ask({ content: json(proposal()), chunkChars: 4, chunkDelayMs: 50 }, { timeoutMs: 300 }));
    expect(r.code).toBe('timeout');
  });

  it('a streamed flood is cut off as soon as it passes the limit', async () => {
    const r = failure(await ask({ content: 'y'.repeat(200_000), chunkChars: 1024 }, { maxOutputBytes: 4096 }));
    expect(r.code).toBe('too-large');
  });

  it('a non-streamed body past the transport cap → too-large, not buffered whole', async () => {
    const r = failure(await ask({ raw: json({ message: { role: 'assistant', content: 'z'.repeat(3 << 20) }, done: true }) }, { stream: false }));
    expect(r.code).toBe('too-large');
  });

  it('model down (connection refused) → unavailable; available() says why', async () => {
    const port = await freePort();
    const a = new OllamaAdvisor({ host: `http://127.0.0.1:${port}`, model: MODEL, timeoutMs: 1000 });
    const r = failure(await a.propose(incident159(), context159()));
    expect(r.code).toBe('unavailable');
    expect(r.reason).toMatch(/not reachable.*ECONNREFUSED/);
    expect(await a.available()).toMatchObject({ ok: false, available: false, reason: expect.stringMatching(/not reachable/) });
  });

  it('model missing from /api/tags → unavailable, and no chat request is made', async () => {
    double.setModels(['llama3.2:latest']);
    const r = failure(await ask(json(proposal())));
    expect(r.code).toBe('unavailable');
    expect(r.reason).toContain(`ollama pull ${MODEL}`);
    expect(double.hits).toEqual(['GET /api/tags']);
  });

  it('available() matches a bare model name to :latest and caches the answer', async () => {
    double.setModels(['llama3.2:latest']);
    const a = new OllamaAdvisor({ host: double.url, model: 'llama3.2' });
    expect(await a.available()).toEqual({ ok: true, available: true, model: 'llama3.2:latest' });
    await a.available();
    expect(double.hits.filter((h) => h === 'GET /api/tags')).toHaveLength(1);
  });

  it('HTTP 404 from /api/chat (model removed since the check) → unavailable; 500 → error', async () => {
    expect(failure(await ask({ status: 404, error: `model "${MODEL}" not found, try pulling it first` })).code).toBe('unavailable');
    expect(failure(await ask({ status: 500, error: 'llama runner process has terminated' })).code).toBe('error');
  });

  it('a non-JSON error page (proxy 502) → unavailable, nothing printed on stdout', async () => {
    const log = vi.spyOn(console, 'log');
    try {
      const r = failure(await ask({ status: 502, raw: '<html>Bad Gateway</html>' }));
      expect(r.code).toBe('unavailable');
      expect(r.reason).toContain('Bad Gateway');
      expect(log).not.toHaveBeenCalled();
    } finally {
      log.mockRestore();
    }
  });

  it('protocol garbage → error, never a throw', async () => {
    expect(failure(await ask({ raw: 'this is not json' }, { stream: false })).code).toBe('error');
    expect(failure(await ask({ raw: '{"done":false}\n' })).code).toBe('error');
    expect(failure(await ask({ raw: json({ done: true }) }, { stream: false })).code).toBe('error');
  });

  it('a caller abort ends the call with a result, not a throw', async () => {
    double.setResponder(() => ({ content: json(proposal()), delayMs: 5_000 }));
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const r = failure(await advisor().propose(incident159(), context159(), { signal: ctl.signal }));
    expect(r.code).toBe('error');
    expect(r.reason).toMatch(/aborted/);
  });

  it('nonsense context (as from a caller with another shape) is a result, not a throw', async () => {
    double.setResponder(() => json(proposal()));
    const r = await advisor().propose(incident159(), {} as never);
    expect(failure(r).code).toBe('forbidden-verb');
  });
});

describe('NullAdvisor', () => {
  it('is always unavailable', async () => {
    const a = new NullAdvisor();
    expect(await a.propose()).toMatchObject({ ok: false, code: 'unavailable' });
    expect(await a.available()).toMatchObject({ ok: false, available: false });
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
