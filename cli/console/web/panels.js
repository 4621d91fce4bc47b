// Approvals, incidents with their trace, the chat and the live event feed.
import { useEffect, useState } from 'preact/hooks';
import { html } from 'htm/preact';
import { api } from './app.js';

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');

export function Approvals({ approvals }) {
  const [busy, setBusy] = useState({});
  const [msg, setMsg] = useState('');
  const decide = async (verb, a) => {
    setBusy({ ...busy, [a.actionId]: true });
    try {
      await api(`/api/${verb}`, { actionId: a.actionId });
      setMsg(`${verb === 'approve' ? 'Approved' : 'Denied'}: ${a.verb} ${a.target.name ?? ''} (${a.target.vmid})`);
    } catch (e) {
      setMsg(`Could not ${verb} ${a.actionId}: ${e.message}`);
    } finally {
      setBusy((b) => ({ ...b, [a.actionId]: false }));
    }
  };
  return html`<section aria-labelledby="approvals-h" class="panel">
    <h2 id="approvals-h">Waiting for approval <small>${approvals.length}</small></h2>
    ${approvals.length === 0 ? html`<p class="empty">Nothing waits for an operator.</p>` : html`<ul class="approvals" data-testid="approvals">
      ${approvals.map((a) => html`<li key=${a.actionId} data-action=${a.actionId}>
        <p><strong>${a.verb}</strong> ${a.target.name ?? ''} (${a.target.vmid}${a.target.node ? ` on ${a.target.node}` : ''}) <span class="muted">proposed by ${a.proposer ?? '?'}${a.expiresAt ? `, expires ${time(typeof a.expiresAt === 'number' ? new Date(a.expiresAt).toISOString() : a.expiresAt)}` : ''}</span></p>
        ${a.rationale && html`<p class="muted">${a.rationale}</p>`}
        <div class="buttons">
          <button type="button" class="approve" disabled=${busy[a.actionId]} onClick=${() => decide('approve', a)} aria-label=${`Approve ${a.verb} of ${a.target.vmid}`}>Approve</button>
          <button type="button" class="deny" disabled=${busy[a.actionId]} onClick=${() => decide('deny', a)} aria-label=${`Deny ${a.verb} of ${a.target.vmid}`}>Deny</button>
        </div>
      </li>`)}
    </ul>`}
    <p role="status" class="muted" data-testid="approval-result">${msg}</p>
  </section>`;
}

function Trace({ id, onClose }) {
  const [trace, setTrace] = useState(undefined);
  const [err, setErr] = useState('');
  useEffect(() => {
    api(`/api/incidents/${encodeURIComponent(id)}/trace`).then(setTrace, (e) => setErr(e.message));
  }, [id]);
  if (err) return html`<p role="alert">${err}</p>`;
  if (!trace) return html`<p class="muted">Loading the trace…</p>`;
  const t0 = Date.parse(trace.entries[0]?.ts ?? trace.incident.openedAt);
  return html`<div class="trace" data-testid="trace">
    <h3>Trace of ${id} <button type="button" class="link" onClick=${onClose}>close</button></h3>
    <ol class="timeline">${trace.entries.map((e) => html`<li class=${`step-${e.step}`}>
      <span class="offset">+${((Date.parse(e.ts) - t0) / 1000).toFixed(2)} s</span>
      <span class="step">${e.step}</span>
      <span>${e.summary}</span>
    </li>`)}</ol>
  </div>`;
}

export function Incidents({ incidents }) {
  const [open, setOpen] = useState(undefined);
  return html`<section aria-labelledby="incidents-h" class="panel">
    <h2 id="incidents-h">Open incidents <small>${incidents.length}</small></h2>
    ${incidents.length === 0 ? html`<p class="empty">No open incidents.</p>` : html`<ul class="incidents" data-testid="incidents">
      ${incidents.map((i) => html`<li key=${i.id} class=${`sev-${i.severity}`}>
        <p><span class="badge">${i.severity}</span> <strong>${i.title}</strong> <span class="muted">${i.kind} · opened ${time(i.openedAt)}</span></p>
        ${i.symptoms.length > 0 && html`<p class="muted">${i.symptoms.length} symptom(s)${i.suppressed.length ? `, ${i.suppressed.length} suppressed` : ''}</p>`}
        <button type="button" onClick=${() => setOpen(open === i.id ? undefined : i.id)} aria-expanded=${open === i.id}>Trace</button>
        ${open === i.id && html`<${Trace} id=${i.id} onClose=${() => setOpen(undefined)} />`}
      </li>`)}
    </ul>`}
  </section>`;
}

export function Chat() {
  const [q, setQ] = useState('');
  const [log, setLog] = useState([]);
  const [busy, setBusy] = useState(false);
  const ask = async (question, confirm = false) => {
    setBusy(true);
    setLog((l) => [...l, { who: 'you', text: confirm ? `${question} (confirmed)` : question }]);
    try {
      const a = await api('/api/chat', { question, confirm });
      setLog((l) => [...l, { who: 'homeostat', text: a.answer, confirm: a.needsConfirmation ? question : undefined }]);
    } catch (e) {
      setLog((l) => [...l, { who: 'homeostat', text: `(no answer: ${e.message})` }]);
    } finally {
      setBusy(false);
    }
  };
  const submit = (e) => {
    e.preventDefault();
    const question = q.trim();
    if (!question) return;
    setQ('');
    void ask(question);
  };
  return html`<section aria-labelledby="chat-h" class="panel">
    <h2 id="chat-h">Chat</h2>
    <div class="chatlog" role="log" aria-live="polite" data-testid="chatlog">
      ${log.length === 0 && html`<p class="muted">Ask "why is 159 down?", "status", "pending approvals", or give a command ("reboot 159").</p>`}
      ${log.map((m, i) => html`<div key=${i} class=${`msg ${m.who === 'you' ? 'you' : 'bot'}`}>
        <span class="who">${m.who}</span><p>${m.text}</p>
        ${m.confirm && html`<button type="button" onClick=${() => ask(m.confirm, true)}>Confirm</button>`}
      </div>`)}
    </div>
    <form onSubmit=${submit} class="chatform">
      <label for="chat-q" class="sr-only">Question or command</label>
      <input id="chat-q" name="q" value=${q} onInput=${(e) => setQ(e.currentTarget.value)} placeholder="Ask the fleet…" autocomplete="off" />
      <button type="submit" disabled=${busy}>Send</button>
    </form>
  </section>`;
}

function describe(m) {
  const d = m.data ?? {};
  if (m.subject.startsWith('fleet.events.guest.')) return `${d.name ?? d.vmid} ${d.state}/${d.health}${d.reason ? `: ${d.reason}` : ''}`;
  if (m.subject.startsWith('fleet.events.node.')) return `${d.node} ${d.status}`;
  if (m.subject.startsWith('fleet.incidents.')) return `${d.id} ${d.title}`;
  if (m.subject.startsWith('fleet.actions.')) return `${d.verb} ${d.target?.vmid} by ${d.proposer}${d.error ? `: ${d.error.message}` : ''}`;
  if (m.subject.startsWith('fleet.decisions.')) return `${d.proposer} → ${d.verb} ${d.target?.vmid ?? d.target?.node ?? ''}: ${d.verdict}`;
  if (m.subject.startsWith('fleet.alerts.')) return `${d.name} ${d.status}: ${d.summary}`;
  if (m.subject.startsWith('fleet.workflows.')) return `${d.kind} ${d.event}${d.vmid ? ` ${d.vmid}` : ''}`;
  if (m.subject.startsWith('fleet.dlq.')) return `dead letter from ${d.subject}: ${d.reason}`;
  return m.subject;
}

export function EventFeed({ feed }) {
  return html`<section aria-labelledby="feed-h" class="panel">
    <h2 id="feed-h">Live events</h2>
    <ol class="feed" role="log" aria-live="off" data-testid="feed">
      ${feed.map((m) => html`<li key=${m.id}><time datetime=${m.ts}>${time(m.ts)}</time> <span class="type">${m.type}</span> ${describe(m)}</li>`)}
    </ol>
  </section>`;
}
