// Events xstate sends a parent when a spawned or invoked child settles. The machines route them
// by child id (`start:159:0`, `shutdown:159`, …), so the ids carry the vmid and attempt.

export interface ChildDoneEvent {
  type: `xstate.done.actor.${string}`;
  actorId: string;
  output: unknown;
}

export interface ChildErrorEvent {
  type: `xstate.error.actor.${string}`;
  actorId: string;
  error: unknown;
}

/** Error thrown when a machine runs with an actor the runner forgot to bind with `.provide()`. */
export class ActorNotBoundError extends Error {
  readonly code = 'HOMEOSTAT_ERR_ACTOR_NOT_BOUND';
  constructor(readonly actor: string) {
    super(`actor "${actor}" is not bound: pass it with machine.provide({ actors: { ${actor} } })`);
    this.name = 'ActorNotBoundError';
  }
}

/** Default body of every I/O actor: fail loudly (and so through the machine's error path). */
export function notBound(actor: string): () => Promise<never> {
  return () => Promise.reject(new ActorNotBoundError(actor));
}
