// The PVE twin of bench/boot.ts in a process of its own (BENCH_BOOT_TWIN=process), as PVE runs on
// its own hosts: its CPU (every guest's metrics each second, every health check and API call
// answered) then does not share the agents' one event loop. Forked with the generated fleet's
// options (generateFleet is deterministic); sends {url, tokenId, tokenSecret} once listening and
// its CPU time on {cpu: true}; stops on {exit: true} or when its parent goes.
import { generateFleet } from '../fleet/reference-fleet.ts';
import { startSimulator } from '../fleet/sim/mod.ts';

const [guests, timeScale] = process.argv.slice(2).map(Number);
const fleet = generateFleet({ guests, layers: 10, policies: { bootConcurrencyPerNode: guests } });
const sim = await startSimulator({ fleet, port: 0, http: true, timeScale });
process.send!({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret });
process.on('message', (m: { exit?: boolean; cpu?: boolean }) => {
  if (m.cpu) {
    const c = process.cpuUsage();
    process.send!({ cpuMs: (c.user + c.system) / 1000 });
  }
  if (m.exit) void sim.stop().then(() => process.exit(0));
});
process.on('disconnect', () => void sim.stop().then(() => process.exit(0)));
