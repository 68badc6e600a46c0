// The top bar. A classic script, run as the parser reaches it and so before the first
// paint: on a reload it draws the last session's bar at once from sessionStorage (name and
// role only, never a credential), so the page does not jump down when the session has
// resumed a moment later. app.js draws the same bar, live, through window.pantheraBar.
'use strict';
(function () {
  const KEY = 'panthera.bar';

  function link(href, text) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    return a;
  }

  // What the bell looks like before notify.js has one: the same size, a count of 0.
  function stillBell() {
    const bell = link('/app/notifications', 'Notifications ');
    bell.className = 'bell';
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = '0';
    const word = document.createElement('span');
    word.className = 'sr-only';
    word.textContent = ' unread';
    bell.append(badge, word);
    return bell;
  }

  window.pantheraBar = function (user, bell, onLogout) {
    const top = document.getElementById('top');
    const nav = document.getElementById('nav');
    top.hidden = !user;
    if (!user) {
      sessionStorage.removeItem(KEY);
      nav.replaceChildren();
      return;
    }
    sessionStorage.setItem(KEY, JSON.stringify({ username: user.username, role: user.role }));
    const spacer = document.createElement('span');
    spacer.className = 'spacer';
    const out = document.createElement('button');
    out.type = 'button';
    out.className = 'secondary';
    out.id = 'logout';
    out.textContent = 'Log out';
    if (onLogout) out.addEventListener('click', onLogout);
    nav.replaceChildren(...[link('/app/projects', 'Projects'), link('/app/feed', 'Feed'),
      user.role === 'admin' ? link('/app/admin', 'Admin') : null, spacer, bell || stillBell(),
      link('/app/me', user.username), out].filter(Boolean));
  };

  let last = null;
  try { last = JSON.parse(sessionStorage.getItem(KEY)); } catch (e) { last = null; }
  if (last) window.pantheraBar(last);
})();
