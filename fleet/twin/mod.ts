// The PVE-API simulator ("twin"): the endpoints of the official PVE 9 schema subset, tasks,
// fault injection. `homeostat sim` and `homeostat up --sim` run it.
export { startSimulator, type SimulatorHandle, type SimulatorOptions } from './server.ts';
export { SimState, FAULT_KINDS, type FaultKind, type SimFault, type SimGuest } from './state.ts';
export { API_SCHEMA, verifyParams } from './params.ts';
export { parseUpid } from './tasks.ts';
