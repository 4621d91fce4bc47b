// Receiving side of bench/bus.ts, in its own process as an agent would be.
import { connect } from '@nats-io/transport-node';
import { decode } from '../bus/mod.ts';

const [url, subject, mode, countStr] = process.argv.slice(2);
const count = Number(countStr);
const nc = await connect({ servers: url });
let got = 0;
let bad = 0;
nc.subscribe(subject, {
  callback: (_e, m) => {
    if (mode === 'validated') {
      const r = decode(m.subject, m.data);
      if (!r.ok) bad++;
    }
    if (++got === count) {
      process.send!({ done: true, bad });
    }
  },
});
await nc.flush();
process.send!({ ready: true });
process.on('message', (m: { reset?: boolean; exit?: boolean }) => {
  if (m.reset) got = 0;
  if (m.exit) void nc.close().then(() => process.exit(0));
});
