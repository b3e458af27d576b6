// /console/: server facts, every model with its state and Load / Unload, live charts.
import { call, refusalHint } from './api.js';
import { askForAccess } from './access.js';
import { h, formatDuration } from './dom.js';
import { LiveCharts } from './charts.js';

const MODE_REASON = {
  none: "disabled: the server's model control mode is 'none' (start it with --model-control-mode=explicit)",
  poll: "disabled: the server's model control mode is 'poll' (start it with --model-control-mode=explicit)",
};

export function renderOverview(app) {
  document.getElementById('crumb').textContent = 'Overview';
  const facts = h('section', { class: 'card', id: 'server-facts' }, h('h2', {}, 'Server'), h('p', {}, 'loading…'));
  const status = h('p', { id: 'action-status', class: 'status', role: 'status' });
  const modelsBox = h('div', { id: 'models' });
  const note = h('p', { id: 'models-note', class: 'note' });
  const charts = h('div', { id: 'charts', class: 'charts' });
  const chartNote = h('p', { id: 'charts-note', class: 'note' });
  app.replaceChildren(
    facts,
    h('section', { class: 'card' }, h('h2', {}, 'Models'), note, status, modelsBox),
    h('section', { class: 'card' }, h('h2', {}, 'Load (last 5 minutes)'), chartNote, charts),
  );

  const live = new LiveCharts(charts);
  let mode = null; // from /console/facts.json; null: unknown (every button enabled)

  async function loadFacts() {
    const [meta, f] = await Promise.all([call('GET', '/v2'), call('GET', '/console/facts.json')]);
    if (f.ok) mode = f.data.model_control_mode;
    const rows = [];
    if (meta.ok) {
      rows.push(['Name', meta.data.name], ['Version', meta.data.version]);
    } else {
      rows.push(['Metadata', meta.refused ? `refused: ${meta.error}` : meta.error]);
    }
    if (f.ok) {
      rows.push(['Uptime', formatDuration(f.data.uptime_seconds)], ['Model control mode', f.data.model_control_mode]);
    }
    if (meta.ok) rows.push(['Extensions', (meta.data.extensions || []).join(', ')]);
    facts.replaceChildren(
      h('h2', {}, 'Server'),
      h('dl', { class: 'facts' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { 'data-fact': k }, v)])),
    );
  }

  // The models: the repository index, or, when that is refused, what statistics give.
  async function loadModels() {
    const index = await call('POST', '/v2/repository/index', { json: {} });
    let models;
    if (index.ok) {
      note.textContent = '';
      models = index.data.map((m) => ({ name: m.name, version: m.version || '', state: m.state || '', reason: m.reason || '' }));
    } else {
      const stats = await call('GET', '/v2/models/stats');
      const why = index.refused ? `the repository index is refused (${refusalHint(index).text})` : `the repository index failed: ${index.error}`;
      if (!stats.ok) {
        note.textContent = `${why}; statistics too: ${stats.error}`;
        modelsBox.replaceChildren();
        if (stats.refused) askForAccess(refusalHint(stats).header);
        return;
      }
      note.textContent = `${why}: showing the loaded models the statistics endpoint lists.`;
      models = (stats.data.model_stats || []).map((s) => ({ name: s.name, version: s.version, state: 'READY', reason: '' }));
    }
    // One row per model, its versions together.
    const byName = new Map();
    for (const m of models) {
      const row = byName.get(m.name) || { name: m.name, versions: [] };
      row.versions.push(m);
      byName.set(m.name, row);
    }
    const disabled = MODE_REASON[mode];
    const rows = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)).map((m) => {
      const states = m.versions.map((v) => h('div', { class: `state state-${(v.state || 'unknown').toLowerCase()}` },
        v.version ? `v${v.version}: ` : '', v.state || '(never loaded)'));
      const reasons = m.versions.filter((v) => v.reason).map((v) => h('div', { class: 'reason' }, v.reason));
      const button = (label, action) => h('button', {
        type: 'button', 'data-action': action, 'data-model': m.name, disabled: !!disabled, title: disabled || `${label} ${m.name}`,
        onclick: () => act(action, m.name),
      }, label);
      return h('tr', { 'data-model': m.name },
        h('td', {}, h('a', { href: `/console/models/${encodeURIComponent(m.name)}` }, m.name)),
        h('td', { class: 'versions' }, m.versions.map((v) => v.version).filter(Boolean).join(', ')),
        h('td', { class: 'states' }, states),
        h('td', { class: 'reasons' }, reasons),
        h('td', { class: 'actions' }, button('Load', 'load'), button('Unload', 'unload'),
          disabled ? h('div', { class: 'why-disabled' }, disabled) : null),
      );
    });
    modelsBox.replaceChildren(h('table', { class: 'models' },
      h('thead', {}, h('tr', {}, ['Model', 'Versions', 'State', 'Reason', 'Actions'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
  }

  async function act(action, name) {
    status.className = 'status';
    status.textContent = `${action === 'load' ? 'Loading' : 'Unloading'} ${name}…`;
    const r = await call('POST', `/v2/repository/models/${encodeURIComponent(name)}/${action}`, { json: {} });
    if (r.ok) {
      status.textContent = `${name}: ${action === 'load' ? 'loaded' : 'unloaded'}`;
    } else if (r.refused) {
      const hint = refusalHint(r);
      status.className = 'status error';
      status.textContent = `${action} ${name} refused: ${r.error} (${hint.text})`;
      askForAccess(hint.header);
    } else {
      status.className = 'status error';
      status.textContent = `${action} ${name} failed: ${r.error}`;
      if (/not allowed/.test(r.error || '') && !mode) mode = 'none';
    }
    await loadModels();
  }

  async function poll() {
    const r = await call('GET', '/v2/models/stats');
    if (r.ok) {
      live.push(r.data, Date.now());
      chartNote.textContent = live.times.length ? '' : 'collecting samples (every 2 s)…';
    } else {
      chartNote.textContent = r.refused ? `statistics refused: ${refusalHint(r).text}` : `statistics failed: ${r.error}`;
    }
  }

  async function refresh() {
    await loadFacts();
    await loadModels();
  }
  refresh().then(poll);
  setInterval(poll, 2000);
  setInterval(loadModels, 5000);
  setInterval(loadFacts, 10000);
  return { refresh };
}
