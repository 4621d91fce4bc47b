// What test/ and bench/ share: the simulator's /sim API client, the Ollama test double and its
// fixtures, polling. Imports the library folders only (never test/, bench/ or cli/).
export * from './sim-api.ts';
export * from './ollama-double.ts';
export * from './llm-fixtures.ts';
export * from './poll.ts';
export * from './processes.ts';
