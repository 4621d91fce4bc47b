// A real HTTP server on a random port that records every request (webhook, ntfy and Slack
// notifications in tests) and answers with the status the test sets.
import { createServer } from 'node:http';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface HttpReceiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** Answer this status from now on (default 200). */
  status: number;
  close(): Promise<void>;
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const requests: ReceivedRequest[] = [];
  const r: Partial<HttpReceiver> = { requests, status: 200 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(r.status!, { 'content-type': 'text/plain' });
      res.end(r.status! < 300 ? 'ok' : 'receiver says no');
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  return Object.assign(r, {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  }) as HttpReceiver;
}
