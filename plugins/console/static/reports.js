// Reports: the project summary (JSON), the burndown and flow charts (the server's SVG,
// fetched with the bearer token and shown in <img> from a blob: URL, so no script in it
// can run), and CSV downloads.
import { get, blobUrl, download } from './api.js';
import { h, mount, showError, clearError } from './ui.js';
import { projectNav } from './projects.js';

const CHARTS = [['burndown', 'Burndown'], ['flow', 'Cumulative flow']];

// Everything is fetched first and the page drawn once (the shell shows "Loading…"
// meanwhile): a summary that grew in place would push the charts down as they load.
export async function reportsView(pid) {
  const to = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
  const base = `/v1/reports/projects/${pid}`;
  const settle = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));
  const chartPath = (name) => `${base}/${name}?from=${from}&to=${to}`;
  const [project, summaryData, ...chartUrls] = await Promise.all([
    get(`/v1/projects/${pid}`),
    settle(Promise.all([get(`${base}/summary`),
      get(`/v1/projects/${pid}/members?limit=100`).then((r) => r.members)])),
    ...CHARTS.map(([name]) => settle(blobUrl(chartPath(name), 'image/svg+xml')))]);
  const summary = h('div', { id: 'summary' });
  if (summaryData.error) {
    summary.append(h('p', { class: 'error', role: 'alert' }, `The summary is not available: ${summaryData.error.message}`));
  } else {
    const [s, members] = summaryData.value;
    const names = Object.fromEntries(members.map((m) => [m.userId, m.username]));
    const counts = (o) => Object.entries(o || {}).map(([k, v]) => `${k.replace('_', ' ')}: ${v}`).join(' · ');
    const hours = (sec) => (sec === null || sec === undefined ? 'no done task yet' : `${(sec / 3600).toFixed(1)} h`);
    const rows = [
      ['Tasks', s.total], ['Completion', `${s.completionPercent} %`], ['Overdue', s.overdue],
      ['By status', counts(s.byStatus)], ['By priority', counts(s.byPriority)],
      ['By assignee', (s.byAssignee || []).map((a) => `${a.assigneeId ? names[a.assigneeId] || 'former member' : 'unassigned'}: ${a.count}`).join(' · ')],
      ['Cycle time, median', hours(s.cycleTime?.medianSeconds)], ['Cycle time, 85th percentile', hours(s.cycleTime?.p85Seconds)],
    ];
    summary.append(h('table', {}, h('tbody', {}, rows.map(([k, v]) =>
      h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, String(v ?? '')))))),
    csvButton(summary, `${base}/summary`, 'summary.csv'));
  }
  const charts = h('div', { id: 'charts' }, CHARTS.map(([name, title], i) => {
    const sec = h('section', {}, h('h2', {}, title));
    const got = chartUrls[i];
    if (got.error) sec.append(h('p', { class: 'error', role: 'alert' }, `The chart is not available: ${got.error.message}`));
    else sec.append(h('img', { class: 'chart', src: got.value, alt: `${title} of ${project.name}, ${from} to ${to}` }),
      csvButton(sec, chartPath(name), `${name}.csv`));
    return sec;
  }));
  mount(`Reports of ${project.name}`, projectNav(pid), h('h2', {}, 'Summary'), summary, charts);
}

export function csvButton(where, path, filename) {
  return h('button', { type: 'button', class: 'secondary', onclick: async (e) => {
    clearError(where);
    e.target.disabled = true;
    try { await download(path, 'text/csv', filename); } catch (err) { showError(where, err); } finally { e.target.disabled = false; }
  } }, `Download ${filename}`);
}
