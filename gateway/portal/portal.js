// Start-up and hash routing: take the token from the link, learn what the
// session may do, then render the view the hash names.

import { api, captureToken, enc, forgetToken, loadSession, problemBox, session, whenExpired } from './api.js';
import { catalogView } from './catalog.js';
import { h, replace, time } from './dom.js';
import { endpointCreateView, endpointEditView, endpointView } from './endpoint.js';
import { deliveriesView, deliveryView, endpointsView, eventsView, eventView, landingView } from './views.js';

const main = document.getElementById('main');
const status = document.getElementById('session');
const nav = document.getElementById('nav');

const ROUTES = [
  [/^\/?$/, () => landingView()],
  [/^\/endpoints$/, () => endpointsView()],
  [/^\/endpoints\/new$/, () => endpointCreateView()],
  [/^\/endpoints\/([^/]+)\/edit$/, (m) => endpointEditView(decodeURIComponent(m[1]))],
  [/^\/endpoints\/([^/]+)$/, (m, _, rerender) => endpointView(decodeURIComponent(m[1]), rerender)],
  [/^\/events$/, (_, params) => eventsView(params)],
  [/^\/events\/([^/]+)$/, (m) => eventView(decodeURIComponent(m[1]))],
  [/^\/deliveries$/, (_, params) => deliveriesView(params)],
  [/^\/deliveries\/([^/]+)$/, (m, _, rerender) => deliveryView(decodeURIComponent(m[1]), rerender)],
  [/^\/catalog$/, () => catalogView()],
];

let expired = false;
let generation = 0;

function message(title, text) {
  nav.hidden = true;
  main.removeAttribute('aria-busy');
  replace(status);
  replace(main, h('div', { class: 'card message', role: 'alert' }, h('h1', { tabindex: '-1', id: 'view-title' }, title), h('p', {}, text)));
  document.title = `${title} · Herald`;
}

function showExpired() {
  expired = true;
  forgetToken();
  message('Session expired', 'Your session has expired. Open the link your provider gave you again to continue.');
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const [path, search] = raw.split('?');
  const params = {};
  for (const [key, value] of new URLSearchParams(search || '')) params[key] = value;
  return { path: path || '/', params };
}

function markNav(path) {
  for (const a of nav.querySelectorAll('a')) {
    const target = a.getAttribute('href').replace(/^#/, '');
    const current = target === '/' ? path === '/' : path === target || path.startsWith(`${target}/`);
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function render(opts = {}) {
  if (expired) return;
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor
  const { path, params } = parseHash();
  const mine = ++generation;
  markNav(path);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  main.setAttribute('aria-busy', 'true');
  let content;
  try {
    if (!route) {
      content = [h('h1', { tabindex: '-1', id: 'view-title' }, 'Not found'), h('p', {}, 'There is no such page. '), h('a', { href: '#/' }, 'Back to the overview')];
    } else {
      content = await route[1](path.match(route[0]), params, (o) => render(o));
    }
  } catch (err) {
    if (expired) return;
    content = [h('h1', { tabindex: '-1', id: 'view-title' }, 'Something went wrong'), problemBox(err)];
  }
  if (mine !== generation || expired) return; // a newer navigation won
  const scroll = window.scrollY;
  replace(main, content);
  main.removeAttribute('aria-busy');
  const title = document.getElementById('view-title');
  document.title = `${title ? title.textContent : 'Portal'} · Herald`;
  if (opts.keepFocus) window.scrollTo(0, scroll);
  else if (title) title.focus({ preventScroll: true });
}

/**
 * Ends the session: a portal session (read-only ones too) is revoked on the
 * server, and the token leaves this tab.
 */
async function signOut() {
  if (session.sessionId) {
    try {
      await api('DELETE', `/v1/portal/sessions/${enc(session.sessionId)}`);
    } catch (err) {
      // Forgotten here all the same; the session expires on its own.
    }
  }
  expired = true;
  forgetToken();
  message('Signed out', 'You have signed out. Open the link your provider gave you to come back.');
}

function showSession() {
  const out = h('button', { type: 'button', class: 'secondary small', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', signOut);
  replace(status,
    session.tenant ? h('span', {}, 'Account ', h('strong', {}, session.tenant)) : null,
    session.readOnly ? h('span', { class: 'badge badge-readonly' }, 'Read-only') : null,
    session.expiresAt ? h('span', { class: 'muted' }, 'Expires ', time(session.expiresAt)) : null,
    out);
}

async function start() {
  const token = captureToken();
  if (!token) {
    message('Open your portal link', 'This portal opens from a personal link. Open the link your provider gave you to see your webhooks.');
    return;
  }
  document.querySelector('.skip').addEventListener('click', (event) => { event.preventDefault(); main.focus(); });
  whenExpired(showExpired);
  try {
    await loadSession();
  } catch (err) {
    if (!expired) replace(main, h('h1', { tabindex: '-1' }, 'Something went wrong'), problemBox(err));
    return;
  }
  document.body.classList.toggle('read-only', session.readOnly);
  showSession();
  nav.hidden = false;
  window.addEventListener('hashchange', () => {
    if (!location.hash.startsWith('#token=')) render();
  });
  main.addEventListener('click', (event) => {
    if (event.target.closest('[data-refresh]')) render({ keepFocus: true });
    const anchor = event.target.closest('a[data-anchor]');
    const target = anchor && document.getElementById(anchor.dataset.anchor);
    if (target) {
      event.preventDefault();
      const title = target.querySelector('h2');
      title.setAttribute('tabindex', '-1');
      title.focus();
      target.scrollIntoView();
    }
  });
  await render();
}

// A new link opened in this tab starts over with its token.
window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#token=')) location.reload();
});

start();
