// Notifications: the bell's unread count, the live stream (Server-Sent Events opened
// with a single-use stream ticket, since EventSource cannot send a bearer header),
// resumed after a reconnect from the last event id, the inbox and the preferences.
import { api, get } from './api.js';
import { h, mount, listState, say, showError, clearError, when } from './ui.js';

const TYPES = ['task.assigned', 'task.status_changed', 'task.commented', 'mention', 'post.commented', 'post.liked', 'project.member_added'];
let source = null;
let lastId = null;
let retryTimer = 0;
let retryMs = 1000;
let running = false;
const badge = h('span', { class: 'badge', id: 'unread-count', 'aria-live': 'polite' }, '0');

export function bell() {
  // The name is the visible text plus a hidden word ("Notifications 3 unread"): an
  // aria-label would have to repeat the count to keep WCAG 2.5.3's label-in-name.
  return h('a', { href: '/app/notifications', class: 'bell', id: 'bell' }, 'Notifications ', badge,
    h('span', { class: 'sr-only' }, ' unread'));
}

async function refreshCount() {
  try {
    const { count } = await get('/v1/notifications/unread-count');
    badge.textContent = String(count);
  } catch (e) {
    // No notification plugin on this server (404): no bell at all rather than a broken one.
    if (e.status === 404) document.getElementById('bell')?.setAttribute('hidden', '');
  }
}

function describe(n) {
  const p = n.payload || {};
  const what = p.title ? `“${p.title}”` : p.projectName ? `project ${p.projectName}` : '';
  const text = {
    'task.assigned': `You were assigned ${what}`,
    'task.status_changed': `${what} moved from ${p.from} to ${p.to}`,
    'task.commented': `New comment on ${what}`,
    mention: `You were mentioned on ${what}`,
    'post.commented': `New comment on your post ${what}`,
    'post.liked': `Someone liked your post ${what}`,
    'project.member_added': `You were added to ${what}`,
  }[n.type] || n.type;
  const href = p.taskId ? `/app/tasks/${p.taskId}` : p.postId ? `/app/posts/${p.postId}` : p.projectId ? `/app/projects/${p.projectId}` : null;
  return href ? h('a', { href }, text) : text;
}

export async function startStream() {
  if (running) return;
  running = true;
  refreshCount();
  connect();
}

export function stopStream() {
  running = false;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
}

// The device going offline ends the stream at once (the socket may linger half-open);
// coming back reconnects at once, resuming from the last id, instead of after a backoff.
window.addEventListener('offline', () => {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  document.body.dataset.stream = 'closed';
});
window.addEventListener('online', () => {
  if (!running || source) return;
  clearTimeout(retryTimer);
  retryMs = 1000;
  connect();
});

let connecting = false;
async function connect() {
  if (!running || connecting || (source && source.readyState !== EventSource.CLOSED)) return;
  connecting = true;
  const again = () => {
    if (!running) return;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  };
  try {
    const { data } = await api('POST', '/v1/notifications/stream-tickets');
    const q = new URLSearchParams({ ticket: data.ticket });
    if (lastId) q.set('lastEventId', lastId);
    const es = new EventSource('/v1/notifications/stream?' + q);
    source = es;
    es.onopen = () => { retryMs = 1000; document.body.dataset.stream = 'open'; };
    const onEvent = (e) => {
      if (e.lastEventId) lastId = e.lastEventId;
      let n = null;
      try { n = JSON.parse(e.data); } catch (err) { return; }
      refreshCount();
      window.dispatchEvent(new CustomEvent('panthera:notification', { detail: n }));
    };
    es.onmessage = onEvent;
    es.addEventListener('notification', onEvent);
    es.addEventListener('reset', () => { lastId = null; refreshCount(); window.dispatchEvent(new CustomEvent('panthera:reset')); });
    // A ticket is single use: EventSource's own reconnect would reuse it, so close and
    // reconnect with a fresh ticket and the last id seen.
    es.onerror = () => {
      es.close();
      if (source !== es) return;
      source = null;
      document.body.dataset.stream = 'closed';
      again();
    };
  } catch (err) {
    if (err.status === 404 || err.status === 401) running = false; else again();
  } finally {
    connecting = false;
  }
}

export function notificationsView() {
  const list = h('div', { id: 'notification-list' });
  const top = h('div', { class: 'row' });
  const load = () => listState(list, async () => (await get('/v1/notifications?limit=50')).notifications,
    (items) => h('ul', { class: 'list' }, items.map((n) => {
      const li = h('li', { class: n.read ? '' : 'unread' }, describe(n), ' ', h('span', { class: 'muted' }, when(n.createdAt)));
      if (!n.read) li.append(' ', h('button', { type: 'button', class: 'secondary', onclick: async () => {
        clearError(li);
        try { await api('POST', `/v1/notifications/${n.id}/read`); li.classList.remove('unread'); li.querySelector('button').remove(); refreshCount(); }
        catch (err) { showError(li, err); }
      } }, 'Mark read'));
      return li;
    })), 'No notifications.');
  top.append(h('button', { type: 'button', onclick: async () => {
    clearError(top);
    try { await api('POST', '/v1/notifications/read-all', { body: {} }); say('All read'); refreshCount(); load(); }
    catch (err) { showError(top, err); }
  } }, 'Mark all read'), h('a', { href: '/app/notifications/preferences' }, 'Preferences'));
  mount('Notifications', top, list);
  // A new notification, or a reset (the resume point was too old): reload the inbox.
  const live = () => {
    if (list.isConnected) return load();
    window.removeEventListener('panthera:notification', live);
    window.removeEventListener('panthera:reset', live);
  };
  window.addEventListener('panthera:notification', live);
  window.addEventListener('panthera:reset', live);
  return load();
}

export async function preferencesView() {
  const box = h('div', {});
  mount('Notification preferences', box);
  let prefs;
  try { prefs = await get('/v1/notifications/preferences'); }
  catch (err) { box.append(h('p', { class: 'error', role: 'alert' }, err.message)); return; }
  const table = h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Type'), h('th', {}, 'In the app'), h('th', {}, 'Email'))),
    h('tbody', {}, TYPES.map((t) => {
      const p = (prefs.preferences || prefs)[t] || { inApp: true, email: 'off' };
      return h('tr', { dataset: { type: t } }, h('td', {}, t),
        h('td', {}, h('input', { type: 'checkbox', name: `${t}.inApp`, checked: p.inApp, 'aria-label': `${t} in the app` })),
        h('td', {}, h('select', { name: `${t}.email`, 'aria-label': `${t} by email` }, ['off', 'instant', 'daily'].map((v) => h('option', { value: v, selected: v === p.email }, v)))));
    })));
  const save = h('button', { type: 'button', onclick: async () => {
    clearError(box);
    const body = {};
    for (const t of TYPES) body[t] = { inApp: table.querySelector(`[name="${t}.inApp"]`).checked, email: table.querySelector(`[name="${t}.email"]`).value };
    save.disabled = true;
    try { await api('PUT', '/v1/notifications/preferences', { body: prefs.preferences ? { preferences: body } : body }); say('Preferences saved'); }
    catch (err) { showError(box, err); } finally { save.disabled = false; }
  } }, 'Save preferences');
  box.append(table, save);
}
