// The web console: `homeostat up` serves it next to the agents, `homeostat console` alone.
import { Bus, signerFromSeed, type BusOptions, type Signer } from '../../bus/mod.ts';
import { type Logger } from '../../core/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { startConsole, type ConsoleServer } from './server.ts';

export { checkConsoleAccess, startConsole, type ConsoleServer, type ConsoleOptions } from './server.ts';

/** Its own NATS connection as the operator (`connect`: the operator's credentials), then the
 *  server; close() ends both. */
export async function openConsole(o: { natsUrl: string; fleet: Fleet; log: Logger; port: number; host?: string; token?: string; connect?: Omit<BusOptions, 'servers' | 'source' | 'log'>; signer?: Signer }): Promise<ConsoleServer> {
  const bus = await Bus.connect({ ...o.connect, servers: o.natsUrl, source: 'console', log: o.log });
  try {
    // the operator's key signs approvals: the one it connects with, unless given
    const signer = o.signer ?? (o.connect?.seed ? signerFromSeed(o.connect.seed) : undefined);
    const server = await startConsole({ bus, fleet: o.fleet, log: o.log, port: o.port, host: o.host, token: o.token, signer });
    return { ...server, close: async () => {
      await server.close();
      await bus.stop();
    } };
  } catch (e) {
    await bus.stop();
    throw e;
  }
}
