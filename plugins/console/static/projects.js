// Projects: the list, creating one, and its members.
import { api, get, currentUser } from './api.js';
import { h, mount, form, field, listState, idem, say, showError, clearError } from './ui.js';
import { go } from './app.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function projectNav(pid, name) {
  return h('nav', { 'aria-label': 'Project', class: 'row' },
    h('a', { href: `/app/projects/${pid}` }, 'Board'),
    h('a', { href: `/app/projects/${pid}/members` }, 'Members'),
    h('a', { href: `/app/projects/${pid}/reports` }, 'Reports'),
    name ? h('span', { class: 'muted' }, name) : null);
}

export function projectsView() {
  const list = h('div', { id: 'project-list' });
  mount('Projects',
    h('details', {}, h('summary', {}, 'New project'),
      form([
        field('Name', 'name', { required: true, maxlength: 200 }),
        field('Description', 'description', { tag: 'textarea' }),
      ], 'Create project', async (d, f) => {
        const body = { name: d.name };
        if (d.description) body.description = d.description;
        const { data } = await api('POST', '/v1/projects', { body, headers: idem() });
        f.reset();
        say('Project created');
        go(`/app/projects/${data.id}`);
      }, { 'aria-label': 'New project' })),
    h('h2', {}, 'Your projects'), list);
  return listState(list, async () => (await get('/v1/projects?limit=100')).projects,
    (items) => h('ul', { class: 'list' }, items.map((p) => h('li', {},
      h('a', { href: `/app/projects/${p.id}` }, p.name), ' ',
      h('span', { class: 'muted' }, `${p.status} · your role: ${p.role || 'admin'}`),
      p.description ? h('p', {}, p.description) : null))),
    'No projects yet: create one above.');
}

// The API adds members by id; only admins can search users, so a username is resolved
// through GET /v1/users?search for an admin, and anyone else pastes the person's id.
export async function membersView(pid) {
  const project = await get(`/v1/projects/${pid}`);
  const list = h('div', { id: 'member-list' });
  const owner = project.role === 'owner' || currentUser().role === 'admin';
  const load = () => listState(list, async () => (await get(`/v1/projects/${pid}/members?limit=100`)).members,
    (items) => h('ul', { class: 'list' }, items.map((m) => {
      const li = h('li', { dataset: { user: m.username } }, h('strong', {}, m.username), ' ');
      if (!owner) { li.append(m.role); return li; }
      const sel = h('select', { 'aria-label': `Role of ${m.username}` },
        ...['owner', 'member', 'viewer'].map((r) => h('option', { value: r, selected: r === m.role }, r)));
      sel.addEventListener('change', async () => {
        clearError(li);
        try { await api('PUT', `/v1/projects/${pid}/members/${m.userId}`, { body: { role: sel.value } }); say(`${m.username} is now ${sel.value}`); }
        catch (err) { sel.value = m.role; showError(li, err); }
      });
      li.append(sel, ' ', h('button', { type: 'button', class: 'secondary', onclick: async () => {
        clearError(li);
        try { await api('DELETE', `/v1/projects/${pid}/members/${m.userId}`); say(`${m.username} removed`); load(); }
        catch (err) { showError(li, err); }
      } }, `Remove ${m.username}`));
      return li;
    })), 'No members.');
  mount(`Members of ${project.name}`, projectNav(pid),
    owner ? form([
      field('Username or user id', 'username', { required: true }),
      field('Role', 'role', { tag: 'select', options: [['member', 'member'], ['viewer', 'viewer'], ['owner', 'owner']], value: 'member' }),
    ], 'Invite', async (d, f) => {
      const who = d.username.trim();
      const body = UUID.test(who) ? { userId: who, role: d.role } : { username: who, role: d.role };
      try {
        await api('POST', `/v1/projects/${pid}/members`, { body, headers: idem() });
      } catch (err) {
        // Whichever the API names, the field is this form's one box.
        const why = err.fields?.username || err.fields?.userId;
        if (why) err.fields = { username: why };
        throw err;
      }
      f.reset();
      say('Member added');
      load();
    }, { 'aria-label': 'Invite a member' }) : null,
    h('h2', {}, 'Members'), list);
  return load();
}
