// How long analysis takes from receiving an event to having stored the incident messages it
// caused: the agent's own share of the loop, apart from the bus and the other processes.
const KEEP = 10_000;

export class LatencyLog {
  private readonly samples: number[] = [];
  private next = 0;
  count = 0;

  record(ms: number): void {
    if (this.samples.length < KEEP) this.samples.push(ms);
    else this.samples[this.next++ % KEEP] = ms;
    this.count++;
  }

  stats(): { n: number; p50Ms: number; p99Ms: number; maxMs: number } {
    const s = [...this.samples].sort((a, b) => a - b);
    const at = (p: number) => (s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] * 1000) / 1000 : Number.NaN);
    return { n: this.count, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
  }
}
