// The advisor's own cost around the model call, against the Ollama TEST DOUBLE answering at once
// (no model weights here, and the model's think time is not ours to measure):
//   overhead  = prompt build + response parse + validation, in-process, per incident
//   propose   = the whole OllamaAdvisor.propose() (ollama client, HTTP, overhead), stream and not
//   baseline  = a raw fetch POST /api/chat of the same request body, same run, same double
// `npx tsx bench/advisor.ts`, or `BENCH=advisor npm run bench`.
import { Ollama } from 'ollama';
import { buildPrompt, OllamaAdvisor, proposalJsonSchema, validateProposal, type AdvisorContext } from '../llm/mod.ts';
import { context159, incident159, proposal, startOllamaDouble } from '../testkit/mod.ts';
import { emit, isMain, round, stats } from './harness.ts';

const N = Number(process.env.ADVISOR_BENCH_N ?? 2_000);
const WARMUP = Math.min(200, N);
const MODEL = 'qwen2.5:7b-instruct';

/** A realistic slice: the reference fleet around 159 plus a burst of recent events. */
function benchContext(): AdvisorContext {
  const ctx = context159();
  const events = Array.from({ length: 30 }, (_, i) => ({
    type: i % 3 ? 'GuestProbe' : 'AlertFired',
    ts: new Date(Date.UTC(2025, 5, 1, 9, 30, i)).toISOString(),
    summary: `probe ${i}: GET /health → 503 (connection reset by peer) after ${1500 + i} ms`,
  }));
  return { ...ctx, events: [...ctx.events, ...events] };
}

async function sample(n: number, fn: () => unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

export async function run(): Promise<void> {
  const answer = JSON.stringify(proposal());
  const double = await startOllamaDouble({ models: [MODEL], respond: () => answer });
  try {
    const incident = incident159();
    const ctx = benchContext();
    const prompt = buildPrompt(incident, ctx);
    const messages = [{ role: 'system', content: prompt.system }, { role: 'user', content: prompt.user }];
    const body = JSON.stringify({
      model: MODEL,
      messages,
      format: proposalJsonSchema(),
      options: { temperature: 0, num_predict: 1024 },
      stream: false,
    });

    const work = () => {
      buildPrompt(incident, ctx);
      const v = validateProposal(answer, ctx);
      if (!v.ok) throw new Error(`bench proposal rejected: ${v.reason}`);
    };
    const rawRoundTrip = async () => {
      const res = await fetch(`${double.url}/api/chat`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      const json = (await res.json()) as { message?: { content?: string } };
      if (!json.message?.content) throw new Error('double answered without content');
    };
    const client = new Ollama({ host: double.url });
    const clientRoundTrip = async () => {
      const r = await client.chat({ model: MODEL, messages, format: proposalJsonSchema(), options: { temperature: 0, num_predict: 1024 }, stream: false });
      if (!r.message.content) throw new Error('double answered without content');
    };
    const advisors = { false: new OllamaAdvisor({ host: double.url, model: MODEL, stream: false }), true: new OllamaAdvisor({ host: double.url, model: MODEL, stream: true }) };
    const propose = (stream: boolean) => async () => {
      const r = await advisors[`${stream}`].propose(incident, ctx);
      if (!r.ok) throw new Error(`bench propose failed: ${r.code} ${r.reason}`);
    };

    // warm JIT, sockets and the availability cache
    await sample(WARMUP, work);
    await sample(WARMUP, rawRoundTrip);
    await sample(WARMUP, propose(false));
    await sample(WARMUP, propose(true));

    const overhead = stats(await sample(N, work));
    const baseline = stats(await sample(N, rawRoundTrip));
    const viaClient = stats(await sample(N, clientRoundTrip));
    const plain = stats(await sample(N, propose(false)));
    const streamed = stats(await sample(N, propose(true)));
    const ratio = (a: number, b: number) => round(a / b);

    emit({ bench: 'advisor', metric: 'overhead_p50_ms', value: overhead.p50, baseline_roundtrip_p50_ms: baseline.p50, ratio: ratio(overhead.p50, baseline.p50), iterations: N, prompt_bytes: prompt.bytes, what: 'prompt build + parse + validate vs raw HTTP round trip to the double' });
    emit({ bench: 'advisor', metric: 'overhead_p99_ms', value: overhead.p99, baseline_roundtrip_p99_ms: baseline.p99, ratio: ratio(overhead.p99, baseline.p99), iterations: N });
    emit({ bench: 'advisor', metric: 'ollama_client_roundtrip_p50_ms', value: viaClient.p50, p99: viaClient.p99, baseline_roundtrip_p50_ms: baseline.p50, ratio: ratio(viaClient.p50, baseline.p50), iterations: N });
    for (const [stream, s] of [[false, plain], [true, streamed]] as const) {
      emit({ bench: 'advisor', metric: 'propose_p50_ms', stream, value: s.p50, p99: s.p99, baseline_roundtrip_p50_ms: baseline.p50, baseline_roundtrip_p99_ms: baseline.p99, ratio: ratio(s.p50, baseline.p50), iterations: N });
    }
  } finally {
    await double.stop();
  }
}

export default run;

if (isMain(import.meta.url)) await run();
