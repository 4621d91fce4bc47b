// Resolves on the first SIGINT/SIGTERM; a second one forces exit (a stuck stop never traps the user).
// A process started by `up` (HOMEOSTAT_PARENT_PIPE=1, stdin a pipe from `up`) also stops when that
// pipe closes: `up` is gone, however it went (SIGKILL, a crash, a signal mid-start-up), so its agent
// processes never outlive it. If the drain does not finish within 5 s, the process exits anyway.
export const PARENT_PIPE_ENV = 'HOMEOSTAT_PARENT_PIPE';

export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const lifeline = process.env[PARENT_PIPE_ENV] === '1';
    const on = (sig: NodeJS.Signals) => {
      if (seen) process.exit(130);
      seen = true;
      // stopping now: the open pipe must not keep the stopped process alive
      if (lifeline) process.stdin.destroy();
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
    if (lifeline) {
      const parentGone = () => {
        if (seen) return;
        on('SIGTERM');
        setTimeout(() => process.exit(0), 5000).unref();
      };
      process.stdin.on('end', parentGone);
      process.stdin.on('close', parentGone);
      process.stdin.on('error', parentGone);
      process.stdin.resume();
    }
  });
}
