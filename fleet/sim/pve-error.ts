// What a PVE API handler throws to answer with an HTTP error: the message becomes PVE's status
// line (reason phrase) and `message`; 400s carry per-parameter `errors`.
export class PveHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message);
    this.name = 'PveHttpError';
  }
}

export function paramError(errors: Record<string, string>): PveHttpError {
  return new PveHttpError(400, 'Parameter verification failed.', errors);
}

/** A plain `die "…\n"` in a PVE handler: HTTP 500 with the message as reason. */
export function pveDie(message: string): PveHttpError {
  return new PveHttpError(500, message);
}
