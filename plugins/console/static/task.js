// A task: its fields (with If-Match, so a concurrent edit is a 412 in words), its
// dependencies (a cycle or an open dependency is a 409, explained), comments with
// @mentions, its attachments (attachments.js), and its activity.
import { api, get } from './api.js';
import { h, mount, form, field, listState, idem, say, when } from './ui.js';
import { projectNav } from './projects.js';
import { attachmentsSection } from './attachments.js';

export function mentionText(body, names) {
  // @name of a member is a mention: shown as <strong>, all else plain text.
  return String(body).split(/(@[A-Za-z0-9_.]+)/).map((p) =>
    p.startsWith('@') && names.has(p.slice(1).replace(/\.$/, '').toLowerCase()) ? h('strong', { class: 'mention' }, p) : p);
}

export async function taskView(tid) {
  let task = await get(`/v1/tasks/${tid}`);
  const pid = task.projectId;
  const [project, members, siblings] = await Promise.all([
    get(`/v1/projects/${pid}`),
    get(`/v1/projects/${pid}/members?limit=100`).then((r) => r.members),
    get(`/v1/projects/${pid}/tasks?limit=100&sort=rank`).then((r) => r.tasks.filter((t) => t.id !== tid)),
  ]);
  const names = Object.fromEntries(members.map((m) => [m.userId, m.username]));
  const lower = new Set(members.map((m) => m.username.toLowerCase()));
  const canWrite = project.role !== 'viewer';
  const comments = h('div', { id: 'comments' });
  const activity = h('div', { id: 'activity' });

  const depSelect = h('select', { name: 'dependsOn', multiple: true, size: Math.min(6, Math.max(2, siblings.length)) },
    siblings.map((t) => h('option', { value: t.id, selected: task.dependsOn.includes(t.id) }, t.title)));
  const edit = form([
    field('Title', 'title', { value: task.title, required: true }),
    field('Description', 'description', { tag: 'textarea', value: task.description || '' }),
    field('Status', 'status', { tag: 'select', options: [['todo', 'To do'], ['in_progress', 'In progress'], ['done', 'Done']], value: task.status }),
    field('Priority', 'priority', { tag: 'select', options: [['low', 'low'], ['medium', 'medium'], ['high', 'high']], value: task.priority }),
    field('Assignee', 'assigneeId', { tag: 'select', options: [['', 'nobody'], ...members.map((m) => [m.userId, m.username])], value: task.assigneeId || '' }),
    field('Due date', 'dueDate', { type: 'date', value: task.dueDate || '' }),
    h('label', {}, 'Depends on (tasks that must be done first)', depSelect),
  ], 'Save task', async (d, f) => {
    const body = {
      title: d.title, description: d.description || null, status: d.status, priority: d.priority,
      assigneeId: d.assigneeId || null, dueDate: d.dueDate || null,
      dependsOn: [...depSelect.selectedOptions].map((o) => o.value),
    };
    try {
      const r = await api('PUT', `/v1/tasks/${tid}`, { body, headers: { 'If-Match': `"${task.version}"` } });
      task = r.data;
      say('Task saved');
      loadActivity();
    } catch (err) {
      if (err.status === 409) err.message = `Not saved: ${err.message}. A task cannot depend on itself or on a task that depends on it, and it cannot be done while a task it depends on is still open.`;
      if (err.status === 412) err.message = 'Not saved: someone changed this task meanwhile. Reload the page to see their change, then edit again.';
      throw err;
    }
  }, { 'aria-label': 'Edit task' });
  if (!canWrite) for (const el of edit.elements) el.disabled = true;

  const loadComments = () => listState(comments, async () => (await get(`/v1/tasks/${tid}/comments?limit=100`)).comments,
    (items) => h('ul', { class: 'list' }, items.map((c) => h('li', {},
      h('div', { class: 'muted' }, names[c.authorId] || 'former member', ' · ', when(c.createdAt)),
      h('p', {}, mentionText(c.body, lower))))), 'No comments yet.');
  const loadActivity = () => listState(activity, async () => (await get(`/v1/projects/${pid}/activity?limit=100`)).activity.filter((a) => a.entityId === tid),
    (items) => h('ul', { class: 'list' }, items.map((a) => h('li', {},
      `${names[a.actorId] || 'someone'} ${a.action} ${a.entity}`, ' · ', when(a.createdAt),
      Object.keys(a.changes || {}).length ? h('div', { class: 'muted' }, Object.keys(a.changes).join(', ')) : null))), 'No activity.');

  const attachments = attachmentsSection(tid, project, names);
  mount(task.title, projectNav(pid, project.name),
    h('div', { class: 'grid2' },
      h('section', { 'aria-label': 'Task' }, edit,
        h('h2', {}, 'Comments'), comments,
        canWrite ? form([field('Comment (@username mentions a member)', 'body', { tag: 'textarea', required: true })], 'Add comment', async (d, f) => {
          await api('POST', `/v1/tasks/${tid}/comments`, { body: { body: d.body }, headers: idem() });
          f.reset();
          say('Comment added');
          loadComments();
        }, { 'aria-label': 'Add comment' }) : null,
        attachments.node),
      h('section', { 'aria-label': 'Activity' }, h('h2', {}, 'Activity'), activity)));
  await Promise.all([loadComments(), loadActivity(), attachments.load()]);
}
