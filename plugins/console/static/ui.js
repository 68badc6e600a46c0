// DOM helpers: elements are built with createElement and text nodes only (never
// innerHTML), so nothing the server or a user wrote can become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    el.append(c instanceof Node ? c : String(c));
  return el;
}

export function main() { return document.getElementById('main'); }

export function say(text) { document.getElementById('status').textContent = text; }

export function mount(title, ...children) {
  const m = main();
  m.replaceChildren(h('h1', {}, title), ...children);
  document.title = title + ' — Panthera';
}

// An error message in words, placed next to what caused it; a validation error also
// marks each named field (aria-invalid + its own message under the field).
export function showError(where, err, form) {
  const box = where.querySelector(':scope > .error[data-for-form]') || h('p', { class: 'error', role: 'alert', 'data-for-form': '' });
  box.textContent = err.message || String(err);
  if (!box.isConnected) where.prepend(box);
  if (form) {
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.field-error')) el.remove();
    for (const [name, why] of Object.entries(err.fields || {})) {
      const input = form.elements[name];
      if (!input || !input.closest) continue;
      input.setAttribute('aria-invalid', 'true');
      const id = 'err-' + name;
      input.setAttribute('aria-describedby', id);
      input.closest('label').after(h('p', { class: 'error field-error', id }, `${name}: ${why}`));
    }
  }
  return box;
}

export function clearError(where) {
  for (const el of where.querySelectorAll(':scope > .error, .field-error')) el.remove();
}

// A form whose submit disables the button, shows progress, and shows the API's error
// next to the form. `action(data)` returns a promise.
export function form(fields, submitText, action, attrs = {}) {
  const f = h('form', { class: 'stack', novalidate: true, ...attrs }, ...fields,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, submitText)));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    const old = btn.textContent;
    btn.textContent = old + '…';
    clearError(f);
    try {
      await action(Object.fromEntries(new FormData(f)), f);
    } catch (err) {
      showError(f, err, f);
    } finally {
      btn.disabled = false;
      btn.removeAttribute('aria-busy');
      btn.textContent = old;
    }
  });
  return f;
}

export function field(label, name, attrs = {}) {
  const tag = attrs.tag || 'input';
  delete attrs.tag;
  const input = tag === 'select'
    ? h('select', { name, ...attrs.attrs }, ...(attrs.options || []).map(([v, t]) => h('option', { value: v, selected: v === attrs.value }, t)))
    : h(tag, { name, ...attrs });
  if (tag === 'textarea' && attrs.value) input.value = attrs.value;
  return h('label', {}, label, input);
}

// A list section with its three states: loading, empty, error (with a retry).
export async function listState(container, load, render, emptyText) {
  container.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  container.setAttribute('aria-busy', 'true');
  try {
    const items = await load();
    container.replaceChildren();
    if (!items.length) container.append(h('p', { class: 'empty' }, emptyText));
    else container.append(render(items));
  } catch (err) {
    container.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message),
      h('button', { type: 'button', class: 'secondary', onclick: () => listState(container, load, render, emptyText) }, 'Retry'));
  } finally {
    container.removeAttribute('aria-busy');
  }
}

// The search API's highlight: fragments with <b> marks, every other character escaped.
// Rendered without innerHTML: split on the marks, decode the five entities, text nodes.
export function highlight(text) {
  const out = [];
  const decode = (s) => s.replace(/&(lt|gt|amp|quot|#39|#x27);/g,
    (m, n) => ({ lt: '<', gt: '>', amp: '&', quot: '"', '#39': "'", '#x27': "'" })[n]);
  const parts = String(text).split(/(<b>|<\/b>)/);
  let bold = false;
  for (const p of parts) {
    if (p === '<b>') bold = true;
    else if (p === '</b>') bold = false;
    else if (p) out.push(bold ? h('mark', {}, decode(p)) : decode(p));
  }
  return out;
}

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return h('time', { datetime: iso }, d.toLocaleString());
}

export function idem() { return { 'Idempotency-Key': crypto.randomUUID() }; }

// A long upload's progress bar: shown at 0, moved by the upload's fraction, full at the
// end, hidden again on a failure (the error says what happened). `run(onProgress)` is
// the upload (api.js upload); used by the post editor's media and a task's attachments.
export async function withProgress(bar, run) {
  bar.hidden = false;
  bar.value = 0;
  try {
    const r = await run((f) => { bar.value = f; });
    bar.value = 1;
    return r;
  } catch (err) {
    bar.hidden = true;
    throw err;
  }
}

export function bytes(n) {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
