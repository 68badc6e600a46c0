// Admin: the users (search, role change) and the activity report.
import { api, get, blobUrl } from './api.js';
import { h, mount, listState, say, showError, clearError } from './ui.js';
import { csvButton } from './reports.js';

export async function adminView() {
  const list = h('div', { id: 'user-list' });
  const report = h('div', { id: 'activity-report' });
  const input = h('input', { type: 'search', name: 'search' });
  const load = () => listState(list, async () => (await get('/v1/users?limit=100&search=' + encodeURIComponent(input.value))).users,
    (users) => h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Username'), h('th', {}, 'Email'), h('th', {}, 'Role'))),
      h('tbody', {}, users.map((u) => {
        const sel = h('select', { 'aria-label': `Role of ${u.username}` }, ['user', 'admin'].map((r) => h('option', { value: r, selected: r === u.role }, r)));
        const cell = h('td', {}, sel);
        sel.addEventListener('change', async () => {
          clearError(cell);
          try { await api('PUT', `/v1/users/${u.id}`, { body: { role: sel.value } }); say(`${u.username} is now ${sel.value}`); }
          catch (err) { sel.value = u.role; showError(cell, err); }
        });
        return h('tr', {}, h('td', {}, u.username), h('td', {}, u.email), cell);
      }))), 'No users match.');
  const to = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
  const path = `/v1/reports/activity?from=${from}&to=${to}`;
  // The chart first, in a box of its final size, its CSV button already there: the users
  // list below may grow whenever its answer comes without moving anything above it.
  const box = h('div', { class: 'chart-box' });
  report.append(box, csvButton(report, path, 'activity.csv'));
  mount('Admin', h('h2', {}, 'Activity report (last 30 days)'), report,
    h('h2', {}, 'Users'),
    h('form', { role: 'search', class: 'row', onsubmit: (e) => { e.preventDefault(); load(); } },
      h('label', {}, 'Search users', input), h('button', { type: 'submit' }, 'Search')),
    list);
  blobUrl(path, 'image/svg+xml')
    .then((url) => box.replaceChildren(h('img', { class: 'chart', src: url, alt: `Signups, posts, comments and tasks per day, ${from} to ${to}` })))
    .catch((err) => box.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The activity report is not available: ${err.message}`)));
  return load();
}
