// Reports: the project summary (JSON), the burndown and flow charts (the server's SVG,
// fetched with the bearer token and shown in <img> from a blob: URL, so no script in it
// can run), and CSV downloads.
import { get, blobUrl, download } from './api.js';
import { h, mount, showError, clearError } from './ui.js';
import { projectNav } from './projects.js';

export async function reportsView(pid) {
  const project = await get(`/v1/projects/${pid}`);
  const summary = h('div', { id: 'summary' }, h('p', { class: 'loading' }, 'Loading…'));
  const charts = h('div', { id: 'charts' });
  const to = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
  const base = `/v1/reports/projects/${pid}`;
  mount(`Reports of ${project.name}`, projectNav(pid), h('h2', {}, 'Summary'), summary, charts);
  try {
    const [s, members] = await Promise.all([get(`${base}/summary`),
      get(`/v1/projects/${pid}/members?limit=100`).then((r) => r.members)]);
    const names = Object.fromEntries(members.map((m) => [m.userId, m.username]));
    const counts = (o) => Object.entries(o || {}).map(([k, v]) => `${k.replace('_', ' ')}: ${v}`).join(' · ');
    const hours = (sec) => (sec === null || sec === undefined ? 'no done task yet' : `${(sec / 3600).toFixed(1)} h`);
    const rows = [
      ['Tasks', s.total], ['Completion', `${s.completionPercent} %`], ['Overdue', s.overdue],
      ['By status', counts(s.byStatus)], ['By priority', counts(s.byPriority)],
      ['By assignee', (s.byAssignee || []).map((a) => `${a.assigneeId ? names[a.assigneeId] || 'former member' : 'unassigned'}: ${a.count}`).join(' · ')],
      ['Cycle time, median', hours(s.cycleTime?.medianSeconds)], ['Cycle time, 85th percentile', hours(s.cycleTime?.p85Seconds)],
    ];
    summary.replaceChildren(h('table', {}, h('tbody', {}, rows.map(([k, v]) =>
      h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, String(v ?? '')))))),
    csvButton(summary, `${base}/summary`, 'summary.csv'));
  } catch (err) { summary.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The summary is not available: ${err.message}`)); }
  for (const [name, title] of [['burndown', 'Burndown'], ['flow', 'Cumulative flow']]) {
    const sec = h('section', {}, h('h2', {}, title), h('p', { class: 'loading' }, 'Loading…'));
    charts.append(sec);
    const path = `${base}/${name}?from=${from}&to=${to}`;
    try {
      const url = await blobUrl(path, 'image/svg+xml');
      sec.replaceChildren(h('h2', {}, title), h('img', { class: 'chart', src: url, alt: `${title} of ${project.name}, ${from} to ${to}` }), csvButton(sec, path, `${name}.csv`));
    } catch (err) { sec.replaceChildren(h('h2', {}, title), h('p', { class: 'error', role: 'alert' }, `The chart is not available: ${err.message}`)); }
  }
}

export function csvButton(where, path, filename) {
  return h('button', { type: 'button', class: 'secondary', onclick: async (e) => {
    clearError(where);
    e.target.disabled = true;
    try { await download(path, 'text/csv', filename); } catch (err) { showError(where, err); } finally { e.target.disabled = false; }
  } }, `Download ${filename}`);
}
