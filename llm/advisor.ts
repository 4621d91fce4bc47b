// The Ollama advisor: prompt → /api/chat with the Proposal JSON Schema as `format` → validate.
// The `ollama` client has no timeout option and only aborts streamed requests, so every client is
// built per call with a fetch bound to that call's AbortSignal (timeout + caller), which also
// caps the response body. Nothing here throws to the caller.
import { Ollama, type ChatRequest } from 'ollama';
import { buildPrompt, cleanText, DEFAULT_PROMPT_LIMITS, type BuiltPrompt, type PromptLimits } from './prompt.ts';
import { proposalJsonSchema } from './proposal.ts';
import type { Advisor, AdvisorAvailability, AdvisorContext, AdvisorFailureCode, AdvisorResult, ProposeOptions } from './seam.ts';
import { DEFAULT_OUTPUT_LIMITS, validateProposal } from './validate.ts';
import type { Incident } from '../bus/mod.ts';

export interface OllamaAdvisorOptions {
  /** OLLAMA_HOST, e.g. http://127.0.0.1:11434 */
  host: string;
  /** OLLAMA_MODEL, e.g. qwen2.5:7b-instruct; a bare name means `:latest`. */
  model: string;
  /** Whole call, availability check included. Default 20 s. */
  timeoutMs?: number;
  /** Stream the answer (default): lets an over-long answer be cut off early. */
  stream?: boolean;
  maxOutputBytes?: number;
  maxPromptBytes?: number;
  maxFieldChars?: number;
  /** How long an /api/tags answer is trusted: positive answers / negative answers. */
  availabilityTtlMs?: number;
  unavailableTtlMs?: number;
  temperature?: number;
  /** Token cap for the answer (Ollama `num_predict`). */
  numPredict?: number;
  /** The transport; tests and benches may wrap it. Defaults to global fetch. */
  fetch?: typeof fetch;
}

/** The answer body grew past the transport cap (non-streamed) or the output cap (streamed). */
class OutputTooLarge extends Error {
  constructor(readonly bytes: number, readonly limit: number) {
    super(`model output passed ${limit} bytes`);
    this.name = 'OutputTooLarge';
  }
}

type Failure = Extract<AdvisorResult, { ok: false }>;

const round = (n: number) => Math.round(n * 1000) / 1000;
const normModel = (m: string) => (m.includes(':') ? m : `${m}:latest`);

/** Wrap a fetch: every request carries `signal`, every body is cut off past `maxBytes`. */
export function boundFetch(base: typeof fetch, signal: AbortSignal, maxBytes: number): typeof fetch {
  return async (input, init) => {
    const own = init?.signal;
    const res = await base(input, { ...init, signal: own ? AbortSignal.any([signal, own]) : signal });
    if (!res.body) return res;
    let seen = 0;
    const capped = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        seen += chunk.byteLength;
        if (seen > maxBytes) ctl.error(new OutputTooLarge(seen, maxBytes));
        else ctl.enqueue(chunk);
      },
    }));
    if (res.ok || (res.headers.get('content-type') ?? '').includes('application/json')) {
      return new Response(capped, { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    // A non-JSON error page (a proxy's HTML 502, say): the client would console.log on stdout
    // while reading it, and stdout carries homeostat's JSON lines. Hand it over as Ollama's
    // own `{ error }` shape instead.
    const text = await new Response(capped).text().catch(() => '');
    const error = cleanText(text.trim() || res.statusText || `HTTP ${res.status}`, 200);
    return new Response(JSON.stringify({ error }), { status: res.status, statusText: res.statusText, headers: { 'content-type': 'application/json' } });
  };
}

function causeChain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let c = e; c !== undefined && c !== null && out.length < 5; c = (c as { cause?: unknown }).cause) out.push(c);
  return out;
}

/** Map whatever the transport or the client threw to a failure code. */
function transportFailure(e: unknown, host: string, timeout: AbortSignal, timeoutMs: number, caller?: AbortSignal): Pick<Failure, 'code' | 'reason'> {
  if (timeout.aborted) return { code: 'timeout', reason: `no answer from the model within ${timeoutMs} ms` };
  if (caller?.aborted) return { code: 'error', reason: 'aborted by the caller' };
  const chain = causeChain(e);
  const big = chain.find((c): c is OutputTooLarge => c instanceof OutputTooLarge);
  if (big) return { code: 'too-large', reason: `Ollama answer passed ${big.limit} bytes; cut off` };
  const err = e as { name?: string; message?: string; status_code?: number };
  const msg = cleanText(err?.message ?? String(e), 200);
  if (err?.name === 'ResponseError' && typeof err.status_code === 'number') {
    const gone = [404, 502, 503, 504].includes(err.status_code);
    return { code: gone ? 'unavailable' : 'error', reason: `Ollama answered ${err.status_code}: ${msg}` };
  }
  const sys = chain.map((c) => (c as { code?: unknown }).code).find((c) => typeof c === 'string');
  if (e instanceof TypeError && /fetch failed/i.test(msg)) {
    return { code: 'unavailable', reason: `Ollama at ${host} is not reachable${sys ? ` (${sys})` : ''}` };
  }
  if (e instanceof SyntaxError) return { code: 'error', reason: `Ollama reply is not valid JSON: ${msg}` };
  return { code: 'error', reason: `Ollama call failed: ${msg}` };
}

export class OllamaAdvisor implements Advisor {
  readonly model: string;
  private readonly host: string;
  private readonly timeoutMs: number;
  private readonly stream: boolean;
  private readonly maxOutputBytes: number;
  private readonly maxResponseBytes: number;
  private readonly promptLimits: PromptLimits;
  private readonly ttlMs: number;
  private readonly unavailableTtlMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly chatOptions: NonNullable<ChatRequest['options']>;
  private cache?: { until: number; value: AdvisorAvailability };

  constructor(opts: OllamaAdvisorOptions) {
    this.host = opts.host;
    this.model = opts.model;
    this.timeoutMs = opts.timeoutMs ?? 20_000;
    this.stream = opts.stream ?? true;
    this.maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_OUTPUT_LIMITS.maxOutputBytes;
    // A streamed token costs ~150 bytes of NDJSON framing; leave room for that, still bounded.
    this.maxResponseBytes = Math.max(1 << 20, this.maxOutputBytes * 64);
    this.promptLimits = {
      maxPromptBytes: opts.maxPromptBytes ?? DEFAULT_PROMPT_LIMITS.maxPromptBytes,
      maxFieldChars: opts.maxFieldChars ?? DEFAULT_PROMPT_LIMITS.maxFieldChars,
    };
    this.ttlMs = opts.availabilityTtlMs ?? 15_000;
    this.unavailableTtlMs = opts.unavailableTtlMs ?? 3_000;
    this.fetchImpl = opts.fetch ?? fetch;
    this.chatOptions = { temperature: opts.temperature ?? 0, num_predict: opts.numPredict ?? 1024 };
  }

  /** Is the model there? `/api/tags`, cached briefly, so `status` can say "advisor unavailable". */
  async available(): Promise<AdvisorAvailability> {
    return this.availability(AbortSignal.timeout(Math.min(this.timeoutMs, 5_000)));
  }

  async propose(incident: Incident, context: AdvisorContext, opts: ProposeOptions = {}): Promise<AdvisorResult> {
    const t0 = performance.now();
    const caller = opts.signal ?? context?.signal;
    const failed = (f: Pick<Failure, 'code' | 'reason'> & { excerpt?: string }): Failure => ({ ok: false, ...f, latencyMs: round(performance.now() - t0), model: this.model });
    try {
      if (caller?.aborted) return failed({ code: 'error', reason: 'aborted by the caller' });
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const signal = caller ? AbortSignal.any([timeout, caller]) : timeout;
      const avail = await this.availability(signal);
      if (!avail.ok) {
        if (timeout.aborted) return failed({ code: 'timeout', reason: `no answer from Ollama within ${this.timeoutMs} ms` });
        return failed({ code: 'unavailable', reason: avail.reason ?? 'advisor unavailable' });
      }
      const prompt = buildPrompt(incident, context, this.promptLimits);
      let content: string;
      try {
        content = await this.chat(prompt, signal);
      } catch (e) {
        const f = transportFailure(e, this.host, timeout, this.timeoutMs, caller);
        if (f.code === 'unavailable') this.remember({ ok: false, available: false, reason: f.reason });
        return failed(f);
      }
      const v = validateProposal(content, context, { maxOutputBytes: this.maxOutputBytes });
      return v.ok ? { ok: true, proposal: v.proposal, latencyMs: round(performance.now() - t0), model: avail.model ?? this.model } : failed(v);
    } catch (e) {
      // Not expected: a bug here must not take the decision agent down with it.
      return failed({ code: 'error', reason: `advisor failed: ${cleanText((e as Error)?.message ?? String(e), 200)}` });
    }
  }

  private client(signal: AbortSignal): Ollama {
    return new Ollama({ host: this.host, fetch: boundFetch(this.fetchImpl, signal, this.maxResponseBytes) });
  }

  private async chat(prompt: BuiltPrompt, signal: AbortSignal): Promise<string> {
    const request = {
      model: this.model,
      messages: [{ role: 'system', content: prompt.system }, { role: 'user', content: prompt.user }],
      format: proposalJsonSchema(),
      options: this.chatOptions,
    };
    const client = this.client(signal);
    if (!this.stream) {
      const r = await client.chat({ ...request, stream: false });
      const content: unknown = r?.message?.content;
      if (typeof content !== 'string') throw new Error('reply has no message.content');
      if (r.done_reason === 'length') throw new OutputTooLarge(Buffer.byteLength(content), this.maxOutputBytes);
      return content;
    }
    const parts = await client.chat({ ...request, stream: true });
    let content = '';
    let bytes = 0;
    for await (const part of parts) {
      const piece: unknown = part?.message?.content;
      if (typeof piece === 'string' && piece) {
        bytes += Buffer.byteLength(piece, 'utf8');
        if (bytes > this.maxOutputBytes) {
          parts.abort();
          throw new OutputTooLarge(bytes, this.maxOutputBytes);
        }
        content += piece;
      }
      if (part.done && part.done_reason === 'length') throw new OutputTooLarge(bytes, this.maxOutputBytes);
    }
    return content;
  }

  private async availability(signal: AbortSignal): Promise<AdvisorAvailability> {
    const now = Date.now();
    if (this.cache && now < this.cache.until) return this.cache.value;
    let value: AdvisorAvailability;
    try {
      const list = await this.client(signal).list();
      const names = (Array.isArray(list?.models) ? list.models : []).flatMap((m) => [m?.name, m?.model]).filter((n): n is string => typeof n === 'string');
      const want = normModel(this.model);
      const found = names.find((n) => normModel(n) === want);
      value = found
        ? { ok: true, available: true, model: found }
        : { ok: false, available: false, model: this.model, reason: `model ${this.model} is not pulled on ${this.host} (run \`ollama pull ${this.model}\`)` };
    } catch (e) {
      const timedOut = signal.aborted;
      const f = transportFailure(e, this.host, signal, this.timeoutMs);
      value = { ok: false, available: false, model: this.model, reason: timedOut ? `Ollama at ${this.host} did not answer /api/tags in time` : f.reason };
    }
    this.remember(value);
    return value;
  }

  private remember(value: AdvisorAvailability): void {
    this.cache = { value, until: Date.now() + (value.ok ? this.ttlMs : this.unavailableTtlMs) };
  }
}
