// Boot, shutdown, failover and chaos: start them, follow their progress live, and read the chaos
// report with each fault's MTTR against its SLO as a chart (uPlot).
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from 'htm/preact';
import uPlot from 'uplot';
import { api } from './app.js';

const secs = (ms) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);

function MttrChart({ report }) {
  const ref = useRef(null);
  useEffect(() => {
    const faults = report.faults;
    if (!ref.current || !faults.length) return undefined;
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue('--fg').trim() || '#222';
    const ok = css.getPropertyValue('--ok').trim() || '#2a7';
    const bad = css.getPropertyValue('--bad').trim() || '#c33';
    const xs = faults.map((_, i) => i + 1);
    // seconds on a log scale: a sub-second heal and a five-minute SLO both stay readable
    const data = [xs, faults.map((f) => (f.mttrMs === undefined ? null : Math.max(f.mttrMs, 10) / 1000)), faults.map((f) => f.sloMs / 1000)];
    const axis = { stroke: fg, grid: { stroke: 'rgba(128,128,128,.2)' }, ticks: { stroke: 'rgba(128,128,128,.4)' } };
    const plot = new uPlot({
      width: Math.min(560, ref.current.clientWidth || 560),
      height: 220,
      title: 'MTTR per fault vs SLO (log scale)',
      scales: { x: { time: false, range: [0.4, faults.length + 0.6] }, y: { distr: 3, log: 10, range: (_u, min, max) => [Math.min(0.1, min), Math.max(max, ...data[2]) * 2] } },
      axes: [
        { ...axis, label: 'fault', splits: () => xs, values: (_u, ticks) => ticks.map((t) => (faults[t - 1] ? `#${faults[t - 1].index} ${faults[t - 1].kind}` : '')) },
        { ...axis, label: 'seconds' },
      ],
      series: [
        { label: 'fault', value: (_u, v) => (v == null || !faults[v - 1] ? '–' : `#${faults[v - 1].index} ${faults[v - 1].kind} ${faults[v - 1].target}`) },
        { label: 'MTTR (s)', stroke: faults.every((f) => f.withinSlo) ? ok : bad, fill: faults.every((f) => f.withinSlo) ? ok : bad, paths: uPlot.paths.bars({ size: [0.35, 50], align: -1 }), points: { show: false } },
        { label: 'SLO (s)', stroke: fg, width: 2, dash: [4, 3], paths: uPlot.paths.bars({ size: [0.35, 50], align: 1 }), points: { show: false } },
      ],
    }, data, ref.current);
    return () => plot.destroy();
  }, [report]);
  return html`<figure class="chart" data-testid="mttr-chart">
    <div ref=${ref}></div>
    <figcaption class="sr-only">MTTR of each fault in seconds next to its SLO; the table below has the same figures.</figcaption>
  </figure>`;
}

function ChaosReport({ report }) {
  if (!report?.faults) return html`<p class="problem">${report?.error ?? 'no report'}</p>`;
  return html`<div class="report" data-testid="chaos-report">
    <p><strong class=${report.passed ? 'ok' : 'bad'}>${report.dryRun ? 'DRY RUN' : report.passed ? 'PASS' : 'FAIL'}</strong> ${report.experiment}${report.reason ? html` — <span class="muted">${report.reason}</span>` : ''}</p>
    ${!report.dryRun && html`<${MttrChart} report=${report} />`}
    <table class="faults">
      <thead><tr><th scope="col">#</th><th scope="col">fault</th><th scope="col">target</th><th scope="col">MTTR</th><th scope="col">SLO</th><th scope="col">result</th></tr></thead>
      <tbody>${report.faults.map((f) => html`<tr key=${f.index}>
        <td>${f.index}</td><td>${f.kind}</td><td>${f.target}</td><td>${secs(f.mttrMs)}</td><td>${secs(f.sloMs)}</td>
        <td class=${f.withinSlo ? 'ok' : 'bad'}>${f.error ?? (f.withinSlo ? '✓ within SLO' : f.injectedAt === undefined ? '✗ not injected' : '✗ over SLO')}</td>
      </tr>`)}</tbody>
    </table>
    <p class="muted">rollback: ${report.rollback?.ran ? (report.rollback.ok ? 'done' : `failed: ${report.rollback.error ?? ''}`) : 'did not run'}</p>
  </div>`;
}

function Run({ run }) {
  const last = run.events.at(-1);
  const healthy = run.events.filter((e) => e.event === 'GUEST.HEALTHY' || e.event === 'GUEST.STOPPED' || e.event === 'GUEST.RECOVERED').length;
  const faults = run.events.filter((e) => e.event.startsWith('FAULT.HEALED')).length;
  return html`<li class=${`run r-${run.status}`} data-workflow=${run.workflowId} data-kind=${run.kind} data-status=${run.status}>
    <p><strong>${run.kind}</strong> <code>${run.workflowId}</code> <span class="badge">${run.status}</span></p>
    <p class="muted" aria-live="polite">${run.events.length} step(s)${healthy ? `, ${healthy} guest(s) done` : ''}${faults ? `, ${faults} fault(s) healed` : ''}; last: ${last?.event ?? '–'}${last?.vmid ? ` ${last.vmid}` : ''}${last?.node ? ` ${last.node}` : ''}</p>
    ${run.status !== 'running' && run.kind === 'chaos' && html`<${ChaosReport} report=${run.output} />`}
  </li>`;
}

export function Workflows({ status, runs }) {
  const [experiments, setExperiments] = useState([]);
  const [experiment, setExperiment] = useState('');
  const [node, setNode] = useState('');
  const [dryRun, setDryRun] = useState(false);
  const [msg, setMsg] = useState('');
  useEffect(() => {
    api('/api/experiments').then((l) => {
      setExperiments(l.filter((e) => !e.error));
      if (l[0]) setExperiment(l.find((e) => !e.error)?.name ?? '');
    }, () => undefined);
  }, []);
  const nodes = status?.nodes.map((n) => n.node) ?? [];
  const start = async (body, what) => {
    if ((body.kind === 'shutdown' || body.kind === 'failover') && !body.dryRun && !window.confirm(`${what}: are you sure?`)) return;
    try {
      const r = await api('/api/workflows', body);
      setMsg(`${what}: ${r.existing ? 'already running as' : 'started'} ${r.workflowId}`);
    } catch (e) {
      setMsg(`${what}: ${e.message}`);
    }
  };
  const list = Object.values(runs).sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''));
  return html`<section aria-labelledby="wf-h" class="panel">
    <h2 id="wf-h">Workflows and chaos</h2>
    <div class="controls">
      <label><input type="checkbox" checked=${dryRun} onChange=${(e) => setDryRun(e.currentTarget.checked)} /> dry run</label>
      <button type="button" onClick=${() => start({ kind: 'boot', dryRun }, 'Boot')}>Boot</button>
      <button type="button" onClick=${() => start({ kind: 'shutdown', dryRun }, 'Shutdown')}>Shutdown</button>
      <span class="group">
        <label for="wf-node">node</label>
        <select id="wf-node" value=${node} onChange=${(e) => setNode(e.currentTarget.value)}>
          <option value="">–</option>${nodes.map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
        <button type="button" disabled=${!node} onClick=${() => start({ kind: 'failover', node }, `Failover ${node}`)}>Failover</button>
      </span>
      <span class="group">
        <label for="wf-exp">experiment</label>
        <select id="wf-exp" value=${experiment} onChange=${(e) => setExperiment(e.currentTarget.value)}>
          ${experiments.map((x) => html`<option value=${x.name} title=${x.description}>${x.name}</option>`)}
        </select>
        <button type="button" disabled=${!experiment} onClick=${() => start({ kind: 'chaos', experiment, dryRun }, `Chaos ${experiment}`)}>Run chaos</button>
      </span>
    </div>
    <p role="status" class="muted" data-testid="workflow-result">${msg}</p>
    ${list.length === 0 ? html`<p class="empty">No workflow seen since this page opened${status?.workflows?.length ? ` (${status.workflows.length} running)` : ''}.</p>` : html`<ul class="runs" data-testid="runs">${list.map((r) => html`<${Run} key=${r.workflowId} run=${r} />`)}</ul>`}
  </section>`;
}
