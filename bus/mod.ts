// The wire contract: subjects, schemas, envelope, codec, connection, JetStream, dead letters.
export * from './errors.ts';
export * from './subjects.ts';
export * from './schemas.ts';
export * from './families.ts';
export * from './codec.ts';
export * from './logger.ts';
export * from './connection.ts';
export * from './jetstream.ts';
export * from './bus.ts';
export * from './events.ts';
export * from './kv-records.ts';
export * from './kv.ts';
export * from './consumers.ts';
export * from './lease.ts';
