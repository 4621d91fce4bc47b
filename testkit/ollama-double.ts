// TEST DOUBLE of an Ollama server — not Ollama. No model weights can be had in this project's
// test environment, so this small node:http server speaks Ollama's real wire protocol (checked
// against the `ollama` npm package's types, dist/browser.d.ts: ChatResponse, ListResponse,
// VersionResponse, ErrorResponse) and answers whatever the test scripts. The real `ollama` client
// talks to it. It is the only stand-in allowed in homeostat; users run a real Ollama (compose.yaml).
//
//   POST /api/chat   streaming (NDJSON, default like the real server) and `stream: false` (one JSON)
//   GET  /api/tags   the installed models
//   GET  /api/version
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DoubleChatRequest {
  model: string;
  messages: { role: string; content: string }[];
  stream?: boolean;
  format?: unknown;
  options?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A scripted answer: plain content, or content with timing / an HTTP error / a raw body. */
export type DoubleReply = string | {
  content?: string;
  /** Wait before answering (model "thinking"); headers are not sent until then, like Ollama. */
  delayMs?: number;
  /** Streaming: characters per chunk (default 8) and the pause between chunks (default 0). */
  chunkChars?: number;
  chunkDelayMs?: number;
  /** An HTTP error, answered as Ollama does: `{ "error": message }`. */
  status?: number;
  error?: string;
  /** Send this body verbatim instead of a well-formed reply (protocol-level garbage); with an
   *  error `status` it is sent as text/html, like a proxy's error page. */
  raw?: string;
  /** The final chunk's done_reason (default "stop"; "length" when num_predict was hit). */
  doneReason?: string;
};

export type Responder = (req: DoubleChatRequest) => DoubleReply | Promise<DoubleReply>;

export interface OllamaDouble {
  url: string;
  /** Bodies of every /api/chat request, in order. */
  requests: DoubleChatRequest[];
  /** `METHOD path` of every request, in order. */
  hits: string[];
  setResponder(fn: Responder): void;
  setModels(models: string[]): void;
  stop(): Promise<void>;
}

export interface OllamaDoubleOptions {
  models?: string[];
  respond?: Responder;
  version?: string;
}

const sleep = (ms: number, signal: AbortSignal) => new Promise<void>((resolve) => {
  if (ms <= 0 || signal.aborted) return resolve();
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

const withTag = (m: string) => (m.includes(':') ? m : `${m}:latest`);

function modelEntry(name: string) {
  const full = withTag(name);
  return {
    name: full,
    model: full,
    modified_at: '2025-01-01T00:00:00.000000000Z',
    size: 4_683_087_332,
    // /api/tags reports the bare hex digest (no `sha256:` prefix)
    digest: '845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e',
    details: { parent_model: '', format: 'gguf', family: 'qwen2', families: ['qwen2'], parameter_size: '7.6B', quantization_level: 'Q4_K_M' },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Timings in nanoseconds, as Ollama reports them. */
function finalStats(content: string) {
  return { total_duration: 120_000_000, load_duration: 2_000_000, prompt_eval_count: 412, prompt_eval_duration: 40_000_000, eval_count: Math.max(1, Math.ceil(content.length / 4)), eval_duration: 78_000_000 };
}

export async function startOllamaDouble(opts: OllamaDoubleOptions = {}): Promise<OllamaDouble> {
  let models = opts.models ?? ['qwen2.5:7b-instruct'];
  let respond: Responder = opts.respond ?? (() => '{}');
  const requests: DoubleChatRequest[] = [];
  const hits: string[] = [];

  async function chat(req: IncomingMessage, res: ServerResponse, gone: AbortSignal): Promise<void> {
    let body: DoubleChatRequest;
    try {
      body = JSON.parse(await readBody(req)) as DoubleChatRequest;
    } catch {
      return sendJson(res, 400, { error: 'invalid character in request body' });
    }
    requests.push(body);
    if (!body.model) return sendJson(res, 400, { error: 'model is required' });
    if (!models.map(withTag).includes(withTag(body.model))) {
      return sendJson(res, 404, { error: `model "${body.model}" not found, try pulling it first` });
    }
    const r = await respond(body);
    const reply = typeof r === 'string' ? { content: r } : r;
    await sleep(reply.delayMs ?? 0, gone);
    if (gone.aborted) return;
    // The real server streams unless told `stream: false`.
    const stream = body.stream !== false;
    if (reply.raw !== undefined) {
      const status = reply.status ?? 200;
      // raw + an error status stands for something in front of Ollama (a proxy's error page)
      const type = status >= 400 ? 'text/html' : stream ? 'application/x-ndjson' : 'application/json; charset=utf-8';
      res.writeHead(status, { 'Content-Type': type });
      res.end(reply.raw);
      return;
    }
    if (reply.status && reply.status >= 400) return sendJson(res, reply.status, { error: reply.error ?? 'scripted error' });
    const content = reply.content ?? '';
    const base = { model: body.model, created_at: new Date().toISOString() };
    const done = { ...base, message: { role: 'assistant', content: '' }, done_reason: reply.doneReason ?? 'stop', done: true, ...finalStats(content) };
    if (!stream) {
      return sendJson(res, 200, { ...done, message: { role: 'assistant', content } });
    }
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    const step = Math.max(1, reply.chunkChars ?? 8);
    for (let i = 0; i < content.length && !gone.aborted; i += step) {
      const piece = { ...base, created_at: new Date().toISOString(), message: { role: 'assistant', content: content.slice(i, i + step) }, done: false };
      res.write(`${JSON.stringify(piece)}\n`);
      if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs, gone);
    }
    if (!gone.aborted) res.end(`${JSON.stringify({ ...done, created_at: new Date().toISOString() })}\n`);
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    hits.push(`${req.method} ${path}`);
    // The client hanging up (abort, timeout) stops the scripted answer.
    const ctl = new AbortController();
    res.on('close', () => ctl.abort());
    if (req.method === 'POST' && path === '/api/chat') {
      chat(req, res, ctl.signal).catch((e: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: (e as Error).message });
        else res.destroy();
      });
    } else if (req.method === 'GET' && path === '/api/tags') {
      sendJson(res, 200, { models: models.map(modelEntry) });
    } else if (req.method === 'GET' && path === '/api/version') {
      sendJson(res, 200, { version: opts.version ?? '0.12.6' });
    } else if ((req.method === 'GET' || req.method === 'HEAD') && path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Ollama is running');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('404 page not found');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    hits,
    setResponder: (fn) => { respond = fn; },
    setModels: (m) => { models = m; },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
