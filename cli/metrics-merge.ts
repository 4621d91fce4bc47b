// `up --replicas N`: each agent process serves its own metrics (`--metrics-port 0`, its URL in its
// ready line); up's /metrics merges them with its own registry, so Prometheus scrapes one endpoint
// and sees the fleet-wide figures a single process would show: counters, histograms and gauges
// are summed over processes (sensing's replicas each count the guests of the nodes they hold),
// state gauges declared with `aggregator: 'max'` (homeostat_pve_up) take the largest. A process that
// does not answer within the timeout is left out of that scrape (it is restarting), and counted in
// homeostat_metrics_sources{state}.
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { MetricsSource } from './metrics-server.ts';

type Json = MetricObjectWithValues<MetricValue<string>>[];

export function mergedMetrics(own: Registry, sources: () => string[], timeoutMs = 2000): MetricsSource {
  const json = async (): Promise<Json> => {
    const urls = sources();
    const got = await Promise.all(urls.map(async (url) => {
      try {
        const r = await fetch(url.replace(/\/metrics$/, '/metrics.json'), { signal: AbortSignal.timeout(timeoutMs) });
        return r.ok ? ((await r.json()) as Json) : undefined;
      } catch {
        return undefined;
      }
    }));
    const answered = got.filter((g) => g !== undefined);
    const status = [{
      name: 'homeostat_metrics_sources',
      help: 'Agent processes whose metrics this scrape merged (answered) or could not reach (missing)',
      type: 'gauge',
      aggregator: 'sum',
      values: [{ value: answered.length, labels: { state: 'answered' } }, { value: urls.length - answered.length, labels: { state: 'missing' } }],
    }] as unknown as Json;
    return AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...answered, status]).getMetricsAsJSON();
  };
  return {
    contentType: own.contentType,
    getMetricsAsJSON: json,
    metrics: async () => AggregatorRegistry.aggregate([await json()]).metrics(),
  };
}
