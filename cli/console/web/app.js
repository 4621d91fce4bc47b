// The console page: state from the live feed (/api/live, SSE), actions through /api/*.
// preact + htm, no build step; every module is served by the console itself.
import { render } from 'preact';
import { useEffect, useReducer, useState } from 'preact/hooks';
import { html } from 'htm/preact';
import { Board } from './board.js';
import { Approvals, Chat, EventFeed, Incidents } from './panels.js';
import { Workflows } from './chaos.js';

export async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error?.message ?? `${res.status} ${res.statusText}`);
  return data;
}

const initial = { status: undefined, live: 'connecting', feed: [], workflows: {}, problem: undefined };
const FEED_MAX = 60;

function reducer(s, a) {
  switch (a.type) {
    case 'live': return { ...s, live: a.live };
    case 'problem': return { ...s, problem: a.message };
    case 'status': return { ...s, status: a.status, problem: undefined };
    case 'fleet': return onFleet(s, a.msg);
    default: return s;
  }
}

/** A fleet message: patch the board at once (the next snapshot confirms it), feed, workflow runs. */
function onFleet(s, msg) {
  const feed = [msg, ...s.feed].slice(0, FEED_MAX);
  let status = s.status;
  let workflows = s.workflows;
  if (status && msg.subject.startsWith('fleet.events.guest.') && msg.data?.vmid !== undefined) {
    const d = msg.data;
    status = { ...status, guests: status.guests.map((g) => (g.vmid === d.vmid ? { ...g, state: d.state ?? g.state, health: d.health ?? g.health, node: d.node ?? g.node } : g)) };
  }
  if (msg.subject.startsWith('fleet.workflows.')) {
    const w = msg.data;
    const run = workflows[w.workflowId] ?? { workflowId: w.workflowId, kind: w.kind, events: [], status: 'running', startedAt: msg.ts };
    const next = { ...run, events: [...run.events, { event: w.event, ts: msg.ts, vmid: w.vmid, node: w.node, layer: w.layer, detail: w.detail }].slice(-200) };
    if (w.event === 'WORKFLOW.ENDED') {
      next.status = w.detail?.status ?? 'done';
      next.output = w.detail?.output;
    }
    workflows = { ...workflows, [w.workflowId]: next };
  }
  return { ...s, feed, status, workflows };
}

function useLive(dispatch) {
  useEffect(() => {
    const es = new EventSource('/api/live');
    es.onopen = () => dispatch({ type: 'live', live: 'live' });
    es.onerror = () => dispatch({ type: 'live', live: 'reconnecting' });
    es.addEventListener('status', (e) => dispatch({ type: 'status', status: JSON.parse(e.data) }));
    es.addEventListener('fleet', (e) => dispatch({ type: 'fleet', msg: JSON.parse(e.data) }));
    es.addEventListener('problem', (e) => dispatch({ type: 'problem', message: JSON.parse(e.data).message }));
    return () => es.close();
  }, []);
}

function ThemeToggle() {
  const [theme, setTheme] = useState(() => localStorage.getItem('homeostat-theme') ?? 'auto');
  useEffect(() => {
    if (theme === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    localStorage.setItem('homeostat-theme', theme);
  }, [theme]);
  const next = { auto: 'dark', dark: 'light', light: 'auto' }[theme];
  return html`<button type="button" class="theme" onClick=${() => setTheme(next)} aria-label=${`Colour theme: ${theme}. Switch to ${next}`}>Theme: ${theme}</button>`;
}

function Header({ status, live }) {
  const sum = status?.summary;
  return html`<header class="top">
    <h1>homeostat</h1>
    ${sum && html`<p class="summary" data-testid="summary">fleet <strong>${status.fleet}</strong>: ${sum.ok}/${sum.guests} guests as desired · ${sum.openIncidents} open incident(s) · ${sum.pendingApprovals} waiting for approval${status.advisor ? html` · advisor ${status.advisor.available ? 'available' : 'unavailable'}` : ''}</p>`}
    <p class=${`live live-${live}`} role="status" data-testid="live">${live === 'live' ? '● live' : live === 'reconnecting' ? '○ reconnecting…' : '○ connecting…'}</p>
    <${ThemeToggle} />
  </header>`;
}

function App() {
  const [s, dispatch] = useReducer(reducer, initial);
  useLive(dispatch);
  const status = s.status;
  return html`
    <${Header} status=${status} live=${s.live} />
    ${s.problem && html`<p class="problem" role="alert">${s.problem}</p>`}
    ${status?.api && !status.api.available && html`<p class="problem" role="alert">PVE API unavailable since ${status.api.since}: ${status.api.reason ?? ''}</p>`}
    <main id="main">
      ${status ? html`<${Board} status=${status} />` : html`<p class="loading">Waiting for the fleet…</p>`}
      <div class="columns">
        <div class="col">
          <${Approvals} approvals=${status?.approvals ?? []} />
          <${Incidents} incidents=${status?.incidents ?? []} feed=${s.feed} />
          <${Chat} />
        </div>
        <div class="col">
          <${Workflows} status=${status} runs=${s.workflows} />
          <${EventFeed} feed=${s.feed} />
        </div>
      </div>
    </main>`;
}

const root = document.getElementById('root');
root.textContent = '';
render(html`<${App} />`, root);
