// The fleet as a board: layers down, nodes across; each guest with its state, health and desired
// state in words as well as colour.
import { html } from 'htm/preact';

const STATE_MARK = { running: '▲', stopped: '■', paused: '❚❚', unknown: '?' };
const HEALTH_MARK = { healthy: '✓', unhealthy: '✗', unknown: '…' };

function Guest({ g }) {
  const wrong = !g.ok;
  const label = `${g.name} (${g.vmid}): ${g.state}, ${g.health}${g.maintenance ? ', maintenance' : ` , desired ${g.desired}`}${g.protected ? ', protected' : ''}`;
  return html`<li class=${`guest s-${g.state} h-${g.health}${wrong ? ' wrong' : ''}`} data-vmid=${g.vmid} data-state=${g.state} data-health=${g.health} title=${label} aria-label=${label}>
    <span class="gname">${g.name}</span> <span class="gid">${g.vmid}</span>
    <span class="gstate">${STATE_MARK[g.state] ?? '?'} ${g.state} · ${HEALTH_MARK[g.health] ?? ''} ${g.health}</span>
    ${g.maintenance ? html`<span class="tag">maintenance</span>` : g.desired !== 'running' ? html`<span class="tag">desired ${g.desired}</span>` : ''}
    ${g.protected ? html`<span class="tag">protected</span>` : ''}
  </li>`;
}

export function Board({ status }) {
  const nodes = status.nodes.map((n) => n.node);
  for (const g of status.guests) if (!nodes.includes(g.node)) nodes.push(g.node);
  const layers = [...new Set(status.guests.map((g) => g.layer))].sort((a, b) => a - b);
  const nodeInfo = new Map(status.nodes.map((n) => [n.node, n]));
  return html`<section aria-labelledby="board-h" class="panel board-panel">
    <h2 id="board-h">Fleet <small>${status.guests.length} guests on ${nodes.length} nodes</small></h2>
    <div class="board-scroll">
    <table class="board" data-testid="board">
      <caption class="sr-only">Guests by layer (rows) and node (columns)</caption>
      <thead><tr><th scope="col">Layer</th>${nodes.map((n) => {
        const info = nodeInfo.get(n);
        const st = info?.status ?? 'unknown';
        return html`<th scope="col" class=${`node n-${st}`} data-node=${n}>${n} <span class="nstate">${st}${info && info.reachable === false ? ' · unreachable' : ''}${info?.fenced ? ' · fenced' : ''}</span></th>`;
      })}</tr></thead>
      <tbody>${layers.map((l) => html`<tr>
        <th scope="row">L${l}</th>
        ${nodes.map((n) => html`<td><ul class="guests">${status.guests.filter((g) => g.layer === l && g.node === n).map((g) => html`<${Guest} key=${g.vmid} g=${g} />`)}</ul></td>`)}
      </tr>`)}</tbody>
    </table>
    </div>
  </section>`;
}
