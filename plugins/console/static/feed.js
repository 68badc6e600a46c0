// Feed and posts: read, search (highlights rendered as text + <mark>), like, comment,
// write (draft or publish) with a media upload that shows its progress.
import { api, get, upload, currentUser } from './api.js';
import { h, mount, form, field, listState, idem, say, highlight, when, showError, clearError, withProgress } from './ui.js';
import { mentionText } from './task.js';
import { go } from './app.js';

function postItem(p) {
  return h('li', {},
    h('a', { href: `/app/posts/${p.id}` }, p.title), ' ',
    h('span', { class: 'muted' }, `${p.kind} · ${p.status} · ${p.likeCount} likes · ${p.commentCount} comments`),
    p.highlight ? h('p', { class: 'highlight' }, highlight(p.highlight)) : null);
}

export function feedView() {
  const list = h('div', { id: 'post-list' });
  const params = new URLSearchParams(location.search);
  const q = params.get('q') || '';
  const drafts = params.get('drafts') === '1';
  const search = h('form', { role: 'search', class: 'row', onsubmit: (e) => {
    e.preventDefault();
    const v = e.target.elements.q.value.trim();
    go('/app/feed' + (v ? '?q=' + encodeURIComponent(v) : ''));
  } }, h('label', {}, 'Search posts', h('input', { name: 'q', type: 'search', value: q })), h('button', { type: 'submit' }, 'Search'));
  mount('Feed', h('p', { class: 'row' }, h('a', { class: 'button', href: '/app/posts/new' }, 'Write a post'),
    h('a', { href: drafts ? '/app/feed' : '/app/feed?drafts=1' }, drafts ? 'Published posts' : 'Your drafts')), search, list);
  const path = q ? '/v1/posts?limit=50&q=' + encodeURIComponent(q)
    : drafts ? `/v1/posts?status=draft&authorId=${currentUser().id}&limit=50` : '/v1/feed?limit=50';
  return listState(list, async () => (await get(path)).posts,
    (items) => h('ul', { class: 'list' }, items.map(postItem)), q ? 'Nothing matches.' : 'No posts yet.');
}

// A line that is only a link to our media is shown as the image (previewed when it is
// one; a PDF or video stays a link): media are public by URL (content README).
const MEDIA = /^(?:https?:\/\/[^/]+)?(\/v1\/media\/[0-9a-f-]{36})$/i;
function bodyLine(line) {
  const m = line.trim().match(MEDIA);
  if (!m) return h('p', {}, line);
  const img = h('img', { class: 'preview', src: m[1], alt: 'Image attached to the post' });
  img.addEventListener('error', () => img.remove());
  return h('p', {}, img, h('br'), h('a', { href: m[1] }, 'Open the attached file'));
}

export async function postView(id) {
  let post = await get(`/v1/posts/${id}`);
  const mine = post.authorId === currentUser().id;
  const comments = h('div', { id: 'post-comments' });
  const likeBox = h('div', { class: 'row' });
  const renderLike = () => likeBox.replaceChildren(h('button', { type: 'button', 'aria-pressed': String(post.likedByMe), onclick: async () => {
    clearError(likeBox);
    try {
      await api(post.likedByMe ? 'DELETE' : 'POST', `/v1/posts/${id}/like`);
      post = await get(`/v1/posts/${id}`);
      renderLike();
    } catch (err) { showError(likeBox, err); }
  } }, post.likedByMe ? 'Unlike' : 'Like'), h('span', {}, `${post.likeCount} likes`));
  renderLike();
  const load = () => listState(comments, async () => (await get(`/v1/posts/${id}/comments?limit=100`)).comments,
    (items) => h('ul', { class: 'list' }, items.map((c) => h('li', {}, h('div', { class: 'muted' }, when(c.createdAt)),
      h('p', {}, mentionText(c.body, new Set([...c.body.matchAll(/@([A-Za-z0-9_.]+)/g)].map((m) => m[1].toLowerCase()))))))), 'No comments yet.');
  mount(post.title,
    h('p', { class: 'muted' }, `${post.kind} · ${post.status}`, post.publishedAt ? [' · ', when(post.publishedAt)] : null,
      (post.tags || []).length ? ' · ' + post.tags.join(', ') : ''),
    mine ? h('p', {}, h('a', { href: `/app/posts/${id}/edit` }, 'Edit')) : null,
    h('div', { class: 'post-body' }, ...String(post.body).split('\n').map(bodyLine)),
    post.status === 'published' ? likeBox : null,
    h('h2', {}, 'Comments'), comments,
    post.status === 'published' ? form([field('Comment', 'body', { tag: 'textarea', required: true })], 'Add comment', async (d, f) => {
      await api('POST', `/v1/posts/${id}/comments`, { body: { body: d.body }, headers: idem() });
      f.reset(); say('Comment added'); load();
    }, { 'aria-label': 'Add comment' }) : null);
  return load();
}

export async function postEditView(id) {
  const post = id ? await get(`/v1/posts/${id}`) : null;
  const progress = h('progress', { max: '1', value: '0', hidden: true, 'aria-label': 'Upload progress' });
  const media = h('div', { id: 'media' });
  const file = h('input', { type: 'file', name: 'file', accept: 'image/*,video/*,application/pdf' });
  const bodyField = field('Body', 'body', { tag: 'textarea', value: post?.body || '', required: true });
  file.addEventListener('change', async () => {
    clearError(media);
    if (!file.files[0]) return;
    try {
      const m = await withProgress(progress, (on) => upload('/v1/media', file.files[0], on));
      const ta = bodyField.querySelector('textarea');
      ta.value += `\n${location.origin}${m.url}`;
      media.append(h('p', { class: 'ok' }, `Uploaded ${file.files[0].name} (${m.contentType}, ${m.size} bytes); its link is in the body.`));
      if (m.contentType.startsWith('image/')) media.append(h('img', { class: 'preview', src: m.url, alt: `Preview of ${file.files[0].name}` }));
      say('Upload finished');
    } catch (err) { showError(media, err); }
  });
  const save = async (d, status) => {
    const body = { title: d.title, body: d.body, kind: d.kind, status,
      tags: d.tags.split(',').map((t) => t.trim()).filter(Boolean) };
    const r = post
      ? await api('PUT', `/v1/posts/${id}`, { body, headers: { 'If-Match': `"${post.version}"` } })
      : await api('POST', '/v1/posts', { body, headers: idem() });
    say(status === 'draft' ? 'Draft saved' : 'Published');
    go(`/app/posts/${r.data.id}`);
  };
  const f = form([
    field('Title', 'title', { value: post?.title || '', required: true }),
    field('Kind', 'kind', { tag: 'select', options: [['post', 'post'], ['article', 'article']], value: post?.kind || 'post' }),
    bodyField,
    field('Tags (comma separated)', 'tags', { value: (post?.tags || []).join(', ') }),
    h('label', {}, 'Attach media (image, video or PDF)', file), progress, media,
  ], 'Publish', (d) => save(d, 'published'), { 'aria-label': 'Write a post' });
  const draft = h('button', { type: 'button', class: 'secondary', onclick: async () => {
    clearError(f);
    try { await save(Object.fromEntries(new FormData(f)), 'draft'); } catch (err) { showError(f, err, f); }
  } }, 'Save draft');
  f.querySelector('.row').append(draft);
  mount(post ? 'Edit post' : 'Write a post', f);
}
