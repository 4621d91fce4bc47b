// The Ollama TEST DOUBLE speaks the wire protocol the real `ollama` client expects.
import { Ollama } from 'ollama';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOllamaDouble, type OllamaDouble } from '../testkit/mod.ts';

let double: OllamaDouble;
beforeAll(async () => {
  double = await startOllamaDouble({ models: ['qwen2.5:7b-instruct', 'llama3.2'], respond: () => '{"hello":"world"}' });
});
afterAll(async () => double.stop());

describe('ollama test double × real ollama client', () => {
  it('GET /api/tags lists models in ListResponse shape', async () => {
    const list = await new Ollama({ host: double.url }).list();
    expect(list.models.map((m) => m.name)).toEqual(['qwen2.5:7b-instruct', 'llama3.2:latest']);
    const m = list.models[0];
    expect(m).toMatchObject({ model: 'qwen2.5:7b-instruct', details: { format: 'gguf', quantization_level: 'Q4_K_M' } });
    expect(typeof m.size).toBe('number');
    expect(m.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it('GET /api/version', async () => {
    expect(await new Ollama({ host: double.url }).version()).toEqual({ version: '0.12.6' });
  });

  it('POST /api/chat streaming: NDJSON pieces, then a done chunk with stats', async () => {
    double.setResponder(() => ({ content: '{"a":1,"b":"two"}', chunkChars: 3 }));
    const parts = await new Ollama({ host: double.url }).chat({ model: 'qwen2.5:7b-instruct', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const seen = [];
    for await (const p of parts) seen.push(p);
    const last = seen.at(-1)!;
    expect(seen.length).toBeGreaterThan(3);
    expect(seen.slice(0, -1).every((p) => p.done === false && p.message.role === 'assistant')).toBe(true);
    expect(seen.map((p) => p.message.content).join('')).toBe('{"a":1,"b":"two"}');
    expect(last).toMatchObject({ done: true, done_reason: 'stop', model: 'qwen2.5:7b-instruct', message: { content: '' } });
    expect(last.total_duration).toBeGreaterThan(0);
    expect(last.eval_count).toBeGreaterThan(0);
  });

  it('POST /api/chat non-streaming: one ChatResponse', async () => {
    double.setResponder(() => '{"x":true}');
    const r = await new Ollama({ host: double.url }).chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], stream: false, format: { type: 'object' } });
    expect(r).toMatchObject({ done: true, done_reason: 'stop', message: { role: 'assistant', content: '{"x":true}' } });
    expect(double.requests.at(-1)).toMatchObject({ model: 'llama3.2', stream: false, format: { type: 'object' } });
  });

  it('a model that is not pulled answers 404 with an Ollama error body', async () => {
    const err = await new Ollama({ host: double.url }).chat({ model: 'mistral', messages: [] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 404 });
    expect((err as Error).message).toMatch(/model "mistral" not found/);
  });

  it('scripted HTTP errors come back as ResponseError', async () => {
    double.setResponder(() => ({ status: 500, error: 'llama runner process has terminated' }));
    const err = await new Ollama({ host: double.url }).chat({ model: 'llama3.2', messages: [] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 500, message: 'llama runner process has terminated' });
  });

  it('records every request', () => {
    expect(double.hits).toContain('GET /api/tags');
    expect(double.hits).toContain('POST /api/chat');
    expect(double.requests.length).toBeGreaterThanOrEqual(3);
  });
});
