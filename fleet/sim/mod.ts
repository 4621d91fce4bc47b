// The PVE-API simulator ("twin"): public face of fleet/sim.
export { startSimulator, type SimulatorHandle, type SimulatorOptions } from './simulator.ts';
export { FAULT_KINDS, type Fault, type FaultKind } from './faults.ts';
export type { SimWorld } from './world.ts';
export type { SimGuest, SimNode, Phase } from './model.ts';
export { defaultSnippetsDir, HOOK_PHASES, type HookPhase } from './hooks.ts';
