// The shell: session start, navigation (history API over /app/...), the top bar.
import { resume, onSession, currentUser, logout } from './api.js';
import { h, main, say } from './ui.js';
import { loginView, signupView, meView } from './auth.js';
import { projectsView, membersView } from './projects.js';
import { boardView } from './board.js';
import { taskView } from './task.js';
import { feedView, postView, postEditView } from './feed.js';
import { bell, notificationsView, preferencesView, startStream, stopStream } from './notify.js';
import { reportsView } from './reports.js';
import { adminView } from './admin.js';

const routes = [
  [/^\/app\/login$/, loginView, false],
  [/^\/app\/signup$/, signupView, false],
  [/^\/app\/projects$/, projectsView, true],
  [/^\/app\/projects\/([^/]+)$/, boardView, true],
  [/^\/app\/projects\/([^/]+)\/members$/, membersView, true],
  [/^\/app\/projects\/([^/]+)\/reports$/, reportsView, true],
  [/^\/app\/tasks\/([^/]+)$/, taskView, true],
  [/^\/app\/feed$/, feedView, true],
  [/^\/app\/posts\/new$/, postEditView, true],
  [/^\/app\/posts\/([^/]+)\/edit$/, postEditView, true],
  [/^\/app\/posts\/([^/]+)$/, postView, true],
  [/^\/app\/notifications$/, notificationsView, true],
  [/^\/app\/notifications\/preferences$/, preferencesView, true],
  [/^\/app\/admin$/, adminView, true],
  [/^\/app\/me$/, meView, true],
];

export function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

async function render() {
  let path = location.pathname;
  if (path === '/' || path === '/app' || path === '/app/') { history.replaceState(null, '', '/app/projects'); path = '/app/projects'; }
  const user = currentUser();
  for (const [re, view, needsUser] of routes) {
    const m = path.match(re);
    if (!m) continue;
    if (needsUser && !user) { go('/app/login?next=' + encodeURIComponent(path), true); return; }
    if (!needsUser && user) { go('/app/projects', true); return; }
    main().replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
    try { await view(...m.slice(1).map(decodeURIComponent)); }
    catch (err) { main().replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, err.message)); }
    main().focus({ preventScroll: true });
    return;
  }
  main().replaceChildren(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/app/projects' }, 'Go to your projects')));
}

function topBar(user) {
  // bar.js draws it (and drew the last session's before the first paint).
  window.pantheraBar(user, user ? bell() : null, async () => {
    stopStream();
    await logout();
    say('Logged out');
    go('/app/login');
  });
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href^="/app"]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
  e.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

onSession((user) => {
  topBar(user);
  if (user) startStream(); else { stopStream(); if (!location.pathname.match(/^\/app\/(login|signup)/)) go('/app/login', true); }
});

(async () => {
  await resume();
  if (!currentUser()) topBar(null);
  render();
})();
