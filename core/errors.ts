// One registry of every error code a user can see, each with a one-line hint on what to do.
export const ErrorCodes = {
  HOMEOSTAT_ERR_CONFIG: 'fix the named setting and start again',
  HOMEOSTAT_ERR_USAGE: 'see `homeostat --help`',
  HOMEOSTAT_ERR_MANIFEST: 'fix the fleet manifest at the named path',
  HOMEOSTAT_ERR_NATS_MISSING: 'install nats-server (Debian: apt-get install -y nats-server) or pass --nats URL',
  HOMEOSTAT_ERR_NATS_UNAVAILABLE: 'check that nats-server is running and NATS_URL / --nats points at it',
  HOMEOSTAT_ERR_TIMEOUT: 'the other side did not answer in time; is the agent running (`homeostat up`)?',
  HOMEOSTAT_ERR_INVALID_MESSAGE: 'the message did not match the wire schema; it was sent to fleet.dlq.>',
  HOMEOSTAT_ERR_PVE_AUTH: 'check PVE_TOKEN_ID / PVE_TOKEN_SECRET and the token privileges',
  HOMEOSTAT_ERR_PVE_NOT_FOUND: 'the node, guest or task does not exist on the PVE side',
  HOMEOSTAT_ERR_PVE_BAD_REQUEST: 'PVE rejected the parameters of the call',
  HOMEOSTAT_ERR_PVE_UNAVAILABLE: 'the PVE API is unreachable or failing; check PVE_URL and the host',
  HOMEOSTAT_ERR_PVE_TIMEOUT: 'the PVE API or task did not finish in time',
  HOMEOSTAT_ERR_PVE_UNCERTAIN: 'PVE did not answer a call that changes state; it may have run it: see the guest\'s task list (homeostat looks there before calling again)',
  HOMEOSTAT_ERR_PVE_REFUSED: 'PVE refused the operation in the guest\'s current state (already running, not running, locked); check the guest',
  HOMEOSTAT_ERR_PVE_TASK_FAILED: 'the PVE task ended with an error; see its log',
  HOMEOSTAT_ERR_PVE_TLS: 'set PVE_CA_FILE to the cluster CA, or PVE_INSECURE=1 to skip verification explicitly',
  HOMEOSTAT_ERR_LOCKED: 'another action holds this guest; wait for it to finish',
  HOMEOSTAT_ERR_POLICY_DENIED: 'the policy gate refused the action; see the decision for the reason',
  HOMEOSTAT_ERR_DRY_RUN: 'HOMEOSTAT_DRY_RUN (or policies.dryRun) is on: decisions are made and recorded, nothing is executed',
  HOMEOSTAT_ERR_ACTION_REJECTED: 'the action agent refused an action that was not signed by the decision agent (see fleet.dlq.>); only the decision agent may approve actions',
  HOMEOSTAT_ERR_AUTH: 'NATS refused the credentials: set NATS_CREDS (or --creds) to an identity file from <data-dir>/creds/',
  HOMEOSTAT_ERR_NOT_FOUND: 'no such id; list them with `homeostat incidents` or `homeostat status`',
  HOMEOSTAT_ERR_ALREADY_RESOLVED: 'it is closed already: nothing to do (homeostat trace <id> shows how it ended)',
  HOMEOSTAT_ERR_LLM_UNAVAILABLE: 'the Ollama advisor is not reachable; homeostat keeps healing by runbooks',
  HOMEOSTAT_ERR_LLM_INVALID: 'the model output was discarded; the runbook floor applies',
  HOMEOSTAT_ERR_WORKFLOW: 'the workflow failed; see `homeostat events --subject fleet.workflows.>`',
  HOMEOSTAT_ERR_EXPERIMENT: 'fix the chaos experiment file at the named field',
  HOMEOSTAT_ERR_DATA_DIR_IN_USE: 'one `homeostat up` per data directory: stop the other one or pass --data-dir DIR',
  HOMEOSTAT_ERR_PORT_IN_USE: 'pick free ports (0 = any free port) for the flags named',
  HOMEOSTAT_ERR_NOT_CONFIRMED: 'run it on a terminal to confirm, or pass --yes',
  HOMEOSTAT_ERR_AMBIGUOUS: 'the prefix matches more than one id; give more characters',
  HOMEOSTAT_ERR_AGENT_PROCESS: 'an agent process could not start; its log lines on stderr say why',
  HOMEOSTAT_ERR_INTERNAL: 'a bug: please report it with the log line',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class HomeostatError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HomeostatError';
    this.code = code;
  }
  get hint(): string {
    return ErrorCodes[this.code];
  }
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isHomeostatError(e: unknown, code?: ErrorCode): e is HomeostatError {
  return e instanceof HomeostatError && (code === undefined || e.code === code);
}

/** One line for the user: `CODE: message (hint)`. Never a stack trace. */
export function describeError(e: unknown): string {
  if (e instanceof HomeostatError) return `${e.code}: ${e.message} (${e.hint})`;
  if (e instanceof Error) return `HOMEOSTAT_ERR_INTERNAL: ${e.message}`;
  return `HOMEOSTAT_ERR_INTERNAL: ${String(e)}`;
}
