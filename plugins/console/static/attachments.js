// A task's attachments (task plugin README, "Attachments"): the list with its three
// states, an upload with a progress bar (the raw-body XHR upload the media upload uses),
// downloads and image previews fetched with the bearer token and shown through object
// URLs (an <a href> or <img src> to the API cannot send the token), and delete for whom
// the task plugin allows it: the uploader, an owner of the project, an admin.
import { get, api, upload, download, blobUrl, currentUser } from './api.js';
import { h, listState, say, when, showError, clearError, withProgress, bytes } from './ui.js';

// Raster types only: the task plugin serves these inline; an SVG is not previewed.
const PREVIEW = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

// The API's error in words for an upload, with what the person can do about it: for a
// 413 the file's size beside the server's message, which states the limit in bytes.
export function uploadMessage(err, file) {
  if (err.status === 413)
    return `Not attached: ${file.name} is ${bytes(file.size)}, larger than this server accepts for an attachment (${err.message}).`;
  if (err.status === 415)
    return `Not attached: this type of file is refused here (${err.message}).`;
  if (err.status === 403) return `Not attached: viewers cannot add files (${err.message}).`;
  return `Not attached: ${err.message}`;
}

// The section for task `tid`: `project` gives the caller's role, `names` the members.
export function attachmentsSection(tid, project, names) {
  const me = currentUser();
  const canWrite = project.role !== 'viewer';
  const mayDelete = (a) => a.uploaderId === me.id || project.role === 'owner' || me.role === 'admin';
  const list = h('div', { id: 'attachments' });
  const urls = [];
  const forget = () => { for (const u of urls.splice(0)) URL.revokeObjectURL(u); };

  const item = (a) => {
    const li = h('li', { dataset: { name: a.filename } });
    const actions = h('div', { class: 'row' },
      h('button', { type: 'button', class: 'secondary', onclick: async (e) => {
        const btn = e.currentTarget;
        clearError(li);
        btn.setAttribute('aria-busy', 'true');
        try { await download(`/v1/attachments/${a.id}`, a.contentType + ', */*', a.filename); say(`Downloaded ${a.filename}`); }
        catch (err) { showError(li, err); }
        finally { btn.removeAttribute('aria-busy'); }
      } }, 'Download ', h('span', { class: 'sr-only' }, a.filename)),
      mayDelete(a) ? h('button', { type: 'button', class: 'secondary', onclick: async (e) => {
        const btn = e.currentTarget;
        clearError(li);
        btn.disabled = true;
        try {
          await api('DELETE', `/v1/attachments/${a.id}`);
          say(`Deleted ${a.filename}`);
          load();
        } catch (err) { btn.disabled = false; showError(li, err); }
      } }, 'Delete ', h('span', { class: 'sr-only' }, a.filename)) : null);
    li.append(h('div', { class: 'attachment-name' }, a.filename),
      h('div', { class: 'muted' }, `${bytes(a.size)} · ${a.contentType} · ${names[a.uploaderId] || 'former member'} · `, when(a.createdAt)),
      actions);
    if (PREVIEW.has(a.contentType)) {
      // A reserved box (CSS) so the list does not jump when the preview arrives.
      const box = h('div', { class: 'preview-box' });
      li.append(box);
      blobUrl(`/v1/attachments/${a.id}`, a.contentType).then((u) => {
        urls.push(u);
        box.append(h('img', { class: 'preview', src: u, alt: `Preview of ${a.filename}` }));
      }, (err) => box.append(h('p', { class: 'error' }, `No preview: ${err.message}`)));
    }
    return li;
  };

  const load = () => {
    forget();
    return listState(list, async () => (await get(`/v1/tasks/${tid}/attachments?limit=100`)).attachments,
      (items) => h('ul', { class: 'list' }, items.map(item)), 'No attachments yet.');
  };

  let control = null;
  if (canWrite) {
    const bar = h('progress', { max: '1', value: '0', hidden: true, 'aria-label': 'Attachment upload progress' });
    const status = h('div', { id: 'attach-status', 'aria-live': 'polite' });
    const input = h('input', { type: 'file', name: 'attachment' });
    input.addEventListener('change', async () => {
      const file = input.files[0];
      clearError(status);
      status.replaceChildren();
      if (!file) return;
      input.disabled = true;
      try {
        const a = await withProgress(bar, (on) => upload(`/v1/tasks/${tid}/attachments`, file, on));
        status.append(h('p', { class: 'ok' }, `Attached ${a.filename} (${bytes(a.size)}).`));
        say(`Attached ${a.filename}`);
        load();
      } catch (err) {
        err.message = uploadMessage(err, file);
        showError(status, err);
      } finally {
        input.disabled = false;
        input.value = '';
      }
    });
    control = h('div', { class: 'attach' }, h('label', {}, 'Attach a file', input), bar, status);
  }
  return { node: h('section', { 'aria-labelledby': 'attachments-h' },
    h('h2', { id: 'attachments-h' }, 'Attachments'), list, control), load };
}
