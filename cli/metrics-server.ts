// GET /metrics for Prometheus: the process's one registry (every agent it runs registered there),
// or, for `up --replicas`, every agent process's metrics merged (cli/metrics-merge.ts).
// GET /metrics.json: the same as prom-client's JSON, which the merge reads from each agent process.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { HomeostatError } from '../core/mod.ts';

/** What the server reads: a registry, or anything that answers like one (a merge of several). */
export type MetricsSource = Pick<Registry, 'metrics' | 'getMetricsAsJSON' | 'contentType'>;

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: { registry: MetricsSource; port: number; host?: string }): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics.json') {
      opts.registry.getMetricsAsJSON().then(
        (json) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(req.method === 'HEAD' ? undefined : JSON.stringify(json)),
        (e: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${(e as Error).message}\n`),
      );
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(path === '/' ? 302 : 404, path === '/' ? { Location: '/metrics' } : { 'Content-Type': 'text/plain' }).end(path === '/' ? undefined : 'not found: try /metrics\n');
      return;
    }
    opts.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': opts.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${(e as Error).message}\n`),
    );
  });
  const host = opts.host ?? '127.0.0.1';
  await listen(server, opts.port, host, '--metrics-port');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${urlHost(host)}:${port}/metrics`,
    port,
    close: () => closeServer(server),
  };
}

/** Listen, or fail with one line naming the flag (port in use, address not available). */
export function listen(server: Server, port: number, host: string, flag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(new HomeostatError('HOMEOSTAT_ERR_USAGE', `${flag}: cannot listen on ${host}:${port} (${e.code ?? e.message}); pick another port, 0 for a free one, or off`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** A host for a URL: IPv6 in brackets; a wildcard bind is reached on loopback. */
export function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
