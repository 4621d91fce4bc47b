// The official PVE API schema for the endpoints the simulator speaks (copies of
// ../shared/pve-api/schema-subset.json and schema-extra.json), and the route table built from it.
import { readFileSync } from 'node:fs';

export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  additionalProperties?: number | boolean | JsonSchema;
  optional?: number | boolean;
  enum?: (string | number)[];
  pattern?: string;
  format?: string | Record<string, JsonSchema>;
  minimum?: number | string;
  maximum?: number | string;
  maxLength?: number;
  minLength?: number;
  default?: unknown;
  requires?: string;
  description?: string;
}

export interface ApiMethod {
  method: string;
  name?: string;
  parameters?: JsonSchema;
  returns?: JsonSchema;
}

export type ApiSchema = Record<string, Record<string, ApiMethod>>;

let cached: ApiSchema | undefined;

const load = (file: string) => JSON.parse(readFileSync(new URL(file, import.meta.url), 'utf8')) as ApiSchema;

/** The schema subset and the extra endpoints (disjoint paths), parsed once per process. */
export function pveSchema(): ApiSchema {
  cached ??= { ...load('./pve-schema-subset.json'), ...load('./pve-schema-extra.json') };
  return cached;
}

// PVE has snapshots for VMs as well; the adapter calls them for qemu guests. They are not in the
// subset, so their parameters are written here in the same format (taken from the lxc ones).
function extraMethods(s: ApiSchema): ApiSchema {
  const lxcSnap = s['/nodes/{node}/lxc/{vmid}/snapshot'];
  const lxcRollback = s['/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback'];
  if (!lxcSnap || !lxcRollback) return {};
  const post = structuredClone(lxcSnap.POST);
  post.parameters!.properties!.vmstate = { type: 'boolean', optional: 1, description: 'Save the vmstate' };
  return {
    '/nodes/{node}/qemu/{vmid}/snapshot': { GET: structuredClone(lxcSnap.GET), POST: post },
    '/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback': { POST: structuredClone(lxcRollback.POST) },
  };
}

export interface Route {
  template: string;
  regex: RegExp;
  names: string[];
  methods: Record<string, ApiMethod>;
}

export interface RouteMatch {
  route: Route;
  pathParams: Record<string, string>;
}

export function buildRoutes(schema: ApiSchema = pveSchema()): Route[] {
  const all = { ...extraMethods(schema), ...schema };
  return Object.entries(all).map(([template, methods]) => {
    const names: string[] = [];
    const src = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{([^}]+)\\?\}/g, (_m, n: string) => {
      names.push(n);
      return '([^/]+)';
    });
    return { template, regex: new RegExp(`^${src}/?$`), names, methods };
  });
}

export function matchRoute(routes: Route[], path: string): RouteMatch | undefined {
  for (const route of routes) {
    const m = route.regex.exec(path);
    if (!m) continue;
    const pathParams: Record<string, string> = {};
    try {
      route.names.forEach((n, i) => (pathParams[n] = decodeURIComponent(m[i + 1])));
    } catch {
      return undefined;
    }
    return { route, pathParams };
  }
  return undefined;
}
