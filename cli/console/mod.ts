// The web console: `homeostat up` serves it next to the agents, `homeostat console` alone.
import { Bus, type BusOptions, type Identity, type Logger } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { startConsole, type ConsoleServer } from './server.ts';

export { checkConsoleAccess, startConsole, type ConsoleServer, type ConsoleOptions } from './server.ts';

/** Its own NATS connection as the operator, then the server; close() ends both. `identity`: the
 *  operator's key, which signs approvals; `auth`: connect with it too (a server with auth on). */
export async function openConsole(o: { natsUrl: string; fleet: Fleet; log: Logger; port: number; host?: string; token?: string; identity?: Identity; auth?: boolean; connect?: Omit<BusOptions, 'servers' | 'source' | 'log'> }): Promise<ConsoleServer> {
  const bus = await Bus.connect({ ...o.connect, ...(o.auth && o.identity ? { seed: o.identity.seed } : {}), servers: o.natsUrl, source: 'console', log: o.log });
  try {
    const server = await startConsole({ bus, fleet: o.fleet, log: o.log, port: o.port, host: o.host, token: o.token, identity: o.identity });
    return { ...server, close: async () => {
      await server.close();
      await bus.stop();
    } };
  } catch (e) {
    await bus.stop();
    throw e;
  }
}
