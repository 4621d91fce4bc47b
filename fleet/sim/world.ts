// Everything a request handler may touch, passed in (no module-level state).
import { type Logger } from '../../core/mod.ts';
import type { FaultRegistry } from './faults.ts';
import type { GuestOps } from './guest-ops.ts';
import type { HookRunner } from './hooks.ts';
import type { SimModel, SimNode } from './model.ts';
import type { ParamValues } from './params.ts';
import type { TaskRegistry } from './tasks.ts';

export interface SimWorld {
  model: SimModel;
  tasks: TaskRegistry;
  ops: GuestOps;
  faults: FaultRegistry;
  hooks: HookRunner;
  timeScale: number;
  log: Logger;
}

export interface PveRequest {
  params: ParamValues;
  /** The path's {node}, resolved (online, or fenced for the few calls allowed there). */
  node?: SimNode;
  /** Authenticated user: the token id, `user@realm!token`. */
  user: string;
}

export type PveHandler = (w: SimWorld, req: PveRequest) => unknown;

/** A list answer that also carries PVE's `total` next to `data`. */
export class WithTotal {
  constructor(
    readonly data: unknown[],
    readonly total: number,
  ) {}
}
