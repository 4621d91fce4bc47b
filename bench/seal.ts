// The price of signed decisions: sealing an approved action (decision agent) and checking the seal
// (action agent), per action, next to what every action already costs (encoding and validating its
// envelope) and against the quickest remediation of the reference fleet (its fastest guest's boot).
// Goal: sign + verify < 1 % of a remediation.
import { encodeEnvelope, makeEnvelope, newSigner, checkSeal, sealAction, subjects, type Action } from '../bus/mod.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { emit, isMain, round } from './harness.ts';

const N = Number(process.env.SEAL_N ?? 300);

function time(fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(50, N); i++) fn(i); // warm up
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fn(i);
  return (performance.now() - t0) / N;
}

export async function run(): Promise<void> {
  const signer = newSigner();
  const trusted = new Set([signer.publicKey]);
  const action = (i: number): Action => ({
    actionId: `act-${i.toString(16).padStart(16, '0')}`, verb: 'start', target: { vmid: 159, node: 'node-b', name: 'db-empleos' }, params: {},
    incidentId: `inc-01jbench${i}`, proposer: 'runbook', requestedBy: 'decision', rationale: 'guest stopped while it should run: start it', needsApproval: false, attempt: 0,
  });
  const sealed = Array.from({ length: N }, (_, i) => sealAction(action(i), signer, 600_000));
  const envelopeMs = time((i) => encodeEnvelope(subjects.action('approved'), makeEnvelope('decision', 'ActionApproved', sealed[i], {})));
  const signMs = time((i) => sealAction(action(i), signer, 600_000));
  const verifyMs = time((i) => {
    if (!checkSeal(sealed[i], trusted).ok) throw new Error('seal did not verify');
  });
  const perAction = signMs + verifyMs;
  const remediationMs = Math.min(...REFERENCE_MANIFEST.guests.map((g) => g.bootMs ?? Infinity));
  const share = perAction / remediationMs;
  emit({
    bench: 'seal', n: N, signMs: round(signMs, 4), verifyMs: round(verifyMs, 4), perActionMs: round(perAction, 4), envelopeMs: round(envelopeMs, 4),
    ratioVsEnvelope: round(perAction / envelopeMs, 2), remediationFloorMs: remediationMs, shareOfRemediation: round(share, 6), goal: 'sign+verify < 1% of a remediation', pass: share < 0.01,
  });
}

if (isMain(import.meta.url)) await run();
