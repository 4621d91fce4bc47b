// The identities of one homeostat deployment: an nkey per agent, `operator` (CLI, console) and
// `admin` (`up`/`init`). With a directory they are seed files `<dir>/<identity>.nk` (mode 0600),
// created once and reused, so signed actions and approvals still verify after a restart.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IDENTITIES, identityFromSeed, newSigner, readIdentity, type Identity, type IdentityName } from '../bus/mod.ts';

export interface Keyring {
  /** Where the seed files are (undefined: in memory only). */
  dir?: string;
  get(name: IdentityName): Identity;
  /** The seed file of an identity, when on disk. */
  file(name: IdentityName): string | undefined;
}

export function keyringFile(dir: string, name: IdentityName): string {
  return join(dir, `${name}.nk`);
}

export function loadOrCreateKeyring(dir: string): Keyring {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ids = new Map<IdentityName, Identity>();
  for (const name of IDENTITIES) {
    const file = keyringFile(dir, name);
    if (!existsSync(file)) {
      const { seed } = newSigner();
      writeFileSync(file, `# homeostat identity "${name}": NATS nkey seed (keep secret)\n${seed}\n`, { mode: 0o600 });
    }
    chmodSync(file, 0o600);
    ids.set(name, readIdentity(file));
  }
  return { dir, get: (n) => ids.get(n)!, file: (n) => keyringFile(dir, n) };
}

/** Fresh keys in memory (a stack on a NATS server it did not start, tests). */
export function ephemeralKeyring(): Keyring {
  // each made when first asked for: a key pair costs ~40 ms of pure-JS nkeys work, and a single
  // agent process (`homeostat agent`) asks for none of them
  const ids = new Map<IdentityName, Identity>();
  const get = (n: IdentityName): Identity => {
    let id = ids.get(n);
    if (!id) ids.set(n, (id = identityFromSeed(newSigner().seed)));
    return id;
  };
  return { get, file: () => undefined };
}

/** The public keys a deployment's agents trust: the decision agent's signatures on actions, the
 *  operators' on approvals (the CLI/console's and chat's relay, the operator agent). One list for
 *  agents in `up`'s process, for separate replica processes and for the trust file. */
export function trustedKeys(keyring: Keyring): { decision: string[]; operators: string[] } {
  return { decision: [keyring.get('decision').publicKey], operators: [keyring.get('operator').publicKey, keyring.get('operator-agent').publicKey] };
}

/** The trust file separate agent processes read (HOMEOSTAT_TRUST_FILE). */
export function writeTrustFile(keyring: Keyring, path: string): void {
  writeFileSync(path, `${JSON.stringify(trustedKeys(keyring), null, 2)}\n`, { mode: 0o644 });
}
