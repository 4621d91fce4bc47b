// NATS identities: one nkey per agent and one for the operator (CLI, console), kept as seed files
// (`<data-dir>/creds/<identity>.nk`, the format `nats --nkey` reads). The same key signs: the
// decision agent seals actions with it, the operator signs approvals with it.
import { readFileSync } from 'node:fs';
import { fromSeed } from '@nats-io/nkeys';
import { HomeostatError } from '../core/mod.ts';
import { signerFromSeed, type Signer } from './seal.ts';

export interface Identity {
  seed: string;
  publicKey: string;
  signer: Signer;
}

/** Read an nkey seed file (the first line that is a user seed; comments allowed). */
export function readIdentity(path: string): Identity {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `NATS_CREDS: cannot read ${path}: ${(e as Error).message}`);
  }
  const seed = text.split(/\r?\n/).map((l) => l.trim()).find((l) => /^SU[A-Z2-7]{50,}$/.test(l));
  if (!seed) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `NATS_CREDS: ${path} holds no nkey user seed (a line starting with SU)`);
  return identityFromSeed(seed);
}

export function identityFromSeed(seed: string): Identity {
  const kp = fromSeed(new TextEncoder().encode(seed));
  return { seed, publicKey: kp.getPublicKey(), signer: signerFromSeed(seed) };
}
