// DOM building blocks. Every string handed to these helpers becomes a text
// node or a property value: nothing here parses HTML, so data from the API
// can never become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'hidden' || key === 'selected') {
      el[key] = value;
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'style' || key.startsWith('on')) {
      throw new Error(`refused attribute ${key}`);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x'}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element, built the same way. */
export function svg(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** JSON shown as text in a <pre>. */
export function pre(value, label) {
  const text = value === undefined ? '' : JSON.stringify(value, null, 2);
  return h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' }, text);
}

/** A local, readable time; the exact value stays in a tooltip. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  return h('time', { datetime: iso, title: iso }, date.toLocaleString());
}

export function badge(text, kind) {
  return h('span', { class: `badge badge-${kind || text}` }, text);
}

/** A table inside a horizontally scrollable, keyboard-focusable frame. */
export function table(caption, headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || 'Nothing yet.');
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell, i) =>
        h('td', { 'data-label': headers[i] }, cell)))))));
}

/** A definition list of [term, value] pairs; null values are left out. */
export function fields(pairs) {
  return h('dl', { class: 'fields' },
    pairs.filter(([, value]) => value !== null && value !== undefined)
      .map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

let ids = 0;
/** A fresh element id. */
export function uid(prefix) {
  ids += 1;
  return `${prefix || 'f'}-${ids}`;
}

/** A labelled control: the label's `for` names the control's id. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  const hintEl = hint ? h('small', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

export function input(name, value, attrs) {
  return h('input', { name, type: 'text', ...attrs, value: value === null || value === undefined ? '' : String(value) });
}

export function select(name, options, current, attrs) {
  return h('select', { name, ...attrs },
    options.map(([value, label]) => h('option', { value, selected: value === current }, label || value)));
}

export function textarea(name, value, attrs) {
  return h('textarea', { name, rows: '4', spellcheck: 'false', ...attrs, value: value || '' });
}

/** The heading of a view; it takes the focus after navigation. */
export function heading(text, ...extra) {
  return h('div', { class: 'view-head' }, h('h1', { tabindex: '-1', id: 'view-title' }, text), extra);
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), children);
}

/** `<input type=datetime-local>` value to RFC 3339 (UTC), or ''. */
export function localToIso(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/** RFC 3339 to a `<input type=datetime-local>` value, or ''. */
export function isoToLocal(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A link inside the portal. */
export function link(hash, text, attrs) {
  return h('a', { href: hash, ...attrs }, text);
}
