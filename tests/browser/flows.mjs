// The console's browser flows (tests/browser/README.md): Debian's chromium, headless,
// driven by playwright-core against a real pantherad. Run by test_console_browser.py,
// which starts the server and reads results.json: one entry per flow, {ok, error}.
// Nothing here waits a fixed time: every wait is for an element, a request or a value,
// with a generous ceiling that only a hang reaches.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { deflateSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.CONSOLE_BASE;
const OUT = process.env.CONSOLE_OUT;
const ADMIN = { name: process.env.CONSOLE_ADMIN_USER, password: process.env.CONSOLE_ADMIN_PASSWORD };
const HAVE_NOTIF = process.env.CONSOLE_HAVE_NOTIFICATION === '1';
const HAVE_REPORT = process.env.CONSOLE_HAVE_REPORTING === '1';
const CEILING = 60000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const results = {};
const shots = [];
const stamp = Date.now().toString(36);
const A = { username: 'alice_' + stamp, email: `alice_${stamp}@example.com`, password: 'correct horse 1' };
const B = { username: 'bob_' + stamp, email: `bob_${stamp}@example.com`, password: 'battery staple 2' };
const state = {};
mkdirSync(OUT + '/screenshots', { recursive: true });

function check(cond, message) { if (!cond) throw new Error(message); }

// A real PNG built here (a w×h RGB gradient), so the server's sniffing sees an image.
const CRC = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
function crc32(buf) { let c = 0xffffffff; for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}
function makePng(w, hgt) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(hgt, 4); ihdr[8] = 8; ihdr[9] = 2;
  const rows = [];
  for (let y = 0; y < hgt; y++) {
    rows.push(0);
    for (let x = 0; x < w; x++) rows.push((x * 255 / w) | 0, (y * 255 / hgt) | 0, 160);
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))), chunk('IEND', Buffer.alloc(0))]);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });

// A context per user; any CSP violation or uncaught page error fails the flow using it.
const contexts = new Set();

function unanswered() {
  const now = Date.now(), out = [];
  for (const ctx of contexts)
    for (const [r, at] of ctx.inflight)
      out.push(`  ${r.method()} ${r.url()} (${r.resourceType()}, waiting ${((now - at) / 1000).toFixed(1)} s)`);
  return out.length ? '\nrequests without an answer:\n' + out.join('\n') : '\nno request without an answer';
}

async function context(viewport = DESKTOP, colorScheme = 'light') {
  const ctx = await browser.newContext({ viewport, colorScheme, baseURL: BASE, acceptDownloads: true });
  ctx.setDefaultTimeout(CEILING);
  ctx.problems = [];
  ctx.on('page', (p) => watch(ctx, p));
  // Requests still waiting for an answer: a flow that times out names them, so a hang
  // seen once in CI says which request (and server) it was.
  ctx.inflight = new Map();
  ctx.on('request', (r) => ctx.inflight.set(r, Date.now()));
  for (const ev of ['requestfinished', 'requestfailed'])
    ctx.on(ev, (r) => ctx.inflight.delete(r));
  contexts.add(ctx);
  ctx.on('close', () => contexts.delete(ctx));
  // Layout shifts not caused by input, summed per page load (Chromium's layout-shift
  // entries): the page scan holds every page to the "good" cumulative score, 0.1.
  await ctx.addInitScript(() => {
    window.__layoutShift = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.hadRecentInput) continue;
        window.__layoutShift += e.value;
        window.__shiftSources = (window.__shiftSources || []).concat((e.sources || []).map((x) => {
          const n = x.node;
          return n ? `${n.nodeName}${n.id ? '#' + n.id : ''}${n.className && typeof n.className === 'string' ? '.' + n.className.split(' ').join('.') : ''} ${JSON.stringify(x.previousRect)}->${JSON.stringify(x.currentRect)}` : '?';
        }));
      }
    }).observe({ type: 'layout-shift', buffered: true });
  });
  // The console talks only to its own origin: the public API, its shell and its assets
  // (no CDN, no other host, no private endpoint).
  ctx.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'blob:' || u.protocol === 'data:') return;
    if (u.origin !== new URL(BASE).origin || !/^\/(v1\/|assets\/|app(\/|$)|$)/.test(u.pathname))
      ctx.problems.push('a request outside the public API: ' + r.url());
  });
  return ctx;
}
function watch(ctx, page) {
  page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) ctx.problems.push(m.text()); });
  page.on('pageerror', (e) => ctx.problems.push('page error: ' + e.message));
}
function clean(ctx) { check(!ctx.problems.length, 'browser problems: ' + ctx.problems.join(' | ')); }

async function heading(page, text) {
  await page.locator('main h1', { hasText: text }).first().waitFor();
}

async function signup(page, u) {
  await page.goto('/app/signup');
  await heading(page, 'Sign up');
  const f = page.getByRole('form', { name: 'Sign up' });
  await f.getByLabel('Username').fill(u.username);
  await f.getByLabel('Email').fill(u.email);
  await f.getByLabel('Password (8 to 64 characters)').fill(u.password);
  await f.getByRole('button', { name: 'Create account' }).click();
  await heading(page, 'Projects');
}

async function login(page, name, password) {
  await page.goto('/app/login');
  await heading(page, 'Log in');
  const f = page.getByRole('form', { name: 'Log in' });
  await f.getByLabel('Username or email').fill(name);
  await f.getByLabel('Password').fill(password);
  await f.getByRole('button', { name: 'Log in' }).click();
  await heading(page, 'Projects');
}

async function cardTitles(page, status) {
  return page.locator(`section.column[data-status="${status}"] li.card`).evaluateAll((els) => els.map((e) => e.dataset.title));
}

async function boardReady(page) {
  await page.locator('#board section.column').first().waitFor();
  await page.waitForFunction(() => !document.querySelector('#board[aria-busy]'));
}

async function flow(name, fn) {
  const started = Date.now();
  try {
    const r = await fn();
    results[name] = r && r.skip ? { ok: null, error: r.skip } : { ok: true };
  }
  catch (e) { results[name] = { ok: false, error: String(e && e.stack || e) + unanswered() }; }
  results[name].seconds = (Date.now() - started) / 1000;
  results[name].started = new Date(started).toISOString();
  process.stderr.write(`flow ${name}: ${results[name].ok ? 'ok' : 'FAILED\n' + results[name].error}\n`);
}

const ctxA = await context();
const ctxB = await context();
const pageA = await ctxA.newPage();
const pageB = await ctxB.newPage();

await flow('auth', async () => {
  // A wrong password: the API's words next to the form, nothing else changes.
  await pageA.goto('/app/login');
  const f = pageA.getByRole('form', { name: 'Log in' });
  await f.getByLabel('Username or email').fill('nobody_' + stamp);
  await f.getByLabel('Password').fill('wrong password');
  await f.getByRole('button', { name: 'Log in' }).click();
  await f.locator('.error[role=alert]').waitFor();
  // Sign-up validation: the field named by the API is marked.
  await pageA.goto('/app/signup');
  const s = pageA.getByRole('form', { name: 'Sign up' });
  await s.getByLabel('Username').fill('x');
  await s.getByLabel('Email').fill('not-an-email');
  await s.getByLabel('Password (8 to 64 characters)').fill('short');
  await s.getByRole('button', { name: 'Create account' }).click();
  await s.locator('input[name=email][aria-invalid=true]').waitFor();
  await signup(pageA, A);
  await signup(pageB, B);
  // The access token is only in memory; the refresh token in sessionStorage, so a reload
  // keeps the session (and rotates the refresh token).
  const before = await pageA.evaluate(() => sessionStorage.getItem('panthera.refresh'));
  check(before && before.length > 20, 'no refresh token kept for reloads');
  check(!(await pageA.evaluate(() => JSON.stringify(localStorage))).includes('ey'), 'a token is in localStorage');
  const refreshed = pageA.waitForResponse((r) => r.url().endsWith('/v1/auth/refresh') && r.status() === 200);
  await pageA.reload();
  await refreshed;
  await heading(pageA, 'Projects');
  const after = await pageA.evaluate(() => sessionStorage.getItem('panthera.refresh'));
  check(after && after !== before, 'the refresh token did not rotate on reload');
  // Silent refresh before expiry (the test server's access_ttl is short): observed as
  // the request itself, whenever the timer fires.
  await pageA.waitForResponse((r) => r.url().endsWith('/v1/auth/refresh') && r.status() === 200, { timeout: 120000 });
  // Log out: back to the login page, and a reload does not bring the session back.
  await pageA.getByRole('button', { name: 'Log out' }).click();
  await heading(pageA, 'Log in');
  check(!(await pageA.evaluate(() => sessionStorage.getItem('panthera.refresh'))), 'refresh token left after logout');
  await pageA.reload();
  await heading(pageA, 'Log in');
  // A 401 on an API call (the session revoked elsewhere): one refresh attempt, then the
  // login page; here the stale refresh token is refused.
  await login(pageA, A.username, A.password);
  await pageA.evaluate(() => sessionStorage.setItem('panthera.refresh', 'revoked-elsewhere-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'));
  await pageA.reload();
  await heading(pageA, 'Log in');
  await login(pageA, A.username, A.password);
  clean(ctxA); clean(ctxB);
});

await flow('projects', async () => {
  await pageA.goto('/app/projects');
  await pageA.locator('#project-list .empty, #project-list ul').first().waitFor();
  await pageA.getByText('New project').click();
  const f = pageA.getByRole('form', { name: 'New project' });
  await f.getByLabel('Name').fill('Launch ' + stamp);
  await f.getByLabel('Description').fill('The spring launch');
  await f.getByRole('button', { name: 'Create project' }).click();
  await heading(pageA, 'Launch ' + stamp);
  state.projectPath = new URL(pageA.url()).pathname;
  state.projectId = state.projectPath.split('/').pop();
  // The profile page shows a user's id; A invites B by username (any case), as people know them.
  await pageB.goto('/app/me');
  state.bId = (await pageB.locator('#my-id').textContent()).trim();
  await pageA.goto(state.projectPath + '/members');
  await heading(pageA, 'Members of');
  const inv = pageA.getByRole('form', { name: 'Invite a member' });
  // An unknown name: the API's field error in words, next to the box.
  await inv.getByLabel('Username or user id').fill('nobody_' + stamp);
  await inv.getByRole('button', { name: 'Invite' }).click();
  await inv.locator('.field-error', { hasText: 'no such user' }).waitFor();
  await inv.getByLabel('Username or user id').fill(B.username.toUpperCase());
  await inv.getByLabel('Role').selectOption('viewer');
  await inv.getByRole('button', { name: 'Invite' }).click();
  await pageA.locator(`li[data-user="${B.username}"]`).waitFor();
  // Inviting again, by id this time: the 409 in words.
  await inv.getByLabel('Username or user id').fill(state.bId);
  await inv.getByRole('button', { name: 'Invite' }).click();
  await inv.locator('.error[role=alert]', { hasText: 'already a member' }).waitFor();
  // Change the role; it holds after a reload.
  const done = pageA.waitForResponse((r) => r.request().method() === 'PUT' && r.url().includes('/members/') && r.status() === 200);
  await pageA.getByLabel(`Role of ${B.username}`).selectOption('member');
  await done;
  await pageA.reload();
  await pageA.locator(`li[data-user="${B.username}"]`).waitFor();
  check(await pageA.getByLabel(`Role of ${B.username}`).inputValue() === 'member', 'role change lost on reload');
  // The last owner cannot be demoted: 409 shown beside that member.
  await pageA.getByLabel(`Role of ${A.username}`).selectOption('viewer');
  await pageA.locator(`li[data-user="${A.username}"] .error`).waitFor();
  // B now sees the project in their list.
  await pageB.goto('/app/projects');
  await pageB.getByRole('link', { name: 'Launch ' + stamp }).waitFor();
  clean(ctxA); clean(ctxB);
});

await flow('board_drag_and_keyboard', async () => {
  await pageA.goto(state.projectPath);
  await boardReady(pageA);
  for (const t of ['Write copy', 'Design banner', 'Ship it']) {
    if (!(await pageA.locator('details:has(form[aria-label="New task"])').evaluate((d) => d.open)))
      await pageA.getByText('New task').click();
    const f = pageA.getByRole('form', { name: 'New task' });
    await f.getByLabel('Title').fill(t);
    await f.getByRole('button', { name: 'Add task' }).click();
    await pageA.locator(`li.card[data-title="${t}"]`).waitFor();
    await boardReady(pageA);
  }
  check(JSON.stringify(await cardTitles(pageA, 'todo')) === '["Write copy","Design banner","Ship it"]', 'creation order');
  // Drag "Ship it" onto the top half of "Write copy": it goes first.
  let moved = pageA.waitForResponse((r) => r.url().endsWith('/move') && r.status() === 200);
  await pageA.locator('li.card[data-title="Ship it"]').dragTo(pageA.locator('li.card[data-title="Write copy"]'), { targetPosition: { x: 20, y: 4 } });
  await moved;
  await pageA.waitForFunction(() => document.querySelector('section.column[data-status="todo"] li.card')?.dataset.title === 'Ship it');
  await boardReady(pageA);
  // Drag "Design banner" into the in-progress column.
  moved = pageA.waitForResponse((r) => r.url().endsWith('/move') && r.status() === 200);
  await pageA.locator('li.card[data-title="Design banner"]').dragTo(pageA.locator('section.column[data-status="in_progress"]'));
  await moved;
  await pageA.locator('section.column[data-status="in_progress"] li.card[data-title="Design banner"]').waitFor();
  await boardReady(pageA);
  // Keyboard: focus "Move down" on "Ship it" and press Enter.
  moved = pageA.waitForResponse((r) => r.url().endsWith('/move') && r.status() === 200);
  await pageA.getByRole('button', { name: 'Move down: Ship it' }).focus();
  await pageA.keyboard.press('Enter');
  await moved;
  await pageA.waitForFunction(() => document.querySelector('section.column[data-status="todo"] li.card')?.dataset.title === 'Write copy');
  // The order is the server's: a reload shows the same.
  await pageA.reload();
  await boardReady(pageA);
  check(JSON.stringify(await cardTitles(pageA, 'todo')) === '["Write copy","Ship it"]', 'todo order after reload: ' + await cardTitles(pageA, 'todo'));
  check(JSON.stringify(await cardTitles(pageA, 'in_progress')) === '["Design banner"]', 'in_progress after reload');
  // On a phone: the same board, one column under another; a keyboard move still works.
  const phone = await context(PHONE);
  const pp = await phone.newPage();
  await login(pp, A.username, A.password);
  await pp.goto(state.projectPath);
  await boardReady(pp);
  moved = pp.waitForResponse((r) => r.url().endsWith('/move') && r.status() === 200);
  await pp.getByRole('button', { name: 'Move to In progress: Ship it' }).click();
  await moved;
  await pp.locator('section.column[data-status="in_progress"] li.card[data-title="Ship it"]').waitFor();
  await pp.reload();
  await boardReady(pp);
  check(JSON.stringify(await cardTitles(pp, 'in_progress')) === '["Design banner","Ship it"]', 'phone move lost on reload');
  clean(phone);
  await phone.close();
  clean(ctxA);
});

await flow('task_detail', async () => {
  await pageA.goto(state.projectPath);
  await boardReady(pageA);
  await pageA.locator('li.card[data-title="Write copy"] a').click();
  await heading(pageA, 'Write copy');
  state.taskPath = new URL(pageA.url()).pathname;
  const f = pageA.getByRole('form', { name: 'Edit task' });
  await f.getByLabel('Description').fill('Words for the landing page');
  await f.getByLabel('Priority').selectOption('high');
  await f.getByLabel('Due date').fill('2030-01-31');
  await f.getByLabel('Depends on').selectOption({ label: 'Ship it' });
  let saved = pageA.waitForResponse((r) => r.request().method() === 'PUT' && r.status() === 200);
  await f.getByRole('button', { name: 'Save task' }).click();
  await saved;
  // Done while "Ship it" is open: the 409 explained beside the form.
  await f.getByLabel('Status').selectOption('done');
  await f.getByRole('button', { name: 'Save task' }).click();
  await f.locator('.error[role=alert]', { hasText: 'depends on' }).waitFor();
  await f.getByLabel('Status').selectOption('todo');
  // A cycle: "Ship it" depending on "Write copy".
  await pageA.goto(state.projectPath);
  await boardReady(pageA);
  await pageA.locator('li.card[data-title="Ship it"] a').click();
  await heading(pageA, 'Ship it');
  const g = pageA.getByRole('form', { name: 'Edit task' });
  await g.getByLabel('Depends on').selectOption({ label: 'Write copy' });
  await g.getByRole('button', { name: 'Save task' }).click();
  await g.locator('.error[role=alert]', { hasText: 'cannot depend' }).waitFor();
  // Comments with a mention of B, rendered as a mention (text, never markup).
  await pageA.goto(state.taskPath);
  await heading(pageA, 'Write copy');
  const c = pageA.getByRole('form', { name: 'Add comment' });
  await c.getByLabel('Comment').fill(`@${B.username} please review <img src=x onerror=alert(1)>`);
  await c.getByRole('button', { name: 'Add comment' }).click();
  await pageA.locator('#comments strong.mention', { hasText: '@' + B.username }).waitFor();
  check(await pageA.locator('#comments img').count() === 0, 'a comment became markup');
  await pageA.locator('#activity li').first().waitFor();
  check(await pageA.getByRole('form', { name: 'Edit task' }).getByLabel('Due date').inputValue() === '2030-01-31', 'due date not kept');
  clean(ctxA);
});

await flow('live_assignment', async () => {
  if (!HAVE_NOTIF) return { skip: 'the notification plugin is not built here (branch notif not merged): live delivery is pending' };
  await pageB.goto('/app/projects');
  await pageB.waitForFunction(() => document.body.dataset.stream === 'open');
  const before = Number(await pageB.locator('#unread-count').textContent());
  await pageA.goto(state.taskPath);
  await heading(pageA, 'Write copy');
  const f = pageA.getByRole('form', { name: 'Edit task' });
  await f.getByLabel('Assignee').selectOption({ label: B.username });
  await f.getByRole('button', { name: 'Save task' }).click();
  // B sees it without reloading: the bell's count grows from the stream.
  await pageB.waitForFunction((n) => Number(document.getElementById('unread-count').textContent) > n, before, { timeout: CEILING });
  await pageB.getByRole('link', { name: /Notifications/ }).click();
  await pageB.locator('#notification-list li', { hasText: 'You were assigned' }).first().waitFor();
  await pageB.getByRole('button', { name: 'Mark all read' }).click();
  await pageB.waitForFunction(() => document.getElementById('unread-count').textContent === '0');
  // Resume: B's connection drops, A comments meanwhile (B is the assignee), and on
  // reconnect (a fresh ticket, lastEventId = the last id seen) the missed one arrives.
  await pageB.waitForFunction(() => document.body.dataset.stream === 'open');
  await ctxB.setOffline(true);
  try {
  await pageB.waitForFunction(() => document.body.dataset.stream === 'closed');
  await pageA.goto(state.taskPath);
  const c = pageA.getByRole('form', { name: 'Add comment' });
  await c.getByLabel('Comment').fill('Missed while offline');
  await c.getByRole('button', { name: 'Add comment' }).click();
  await pageA.locator('#comments li', { hasText: 'Missed while offline' }).waitFor();
  const resumed = pageB.waitForRequest((r) => r.url().includes('/v1/notifications/stream?') && r.url().includes('lastEventId='));
  await ctxB.setOffline(false);
  await resumed;
  } finally { await ctxB.setOffline(false); }
  await pageB.locator('#notification-list li.unread', { hasText: 'New comment on' }).first().waitFor();
  await pageB.waitForFunction(() => document.getElementById('unread-count').textContent === '1');
  // Mark that one read on its own.
  await pageB.locator('#notification-list li.unread').getByRole('button', { name: 'Mark read' }).click();
  await pageB.waitForFunction(() => document.getElementById('unread-count').textContent === '0');
  // Preferences: a change is kept.
  await pageB.goto('/app/notifications/preferences');
  await heading(pageB, 'Notification preferences');
  await pageB.getByLabel('post.liked by email').selectOption('daily');
  await pageB.getByLabel('post.liked in the app').uncheck();
  const put = pageB.waitForResponse((r) => r.request().method() === 'PUT' && r.url().endsWith('/preferences'));
  await pageB.getByRole('button', { name: 'Save preferences' }).click();
  check((await put).status() === 200, 'preferences not saved');
  await pageB.reload();
  await heading(pageB, 'Notification preferences');
  check(await pageB.getByLabel('post.liked by email').inputValue() === 'daily', 'email preference lost');
  check(!(await pageB.getByLabel('post.liked in the app').isChecked()), 'inApp preference lost');
  clean(ctxA); clean(ctxB);
});

await flow('posts', async () => {
  await pageA.goto('/app/posts/new');
  await heading(pageA, 'Write a post');
  const f = pageA.getByRole('form', { name: 'Write a post' });
  const word = 'zebrafish' + stamp;
  await f.getByLabel('Title').fill('Notes on ' + word);
  await f.getByLabel('Body').fill(`The ${word} <b>plan</b> & more`);
  await f.getByLabel('Tags (comma separated)').fill('launch, notes');
  // Media upload with progress: a real PNG (1x1), sniffed by the server.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  await f.getByLabel('Attach media (image, video or PDF)').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: png });
  await pageA.locator('#media .ok', { hasText: 'Uploaded dot.png' }).waitFor();
  check(await pageA.locator('progress').evaluate((p) => p.value) === 1, 'upload progress did not reach the end');
  await f.getByRole('button', { name: 'Save draft' }).click();
  await heading(pageA, 'Notes on ' + word);
  await pageA.getByText('post · draft').waitFor();
  await pageA.getByRole('link', { name: 'Edit' }).click();
  await heading(pageA, 'Edit post');
  await pageA.getByRole('form', { name: 'Write a post' }).getByRole('button', { name: 'Publish' }).click();
  await heading(pageA, 'Notes on ' + word);
  await pageA.getByText('post · published').first().waitFor();
  state.postPath = new URL(pageA.url()).pathname;
  check(await pageA.locator('.post-body b').count() === 0, 'the body became markup');
  // The uploaded image is shown from its media URL (CSP img-src 'self').
  await pageA.waitForFunction(() => { const i = document.querySelector('.post-body img.preview'); return i && i.complete && i.naturalWidth === 1; });
  // Search with highlights: the match is a <mark>, the rest text.
  await pageA.goto('/app/feed');
  await pageA.getByLabel('Search posts').fill(word);
  await pageA.getByRole('button', { name: 'Search' }).click();
  await pageA.locator('#post-list .highlight mark').first().waitFor();
  check((await pageA.locator('#post-list .highlight mark').first().textContent()).toLowerCase().includes('zebrafish'), 'highlight mark');
  check(await pageA.locator('#post-list .highlight b').count() === 0, 'highlight markup leaked');
  // B likes and comments.
  await pageB.goto(state.postPath);
  await pageB.getByRole('button', { name: 'Like', exact: true }).click();
  await pageB.getByRole('button', { name: 'Unlike' }).waitFor();
  await pageB.getByText('1 likes').waitFor();
  const c = pageB.getByRole('form', { name: 'Add comment' });
  await c.getByLabel('Comment').fill('Lovely @' + A.username);
  await c.getByRole('button', { name: 'Add comment' }).click();
  await pageB.locator('#post-comments li', { hasText: 'Lovely' }).waitFor();
  await pageB.reload();
  await pageB.getByRole('button', { name: 'Unlike' }).waitFor();
  clean(ctxA); clean(ctxB);
});

const ctxAdmin = await context();
const pageAdmin = await ctxAdmin.newPage();
await flow('admin', async () => {
  await login(pageAdmin, ADMIN.name, ADMIN.password);
  await pageAdmin.getByRole('link', { name: 'Admin', exact: true }).click();
  await heading(pageAdmin, 'Admin');
  await pageAdmin.locator('#user-list table').waitFor();
  await pageAdmin.getByLabel('Search users').fill(B.username);
  await pageAdmin.getByRole('button', { name: 'Search' }).click();
  await pageAdmin.waitForFunction(() => document.querySelectorAll('#user-list tbody tr').length === 1);
  const put = pageAdmin.waitForResponse((r) => r.request().method() === 'PUT' && r.status() === 200);
  await pageAdmin.getByLabel(`Role of ${B.username}`).selectOption('admin');
  await put;
  await pageAdmin.reload();
  await pageAdmin.getByLabel('Search users').fill(B.username);
  await pageAdmin.getByRole('button', { name: 'Search' }).click();
  await pageAdmin.waitForFunction(() => document.querySelectorAll('#user-list tbody tr').length === 1);
  check(await pageAdmin.getByLabel(`Role of ${B.username}`).inputValue() === 'admin', 'role not kept');
  const back = pageAdmin.waitForResponse((r) => r.request().method() === 'PUT' && r.status() === 200);
  await pageAdmin.getByLabel(`Role of ${B.username}`).selectOption('user');
  await back;
  // The activity report: a chart when the reporting plugin is there, else the reason.
  await pageAdmin.locator('#activity-report img.chart, #activity-report .error').first().waitFor();
  if (HAVE_REPORT) check(await pageAdmin.locator('#activity-report img.chart').count() === 1, 'activity chart missing');
  clean(ctxAdmin);
});

// Every visible text of a chart as Chromium lays it out `width` CSS px wide (inlined, so
// the chart's media query sees that width, as it does in an <img> of that width): apart
// from every other text (by more than the half pixel rounding gives), inside the picture,
// and at least `minPx` tall on screen.
async function chartTextProblems(svg, width, minPx) {
  const page = await browser.newPage({ viewport: { width, height: width } });
  try {
    if (!svg.includes('<svg')) return ['not an SVG: ' + svg.slice(0, 200)];
    await page.setContent('<body style="margin:0">' + svg.replace(/^<\?xml[^>]*>/, '') + '</body>');
    return await page.evaluate((min) => {
      const svg = document.querySelector('svg'), frame = svg.getBoundingClientRect();
      const scale = frame.width / 800, bad = [];
      const boxes = [...svg.querySelectorAll('text, tspan')].filter((t) => !t.querySelector('tspan'))
        .map((t) => ({ t: t.textContent, r: t.getBoundingClientRect(), px: parseFloat(getComputedStyle(t).fontSize) * scale }))
        .filter((b) => b.r.width > 0);
      if (boxes.length < 6) bad.push(`only ${boxes.length} texts shown`);
      for (const b of boxes) {
        if (b.px < min) bad.push(`"${b.t}" is ${b.px.toFixed(1)} px`);
        if (b.r.left < frame.left - 0.5 || b.r.right > frame.right + 0.5 || b.r.top < frame.top - 0.5 || b.r.bottom > frame.bottom + 0.5)
          bad.push(`"${b.t}" leaves the picture`);
      }
      for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r, b = boxes[j].r;
        if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
          bad.push(`"${boxes[i].t}" overlaps "${boxes[j].t}"`);
      }
      return bad;
    }, minPx);
  } finally { await page.close(); }
}

await flow('reports', async () => {
  // The charts the console asks for, fetched again here with its token (the page turns
  // its answers into blob: URLs) to be laid out at a phone's width.
  const charts = new Map();
  const onChart = (r) => {
    if (!r.url().includes('/v1/reports/') || !(r.headers()['content-type'] || '').startsWith('image/svg+xml')) return;
    const headers = { Accept: 'image/svg+xml', Authorization: r.request().headers().authorization };
    charts.set(new URL(r.url()).pathname, fetch(r.url(), { headers }).then((a) => a.text()));
  };
  pageA.on('response', onChart);
  await pageA.goto(state.projectPath + '/reports');
  await heading(pageA, 'Reports of');
  await pageA.locator('#summary table, #summary .error').first().waitFor();
  await pageA.locator('#charts section').nth(1).locator('img.chart, .error').first().waitFor();
  if (!HAVE_REPORT) {
    check(await pageA.locator('#summary .error', { hasText: 'not available' }).count() === 1, 'missing reports not explained');
    return { skip: 'the reporting plugin is not built here (branch report not merged): only the "not available" state was checked' };
  }
  check(await pageA.locator('#charts img.chart').count() === 2, 'charts');
  pageA.off('response', onChart);
  // Readable on a phone (the console draws them about 345 px wide at 390) and at 800:
  // no text over another, none cut off, none smaller than 10 px there.
  check(charts.size === 2, `charts seen: ${[...charts.keys()].join(', ')}`);
  for (const svg of await Promise.all(charts.values())) {
    const title = (svg.match(/<title[^>]*>([^<]*)/) || [])[1];
    for (const [width, minPx] of [[320, 9], [345, 10], [390, 10], [800, 6]]) {
      const bad = await chartTextProblems(svg, width, minPx);
      check(!bad.length, `${title} at ${width} px: ${bad.join(' | ')}`);
    }
  }
  const dl = pageA.waitForEvent('download');
  await pageA.getByRole('button', { name: 'Download summary.csv' }).click();
  await dl;
  clean(ctxA);
});

await flow('task_attachments', async () => {
  const png = makePng(16, 16);
  await pageA.goto(state.projectPath);
  await boardReady(pageA);
  await pageA.locator('li.card[data-title="Design banner"] a').click();
  await heading(pageA, 'Design banner');
  state.attachPath = new URL(pageA.url()).pathname;
  await pageA.locator('#attachments .empty', { hasText: 'No attachments yet.' }).waitFor();
  // Upload with progress: the bar is shown and reaches the end.
  const posted = pageA.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/attachments?filename=banner.png'));
  await pageA.getByLabel('Attach a file').setInputFiles({ name: 'banner.png', mimeType: 'image/png', buffer: png });
  check((await posted).status() === 201, 'upload not created');
  await pageA.locator('#attach-status .ok', { hasText: 'Attached banner.png' }).waitFor();
  check(await pageA.getByLabel('Attachment upload progress').evaluate((p) => !p.hidden && p.value === 1), 'upload progress not shown to the end');
  // In the list, with its size and type, and previewed from a blob: URL.
  const row = pageA.locator('#attachments li[data-name="banner.png"]');
  await row.waitFor();
  check((await row.textContent()).includes('image/png'), 'type not listed');
  await pageA.waitForFunction(() => { const i = document.querySelector('#attachments li[data-name="banner.png"] img.preview'); return i && i.complete && i.naturalWidth === 16 && i.src.startsWith('blob:'); });
  // Download: the same bytes, under the same name.
  const dl = pageA.waitForEvent('download');
  await row.getByRole('button', { name: 'Download banner.png' }).click();
  const file = await dl;
  check(file.suggestedFilename() === 'banner.png', 'download name: ' + file.suggestedFilename());
  check(Buffer.compare(readFileSync(await file.path()), png) === 0, 'downloaded bytes differ from the upload');
  // B becomes a viewer: sees the attachment and can download it, but no delete, no upload.
  await pageA.goto(state.projectPath + '/members');
  await pageA.locator(`li[data-user="${B.username}"]`).waitFor();
  const role = pageA.waitForResponse((r) => r.request().method() === 'PUT' && r.url().includes('/members/') && r.status() === 200);
  await pageA.getByLabel(`Role of ${B.username}`).selectOption('viewer');
  await role;
  await pageB.goto(state.attachPath);
  await heading(pageB, 'Design banner');
  const rowB = pageB.locator('#attachments li[data-name="banner.png"]');
  await rowB.getByRole('button', { name: 'Download banner.png' }).waitFor();
  check(await rowB.getByRole('button', { name: /^Delete/ }).count() === 0, 'a viewer is offered delete');
  check(await pageB.getByLabel('Attach a file').count() === 0, 'a viewer is offered upload');
  // A refused type: the 415 in words beside the upload, nothing added.
  await pageA.goto(state.attachPath);
  await row.waitFor();
  await pageA.getByLabel('Attach a file').setInputFiles({ name: 'page.html', mimeType: 'text/html',
    buffer: Buffer.from('<!doctype html><html><body><script>alert(1)</script></body></html>') });
  await pageA.locator('#attach-status .error[role=alert]', { hasText: 'this type of file is refused' }).waitFor();
  check(await pageA.locator('#attachments li').count() === 1, 'a refused file was listed');
  // Too large (the test server's limit is 64 KiB): the 413 in words, with the file's size.
  await pageA.getByLabel('Attach a file').setInputFiles({ name: 'big.png', mimeType: 'image/png',
    buffer: Buffer.concat([png, Buffer.alloc(70 * 1024)]) });
  await pageA.locator('#attach-status .error[role=alert]', { hasText: /big\.png is \d+ KiB, larger than this server accepts/ }).waitFor();
  check(await pageA.locator('#attachments li').count() === 1, 'a too large file was listed');
  // Delete removes it (for B too), then it goes back for the page scan's screenshots.
  const deleted = pageA.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/v1/attachments/'));
  await row.getByRole('button', { name: 'Delete banner.png' }).click();
  check((await deleted).status() === 204, 'delete refused');
  await pageA.locator('#attachments .empty').waitFor();
  await pageB.reload();
  await pageB.locator('#attachments .empty').waitFor();
  await pageA.getByLabel('Attach a file').setInputFiles({ name: 'banner.png', mimeType: 'image/png', buffer: png });
  await row.locator('img.preview').waitFor();
  clean(ctxA); clean(ctxB);
});

// Every page at both widths: an axe-core scan (no serious or critical violation), no
// sideways scrolling, no layout jump while loading (cumulative shift <= 0.1), and a
// screenshot under the results directory.
await flow('pages_axe_and_screenshots', async () => {
  const pages = [
    ['login', '/app/login', 'Log in', null], ['signup', '/app/signup', 'Sign up', null],
    ['projects', '/app/projects', 'Projects', A], ['board', state.projectPath, 'Launch', A],
    ['members', state.projectPath + '/members', 'Members of', A], ['task', state.taskPath, 'Write copy', A],
    ['reports', state.projectPath + '/reports', 'Reports of', A], ['feed', '/app/feed', 'Feed', A],
    ['post', state.postPath, 'Notes on', A], ['post-new', '/app/posts/new', 'Write a post', A],
    ['notifications', '/app/notifications', 'Notifications', A],
    ['preferences', '/app/notifications/preferences', 'Notification preferences', A],
    ['profile', '/app/me', 'Your profile', A], ['admin', '/app/admin', 'Admin', ADMIN],
    ['task-attachments', state.attachPath, 'Design banner', A, '#attachments img.preview'],
  ].filter(([, path]) => path);
  const bad = [];
  for (const [vname, viewport, colorScheme] of [['desktop', DESKTOP, 'light'], ['phone', PHONE, 'dark']]) {
    const anon = await context(viewport, colorScheme);
    const ctxs = new Map();
    for (const [name, path, title, who, ready] of pages) {
      let ctx = anon;
      if (who) {
        if (!ctxs.has(who)) {
          const c = await context(viewport, colorScheme);
          await login(await c.newPage(), who.username || who.name, who.password);
          ctxs.set(who, c);
        }
        ctx = ctxs.get(who);
      }
      const page = ctx.pages()[0] || await ctx.newPage();
      try {
        await page.goto(path);
        await heading(page, title);
        await page.waitForFunction(() => !document.querySelector('.loading, [aria-busy]'));
        if (ready) await page.waitForFunction((sel) => [...document.querySelectorAll(sel)].some((i) => i.complete && i.naturalWidth), ready);
      } catch (err) {
        err.message = `${name} ${vname} (${path}): ${err.message}`;
        throw err;
      }
      await page.evaluate(AXE);
      const found = await page.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ['violations'] });
        return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
      });
      for (const v of found) bad.push(`${name} ${vname}: ${v}`);
      // Works at this width: nothing makes the page scroll sideways.
      const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (wide > 0) bad.push(`${name} ${vname}: the page is ${wide} px wider than the viewport`);
      // No layout jump while it loaded.
      const shift = await page.evaluate(() => window.__layoutShift);
      if (!(shift <= 0.1)) bad.push(`${name} ${vname}: layout shift ${shift.toFixed(3)} while loading (> 0.1): ` +
        (await page.evaluate(() => (window.__shiftSources || []).slice(0, 3).join('; '))));
      const file = `${OUT}/screenshots/${name}-${vname}.png`;
      await page.screenshot({ path: file, fullPage: true });
      shots.push(file);
    }
    for (const c of [anon, ...ctxs.values()]) { clean(c); await c.close(); }
  }
  check(!bad.length, 'axe-core, width or layout shift: ' + bad.join(' | '));
});

writeFileSync(OUT + '/results.json', JSON.stringify({ results, screenshots: shots }, null, 2));
await browser.close();
