// Envelope publish → validated receive vs raw NATS publish/subscribe of the same bytes, same run.
// Goal: validated throughput >= 50 % of raw.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bus, decode, encode, makeEnvelope, subjects } from '../bus/mod.ts';
import { benchNats, emit, round, stats, isMain } from './harness.ts';

const N = Number(process.env.BENCH_BUS_N ?? 50_000);
const LAT_N = 2000;

const sample = (i: number) => ({ node: 'node-a', vmid: 100 + (i % 900), cpu: 0.25, mem: 1_073_741_824, maxmem: 2_147_483_648, disk: 4_000_000_000, maxdisk: 8_000_000_000 });

/** Publisher here, receiver in its own process (as agents are): raw bytes vs envelope+validation. */
async function throughput(bus: Bus, natsUrl: string, validated: boolean): Promise<number> {
  const subject = subjects.metrics('node-a', 101);
  const pre = encode(subject, makeEnvelope('bench', 'MetricSample', sample(0)));
  const receiver = fork(fileURLToPath(new URL('./bus-receiver.ts', import.meta.url)), [natsUrl, subject, validated ? 'validated' : 'raw', String(N)], {
    execArgv: ['--import', 'tsx'],
  });
  const next = (key: 'ready' | 'done') => new Promise<{ bad?: number }>((r) => {
    const on = (m: Record<string, unknown>) => {
      if (m[key]) {
        receiver.off('message', on);
        r(m as { bad?: number });
      }
    };
    receiver.on('message', on);
  });
  await next('ready');
  const done = next('done');
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    bus.nc.publish(subject, validated ? encode(subject, makeEnvelope('bench', 'MetricSample', sample(i))) : pre);
    if (i % 1000 === 999) await bus.nc.flush();
  }
  const { bad } = await done;
  const secs = (performance.now() - t0) / 1000;
  receiver.send({ exit: true });
  if (bad) throw new Error(`${bad} messages failed validation`);
  return N / secs;
}

async function latency(bus: Bus, validated: boolean): Promise<number[]> {
  const subject = subjects.metrics('node-a', 102);
  const out: number[] = [];
  let sentAt = 0;
  let next!: () => void;
  const sub = bus.nc.subscribe(subject, {
    callback: (_e, m) => {
      if (validated) decode(m.subject, m.data);
      out.push(performance.now() - sentAt);
      next();
    },
  });
  await bus.nc.flush();
  const pre = encode(subject, makeEnvelope('bench', 'MetricSample', sample(1)));
  for (let i = 0; i < LAT_N; i++) {
    const arrived = new Promise<void>((r) => (next = r));
    sentAt = performance.now();
    bus.nc.publish(subject, validated ? encode(subject, makeEnvelope('bench', 'MetricSample', sample(i))) : pre);
    await arrived;
  }
  sub.unsubscribe();
  return out;
}

async function jetstream(bus: Bus, validated: boolean): Promise<number> {
  const M = 3000;
  const t0 = performance.now();
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < M; i++) {
    const subject = subjects.guestEvent('bench', 100 + (i % 500));
    const data = { vmid: 100 + (i % 500), node: 'bench', state: 'running' as const, health: 'healthy' as const };
    batch.push(validated ? bus.publish(subject, 'GuestProbe', data) : bus.js.publish(subject, JSON.stringify(makeEnvelope('bench', 'GuestProbe', data))));
    if (batch.length >= 100) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  return M / ((performance.now() - t0) / 1000);
}

export async function run(): Promise<void> {
  const server = await benchNats();
  const bus = await Bus.connect({ servers: server.url, source: 'bench' });
  try {
    await throughput(bus, server.url, false); // warm-up
    await throughput(bus, server.url, true);
    const raw = await throughput(bus, server.url, false);
    const val = await throughput(bus, server.url, true);
    const latRaw = stats(await latency(bus, false));
    const latVal = stats(await latency(bus, true));
    emit({ bench: 'bus', metric: 'throughput_msgs_per_s', messages: N, raw: Math.round(raw), validated: Math.round(val), ratio: round(val / raw), goal: '>= 0.5', pass: val / raw >= 0.5 });
    emit({ bench: 'bus', metric: 'latency_ms', raw_p50: latRaw.p50, raw_p99: latRaw.p99, validated_p50: latVal.p50, validated_p99: latVal.p99, ratio_p50: round(latVal.p50 / latRaw.p50), ratio_p99: round(latVal.p99 / latRaw.p99) });
    const jsRaw = await jetstream(bus, false);
    const jsVal = await jetstream(bus, true);
    emit({ bench: 'bus', metric: 'jetstream_publish_per_s', raw: Math.round(jsRaw), validated: Math.round(jsVal), ratio: round(jsVal / jsRaw) });
  } finally {
    await bus.stop();
    await server.cleanup();
  }
}

if (isMain(import.meta.url)) await run();
