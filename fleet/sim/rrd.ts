// The history behind `.../rrddata`: what the metrics walk sampled, consolidated like PVE's RRD
// files (pvestatd writes every 10 s into rows of 1 min, 30 min, 3 h, 12 h and 1 week, 70 rows
// each). A row without samples is answered with its `time` only, as PVE does for unknown values.

/** Row width in seconds per timeframe, as in PVE::RRD. */
const RESOLUTION = { hour: 60, day: 1800, week: 10_800, month: 43_200, year: 604_800 } as const;
export type Timeframe = keyof typeof RESOLUTION;
const RESOLUTIONS = Object.values(RESOLUTION);
const ROWS = 70;

export type RrdValues = Record<string, number>;

interface Row {
  time: number;
  n: number;
  sum: RrdValues;
  max: RrdValues;
}

export class RrdHistory {
  private readonly rows = new Map<number, Row[]>();

  add(values: RrdValues, nowSec = Date.now() / 1000): void {
    // every guest, every second: no per-call entries arrays (a 5,000-guest twin's tick was 3 % of
    // a layered boot's CPU in the bench's one process)
    const keys = Object.keys(values);
    for (const res of RESOLUTIONS) {
      const time = Math.floor(nowSec / res) * res;
      let list = this.rows.get(res);
      if (!list) this.rows.set(res, (list = []));
      let row = list[list.length - 1];
      if (row?.time !== time) {
        row = { time, n: 0, sum: {}, max: {} };
        list.push(row);
        if (list.length > ROWS) list.shift();
      }
      row.n++;
      for (const k of keys) {
        const v = values[k];
        row.sum[k] = (row.sum[k] ?? 0) + v;
        row.max[k] = Math.max(row.max[k] ?? v, v);
      }
    }
  }

  /** The last 70 rows of the timeframe, oldest first; `cf` AVERAGE (default) or MAX. */
  query(timeframe: Timeframe, cf: 'AVERAGE' | 'MAX' = 'AVERAGE', nowSec = Date.now() / 1000): Record<string, number>[] {
    const res = RESOLUTION[timeframe];
    const last = Math.floor(nowSec / res) * res;
    const byTime = new Map((this.rows.get(res) ?? []).map((r) => [r.time, r]));
    const out: Record<string, number>[] = [];
    for (let i = ROWS - 1; i >= 0; i--) {
      const time = last - i * res;
      const row = byTime.get(time);
      const point: Record<string, number> = { time };
      if (row) {
        for (const k of Object.keys(row.sum)) point[k] = cf === 'MAX' ? row.max[k] : row.sum[k] / row.n;
      }
      out.push(point);
    }
    return out;
  }
}
