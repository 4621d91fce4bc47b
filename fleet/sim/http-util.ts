// Small HTTP plumbing shared by the PVE and /sim routes.
import type { IncomingMessage, ServerResponse } from 'node:http';

export const PVE_CONTENT_TYPE = 'application/json;charset=UTF-8';
const MAX_BODY = 1024 * 1024;

export class BodyTooLarge extends Error {}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BodyTooLarge('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** HTTP reason phrases must be one line of latin-1; PVE puts its error message there. */
export function reasonPhrase(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e\xa0-\xff]/g, '?').trim().slice(0, 300) || 'Error';
}

export function sendJson(res: ServerResponse, status: number, reason: string | undefined, body: unknown, contentType = PVE_CONTENT_TYPE): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  const headers = {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'max-age=0',
    Pragma: 'no-cache',
    Server: 'pve-api-daemon/3.0',
  };
  if (reason) res.writeHead(status, reasonPhrase(reason), headers);
  else res.writeHead(status, headers);
  res.end(text);
}
