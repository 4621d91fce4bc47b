// Logging: the structural `Logger` every library folder takes (pino loggers satisfy it, so bus/,
// fleet/ and workflows/ never need pino), and the factory the agents and the CLI use: JSON on
// stderr (stdout is for ready lines and command output), secrets redacted by path.
import { pino, destination as pinoDestination, type Logger as PinoLogger } from 'pino';

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
  child() {
    return silentLogger;
  },
};

export type AppLogger = PinoLogger;

export const REDACT_PATHS = [
  'tokenSecret', '*.tokenSecret', 'pveTokenSecret', '*.pveTokenSecret', 'PVE_TOKEN_SECRET', '*.PVE_TOKEN_SECRET',
  'config.PVE_TOKEN_SECRET', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
];

export function createLogger(level: string = 'info', destination: NodeJS.WritableStream = process.stderr): AppLogger {
  return pino({ level, base: { app: 'homeostat' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, pinoDestination({ fd: destination === process.stdout ? 1 : 2, sync: true }));
}
