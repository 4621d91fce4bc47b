// Receiving side of bench/bus.ts, in its own process as an agent would be.
import { connect } from '@nats-io/transport-node';
import { decode } from '../bus/mod.ts';

const [url, subject, mode, countStr] = process.argv.slice(2);
const count = Number(countStr);
const nc = await connect({ servers: url });
let got = 0;
let bad = 0;
let cpu0 = process.cpuUsage();
nc.subscribe(subject, {
  callback: (_e, m) => {
    if (mode === 'validated') {
      const r = decode(m.subject, m.data);
      if (!r.ok) bad++;
    }
    if (++got === count) {
      const cpu = process.cpuUsage(cpu0);
      process.send!({ done: true, bad, cpuUs: cpu.user + cpu.system });
    }
  },
});
await nc.flush();
cpu0 = process.cpuUsage();
process.send!({ ready: true });
process.on('message', (m: { reset?: boolean; exit?: boolean }) => {
  if (m.reset) got = 0;
  if (m.exit) void nc.close().then(() => process.exit(0));
});
