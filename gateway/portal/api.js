// The portal's only way to the REST API: the token from the link, sent as
// a bearer token on every same-origin call, and problem+json errors.

import { h } from './dom.js';

const TOKEN_KEY = 'herald.portal.token';

/** What `GET /v1/portal/session` said about this session. */
export const session = { tenant: null, sessionId: null, readOnly: false, expiresAt: null };

/**
 * Moves a `#token=…` from the address bar into sessionStorage, so the token
 * is neither left in the history nor sent anywhere but the API.
 */
export function captureToken() {
  // Not URLSearchParams: it would read a `+` of a base64 token as a space.
  const match = /^#token=([^&]+)/.exec(location.hash);
  let token = null;
  try {
    token = match ? decodeURIComponent(match[1]) : null;
  } catch (err) {
    token = null;
  }
  if (match) history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer that was not 2xx; `problem` is the problem+json body when there was one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || { title: `HTTP ${status}`, detail: '' };
  }

  /** The route or resource does not exist on this server (yet). */
  get missing() {
    return this.status === 404 || this.status === 405;
  }

  /** This server does not serve the route at all (as opposed to an unknown resource). */
  get unrouted() {
    return this.status === 405 || (this.status === 404 && this.problem.detail === 'no such route');
  }
}

let onExpired = () => {};
/** What to do when the API answers 401. */
export function whenExpired(handler) {
  onExpired = handler;
}

/** Calls the API; resolves to the JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: 'Network error', detail: 'The server could not be reached. Try again.' });
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (err) {
      json = null;
    }
  }
  if (response.status === 401) {
    console.warn(`${method} ${path} answered 401`);
    onExpired();
    throw new ApiError(401, json);
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** A query string of the non-empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export function enc(id) {
  return encodeURIComponent(id);
}

/** Loads the session; a server without the session route treats the token as a full key. */
export async function loadSession() {
  try {
    const answer = await api('GET', '/v1/portal/session');
    session.tenant = answer.tenant || null;
    session.sessionId = answer.sessionId || null;
    session.readOnly = answer.readOnly === true;
    session.expiresAt = answer.expiresAt || null;
  } catch (err) {
    if (!(err instanceof ApiError) || !err.missing) throw err;
    session.readOnly = false;
  }
  return session;
}

/** The field name an error names, without list indexes: `retry.schedule[2]` → `retry.schedule`. */
function baseField(field) {
  return String(field || '').replace(/\[\d+\]/g, '');
}

/**
 * Runs `action` when `form` is submitted, its `submit` button disabled
 * meanwhile; a failure is shown next to the form unless `failed` answers
 * that it dealt with it.
 */
export function onSubmit(form, submit, action, failed) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await action();
      showProblem(form, null);
    } catch (err) {
      if (!(failed && failed(err))) showProblem(form, err);
    } finally {
      submit.disabled = false;
    }
  });
}

/**
 * Shows an error next to `form` (in its `.problems` slot) and marks the
 * controls whose `name` the problem's `errors` mention.
 */
export function showProblem(form, err) {
  const slot = form.querySelector('.problems');
  for (const old of form.querySelectorAll('[aria-invalid="true"]')) old.removeAttribute('aria-invalid');
  for (const old of form.querySelectorAll('.field-error')) old.remove();
  if (!err) {
    if (slot) slot.replaceChildren();
    return;
  }
  const box = problemBox(err);
  const problem = err instanceof ApiError ? err.problem : null;
  for (const item of (problem && problem.errors) || []) {
    const control = form.querySelector(`[name="${CSS.escape(baseField(item.field))}"]`);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      control.insertAdjacentElement('afterend', h('small', { class: 'field-error' }, item.message));
    }
  }
  if (slot) slot.replaceChildren(box);
  else form.prepend(box);
  box.focus();
}

/** An error as an alert box: title, detail and each invalid field. */
export function problemBox(err) {
  const problem = err instanceof ApiError ? err.problem : { title: 'Error', detail: String(err && err.message) };
  const errors = problem.errors || [];
  return h('div', { class: 'problem', role: 'alert', tabindex: '-1' },
    h('strong', {}, problem.title || 'Error'),
    problem.detail && !errors.some((e) => `${e.field}: ${e.message}` === problem.detail) ? h('p', {}, problem.detail) : null,
    errors.length ? h('ul', {}, errors.map((e) => h('li', {}, h('code', {}, e.field || ''), ': ', e.message || ''))) : null);
}
