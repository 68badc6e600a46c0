// The board: a column per status in rank order. A card moves by drag and drop or by its
// buttons (keyboard); either way POST /v1/tasks/{id}/move names its new neighbour, so
// the order is the server's and survives a reload.
import { api, get } from './api.js';
import { h, mount, form, field, idem, say, showError, clearError } from './ui.js';
import { projectNav } from './projects.js';

const STATUSES = [['todo', 'To do'], ['in_progress', 'In progress'], ['done', 'Done']];

async function allTasks(pid) {
  const out = [];
  for (let page = 1; ; page++) {
    const r = await get(`/v1/projects/${pid}/tasks?sort=rank&limit=100&page=${page}`);
    out.push(...r.tasks);
    if (out.length >= r.total || !r.tasks.length) return out;
  }
}

export async function boardView(pid) {
  const project = await get(`/v1/projects/${pid}`);
  const members = (await get(`/v1/projects/${pid}/members?limit=100`)).members;
  const names = Object.fromEntries(members.map((m) => [m.userId, m.username]));
  const canWrite = project.role !== 'viewer';
  const board = h('div', { class: 'board', id: 'board' });
  const problem = h('div', { id: 'board-error' });
  let tasks = [];
  let dragged = null;

  async function move(task, body, label) {
    clearError(problem);
    board.setAttribute('aria-busy', 'true');
    try {
      await api('POST', `/v1/tasks/${task.id}/move`, { body });
      say(label);
      await load(task.id);
    } catch (err) {
      showError(problem, err.status === 409 ? Object.assign(err, { message: `“${task.title}” cannot move: ${err.message} (a task cannot be done while a task it depends on is not done)` }) : err);
      await load();
    } finally { board.removeAttribute('aria-busy'); }
  }

  function keyMoves(t, col, i) {
    const si = STATUSES.findIndex(([s]) => s === t.status);
    const btn = (text, label, fn) => h('button', { type: 'button', class: 'secondary', 'aria-label': `${label}: ${t.title}`, title: label, onclick: fn }, text);
    return h('div', { class: 'moves' },
      i > 0 ? btn('↑', 'Move up', () => move(t, { before: col[i - 1].id }, `${t.title} moved up`)) : null,
      i < col.length - 1 ? btn('↓', 'Move down', () => move(t, { after: col[i + 1].id }, `${t.title} moved down`)) : null,
      si > 0 ? btn('←', `Move to ${STATUSES[si - 1][1]}`, () => move(t, { status: STATUSES[si - 1][0] }, `${t.title} moved to ${STATUSES[si - 1][1]}`)) : null,
      si < 2 ? btn('→', `Move to ${STATUSES[si + 1][1]}`, () => move(t, { status: STATUSES[si + 1][0] }, `${t.title} moved to ${STATUSES[si + 1][1]}`)) : null);
  }

  function card(t, col, i) {
    const c = h('li', { class: 'card', draggable: canWrite ? 'true' : null, dataset: { id: t.id, title: t.title } },
      h('a', { href: `/app/tasks/${t.id}` }, t.title),
      h('div', { class: 'muted' }, `${t.priority}${t.assigneeId ? ' · ' + (names[t.assigneeId] || 'someone') : ''}${t.dueDate ? ' · due ' + t.dueDate : ''}`),
      canWrite ? keyMoves(t, col, i) : null);
    c.addEventListener('dragstart', (e) => { dragged = t; c.classList.add('dragging'); e.dataTransfer.setData('text/plain', t.id); e.dataTransfer.effectAllowed = 'move'; });
    c.addEventListener('dragend', () => { c.classList.remove('dragging'); });
    return c;
  }

  function column([status, title]) {
    const col = tasks.filter((t) => t.status === status);
    const ol = h('ol', { 'aria-label': title }, col.map((t, i) => card(t, col, i)));
    const sec = h('section', { class: 'column', dataset: { status } }, h('h2', {}, `${title} (${col.length})`), ol,
      col.length ? null : h('p', { class: 'empty' }, 'No tasks'));
    sec.addEventListener('dragover', (e) => { if (dragged) { e.preventDefault(); sec.classList.add('drop'); } });
    sec.addEventListener('dragleave', () => sec.classList.remove('drop'));
    sec.addEventListener('drop', (e) => {
      e.preventDefault();
      sec.classList.remove('drop');
      const t = dragged;
      dragged = null;
      if (!t) return;
      // The card under the pointer: drop above its middle puts the task before it.
      const target = [...ol.children].find((li) => {
        const r = li.getBoundingClientRect();
        return e.clientY < r.top + r.height / 2 && li.dataset.id !== t.id;
      });
      const body = { status };
      if (target) body.before = target.dataset.id;
      else {
        const last = [...ol.children].filter((li) => li.dataset.id !== t.id).pop();
        if (last) body.after = last.dataset.id;
      }
      move(t, body, `${t.title} moved to ${title}`);
    });
    return sec;
  }

  async function load(focusId) {
    tasks = await allTasks(pid);
    board.replaceChildren(...STATUSES.map(column));
    if (focusId) board.querySelector(`[data-id="${focusId}"] a`)?.focus();
  }

  mount(project.name, projectNav(pid),
    canWrite ? h('details', {}, h('summary', {}, 'New task'), form([
      field('Title', 'title', { required: true, maxlength: 200 }),
      field('Priority', 'priority', { tag: 'select', options: [['low', 'low'], ['medium', 'medium'], ['high', 'high']], value: 'medium' }),
    ], 'Add task', async (d, f) => {
      await api('POST', `/v1/projects/${pid}/tasks`, { body: { title: d.title, priority: d.priority }, headers: idem() });
      f.reset();
      say('Task added');
      await load();
    }, { 'aria-label': 'New task' })) : h('p', { class: 'muted' }, 'You can read this board (viewer).'),
    problem, board);
  board.append(h('p', { class: 'loading' }, 'Loading…'));
  await load();
  // Live: a notification about this project (another member's change) reloads the board.
  const onNote = (e) => { if (board.isConnected && e.detail?.payload?.projectId === pid) load(); else if (!board.isConnected) window.removeEventListener('panthera:notification', onNote); };
  window.addEventListener('panthera:notification', onNote);
}
