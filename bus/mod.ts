// The wire contract: subjects, schemas, envelope, codec, connection, JetStream, dead letters.
export * from './subjects.ts';
export * from './schemas.ts';
export * from './families.ts';
export * from './codec.ts';
export * from './connection.ts';
export * from './jetstream.ts';
export * from './bus.ts';
export * from './events.ts';
export * from './kv-records.ts';
export * from './kv.ts';
export * from './seal.ts';
export * from './identity.ts';
export * from './permissions.ts';
export * from './consumers.ts';
export * from './lease.ts';
