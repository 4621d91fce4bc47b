// Where the CLI finds a PVE API (or the twin): the ready file of the `up --sim` on the data
// directory, or PVE_URL / PVE_TOKEN_ID / PVE_TOKEN_SECRET (with PVE_CA_FILE / PVE_INSECURE).
import { HomeostatError } from '../core/mod.ts';
import { pveSettingsFromEnv } from '../fleet/pve-config.ts';
import { readReady } from './data-dir.ts';

export interface PveEndpoint {
  url: string;
  tokenId: string;
  tokenSecret: string;
  caPem?: string;
  insecure?: boolean;
}

function fromReady(dataDir: string | undefined): PveEndpoint | undefined {
  const r = readReady(dataDir);
  if (!r?.pveUrl || !r.pveTokenId || !r.pveTokenSecret) return undefined;
  return { url: r.pveUrl, tokenId: r.pveTokenId, tokenSecret: r.pveTokenSecret, caPem: typeof r.pveCaPem === 'string' ? r.pveCaPem : undefined };
}

function fromEnv(): PveEndpoint | undefined {
  const pve = pveSettingsFromEnv(process.env);
  if (!pve.url || !pve.tokenId || !pve.tokenSecret) return undefined;
  return { url: pve.url, tokenId: pve.tokenId, tokenSecret: pve.tokenSecret, caPem: pve.caPem, insecure: pve.insecure };
}

/** `prefer`: which source wins when both are there (the twin's for fault injection, the env's for import). */
export function pveEndpoint(dataDir: string | undefined, prefer: 'ready' | 'env'): PveEndpoint {
  const e = prefer === 'ready' ? fromReady(dataDir) ?? fromEnv() : fromEnv() ?? fromReady(dataDir);
  if (e) return e;
  throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `no running \`homeostat up --sim\` on ${dataDir ?? process.env.HOMEOSTAT_DATA_DIR ?? '.homeostat'} (no ready.json) and PVE_URL/PVE_TOKEN_ID/PVE_TOKEN_SECRET not set`);
}
