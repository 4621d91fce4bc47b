// `homeostat init`: what a deployment of separate processes (compose, systemd units, an existing
// NATS) needs before its agents start, written once into a data directory and reused after.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createLogger } from '../../core/mod.ts';
import { loadConfig } from '../../agents/mod.ts';
import { Bus, leaseStoreTag } from '../../bus/mod.ts';
import { parseCommand } from '../args.ts';
import { println, printJson } from '../output.ts';
import { keyringFile, loadOrCreateKeyring, writeTrustFile } from '../keyring.ts';
import { natsAuthorization, natsUsers } from '../nats-server.ts';
import { DEFAULT_DATA_DIR } from '../data-dir.ts';

const HELP = `Usage: homeostat init [--data-dir DIR] [--nats URL] [--wait SECONDS]

Writes what separate agent processes need (compose runs it before anything else); what exists is
kept, so running it again changes nothing:
  DIR/creds/<identity>.nk   one NATS nkey seed per identity (mode 600): each agent, operator-agent,
                            operator (CLI, console) and admin. An agent connects as its own
                            (NATS_CREDS=DIR/creds/<agent>.nk; the operator agent: operator-agent.nk)
  DIR/creds/trust.json      the public keys agents trust (HOMEOSTAT_TRUST_FILE): the decision
                            agent's (the action agent runs only what it signed) and the operators'
  DIR/nats/auth.conf        nats-server's authorization block, every identity with its permissions
                            (bus/permissions.ts): nats-server -c DIR/nats/auth.conf -js …
  DIR/nats/server-N.conf    the same plus the tag that places sensing's lease store N (N = 1..3) on
                            that server: a cluster's servers start with -c DIR/nats/server-N.conf
With --nats URL (or NATS_URL): then, as the admin identity, creates the streams and KV buckets (3
replicas on a cluster) or brings their config up to date, waiting up to --wait seconds (default 60)
for the server. Prints one JSON line with the paths.`;

export async function initMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, {
    'data-dir': { type: 'string', default: process.env.HOMEOSTAT_DATA_DIR || DEFAULT_DATA_DIR },
    nats: { type: 'string' },
    wait: { type: 'string', default: '60' },
    help: { type: 'boolean', short: 'h', default: false },
  }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const dir = resolve(values['data-dir']);
  const credsDir = join(dir, 'creds');
  const keyring = loadOrCreateKeyring(credsDir);
  const trustFile = join(credsDir, 'trust.json');
  writeTrustFile(keyring, trustFile);
  mkdirSync(join(dir, 'nats'), { recursive: true, mode: 0o700 });
  const authConf = join(dir, 'nats', 'auth.conf');
  writeFileSync(authConf, natsAuthorization(natsUsers(keyring)), { mode: 0o600 });
  // one lease store per server (bus/jetstream.ts): without the tags JetStream may put two on one
  const serverConfs = [0, 1, 2].map((i) => {
    const f = join(dir, 'nats', `server-${i + 1}.conf`);
    writeFileSync(f, `include "auth.conf"\nserver_tags: [${JSON.stringify(leaseStoreTag(i))}]\n`, { mode: 0o600 });
    return f;
  });

  const natsUrl = values.nats ?? process.env.NATS_URL;
  let streams = false;
  if (natsUrl) {
    const config = loadConfig(process.env, { NATS_URL: natsUrl });
    const log = createLogger(config.LOG_LEVEL);
    const waitSec = Number(values.wait);
    const admin = await Bus.connect({ servers: config.NATS_URL, source: 'init', log, seed: keyring.get('admin').seed, caFile: config.NATS_CA, manage: true, connectTimeoutMs: (Number.isFinite(waitSec) && waitSec > 0 ? waitSec : 60) * 1000 });
    await admin.stop();
    streams = true;
  }
  printJson({ ok: true, creds: credsDir, trustFile, natsAuthConf: authConf, natsServerConfs: serverConfs, operatorCreds: keyringFile(credsDir, 'operator'), ...(streams ? { streams: 'created or up to date', natsUrl } : {}) });
  return 0;
}
