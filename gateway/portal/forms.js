// Forms that change things: the endpoint form (create and edit), the
// subscription form, and the buttons of actions. None of them is built in a
// read-only session.

import { api, ApiError, onSubmit, problemBox, session } from './api.js';
import { field, h, input, select, textarea, uid } from './dom.js';

export const FORMATS = ['json', 'cloudevents', 'cloudevents-binary', 'envelope', 'template'];
const AUTH_TYPES = [['none', 'None'], ['basic', 'HTTP Basic'], ['bearer', 'Bearer token'],
  ['oauth2_client_credentials', 'OAuth 2.0 client credentials']];

/** True when this session may change things. */
export function canWrite() {
  return !session.readOnly;
}

/**
 * A button that changes something, or null in a read-only session. With
 * `confirm`, a first press asks inline and a second, explicit one acts.
 */
export function action(label, handler, opts = {}) {
  if (!canWrite()) return null;
  const button = h('button', { type: 'button', class: opts.danger ? 'danger' : 'secondary', 'data-mutates': '' }, label);
  const wrap = h('span', { class: 'confirm' }, button);
  const run = async () => {
    button.disabled = true;
    for (const old of wrap.querySelectorAll('.problem')) old.remove();
    try {
      await handler(button);
    } catch (err) {
      const box = problemBox(err);
      wrap.append(box);
      box.focus();
    } finally {
      button.disabled = false;
    }
  };
  if (!opts.confirm) {
    button.addEventListener('click', run);
    return wrap;
  }
  button.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'danger', 'data-mutates': '' }, opts.confirm);
    const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const ask = h('span', { class: 'confirm-ask', role: 'group', 'aria-label': 'Confirm' }, 'Are you sure? ', yes, ' ', no);
    yes.addEventListener('click', async () => { ask.remove(); button.hidden = false; await run(); });
    no.addEventListener('click', () => { ask.remove(); button.hidden = false; button.focus(); });
    button.hidden = true;
    wrap.append(ask);
    no.focus();
  });
  return wrap;
}

/** Editable name/value rows (headers, metadata). */
function pairRows(name, legend, values) {
  const rows = h('div', { class: 'pairs' });
  const addRow = (key, value) => {
    const k = input(`${name}.name`, key, { 'aria-label': `${legend} name`, autocomplete: 'off' });
    const v = input(`${name}.value`, value, { 'aria-label': `${legend} value`, autocomplete: 'off' });
    const remove = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Remove ${legend} row` }, 'Remove');
    const row = h('div', { class: 'pair' }, k, v, remove);
    remove.addEventListener('click', () => row.remove());
    rows.append(row);
    return k;
  };
  for (const [key, value] of Object.entries(values || {})) addRow(key, value);
  const add = h('button', { type: 'button', class: 'secondary small' }, `Add ${legend.toLowerCase()}`);
  add.addEventListener('click', () => addRow('', '').focus());
  const fieldset = h('fieldset', { class: 'field', 'data-pairs': name }, h('legend', {}, legend), rows, add);
  fieldset.read = () => {
    const out = {};
    for (const row of rows.querySelectorAll('.pair')) {
      const [k, v] = row.querySelectorAll('input');
      if (k.value.trim()) out[k.value.trim()] = v.value;
    }
    return out;
  };
  return fieldset;
}

function number(value) {
  const text = String(value).trim();
  return text === '' ? null : Number(text);
}

function parseJson(form, name, text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, { title: 'Invalid JSON', detail: `${name} is not valid JSON: ${err.message}`,
      errors: [{ field: name, message: 'is not valid JSON' }] });
  }
}

/**
 * The endpoint form. `endpoint` is null to create; `eventTypes` (names) feed
 * the subscription checkboxes of a new endpoint. `done(endpoint)` runs after success.
 */
export function endpointForm(endpoint, eventTypes, done) {
  const ep = endpoint || {};
  const auth = ep.auth || { type: 'none' };
  const retry = ep.retry || {};
  const form = h('form', { class: 'stack', novalidate: true, 'data-mutates': '' });
  const c = {
    url: input('url', ep.url, { type: 'url', required: true, autocomplete: 'url', placeholder: 'https://example.com/webhooks' }),
    description: textarea('description', ep.description, { rows: '2' }),
    authType: select('auth.type', AUTH_TYPES, auth.type),
    username: input('auth.username', auth.username, { autocomplete: 'off' }),
    password: input('auth.password', '', { type: 'password', autocomplete: 'new-password' }),
    token: input('auth.token', '', { type: 'password', autocomplete: 'off' }),
    tokenUrl: input('auth.tokenUrl', auth.tokenUrl, { type: 'url' }),
    clientId: input('auth.clientId', auth.clientId, { autocomplete: 'off' }),
    clientSecret: input('auth.clientSecret', '', { type: 'password', autocomplete: 'off' }),
    scope: input('auth.scope', auth.scope),
    audience: input('auth.audience', auth.audience),
    clientAuth: select('auth.clientAuth', [['basic', 'client_secret_basic'], ['post', 'client_secret_post']], auth.clientAuth || 'basic'),
    format: select('format', FORMATS.map((f) => [f, f]), ep.format || 'json'),
    template: textarea('template', ep.template ? JSON.stringify(ep.template, null, 2) : '', { rows: '5' }),
    maxBatchSize: input('maxBatchSize', ep.maxBatchSize, { type: 'number', min: '1', inputmode: 'numeric' }),
    handshake: h('input', { type: 'checkbox', name: 'handshake', id: uid('hs'), checked: !!ep.handshake }),
    rate: input('rateLimitPerSecond', ep.rateLimitPerSecond, { type: 'number', min: '1', inputmode: 'numeric' }),
    inFlight: input('maxInFlight', ep.maxInFlight, { type: 'number', min: '1', inputmode: 'numeric' }),
    ordering: select('ordering', [['none', 'none (parallel)'], ['fifo', 'fifo (one at a time, in order)']], ep.ordering || 'none'),
    schedule: input('retry.schedule', (retry.schedule || []).join(', '), { placeholder: '5s, 1m, 10m' }),
    maxAttempts: input('retry.maxAttempts', retry.maxAttempts, { type: 'number', min: '1', max: '100', inputmode: 'numeric' }),
  };
  const secretHint = endpoint ? 'Leave blank to keep the stored one.' : null;
  const authParts = {
    basic: h('div', { class: 'grid' }, field('Username', c.username), field('Password', c.password, secretHint)),
    bearer: h('div', { class: 'grid' }, field('Token', c.token, secretHint)),
    oauth2_client_credentials: h('div', { class: 'grid' }, field('Token URL', c.tokenUrl), field('Client id', c.clientId),
      field('Client secret', c.clientSecret, secretHint), field('Scope (optional)', c.scope),
      field('Audience (optional)', c.audience), field('Client authentication', c.clientAuth)),
  };
  const syncAuth = () => {
    for (const [type, part] of Object.entries(authParts)) part.hidden = c.authType.value !== type;
  };
  c.authType.addEventListener('change', syncAuth);
  syncAuth();
  const templateField = field('Template (JSON)', c.template, 'String leaves "$.id", "$.type", "$.time", "$.data", "$.data.path" are replaced.');
  const batchField = field('Most events per request', c.maxBatchSize);
  const syncFormat = () => {
    templateField.hidden = c.format.value !== 'template';
    batchField.hidden = c.format.value !== 'envelope';
  };
  c.format.addEventListener('change', syncFormat);
  syncFormat();
  const headers = pairRows('headers', 'Header', ep.headers);
  const metadata = pairRows('metadata', 'Metadata', ep.metadata);
  let types = null;
  if (!endpoint) {
    const boxes = ['*', ...eventTypes].map((name) => {
      const id = uid('type');
      return h('div', { class: 'check' },
        h('input', { type: 'checkbox', id, name: 'eventTypes', value: name }),
        h('label', { for: id }, name === '*' ? 'All event types (*)' : name));
    });
    types = h('fieldset', { class: 'field' }, h('legend', {}, 'Subscribe to event types'),
      h('div', { class: 'checks' }, boxes), h('small', { class: 'hint' }, 'Optional; subscriptions can be added later.'));
  }
  const submit = h('button', { type: 'submit', 'data-mutates': '' }, endpoint ? 'Save changes' : 'Create endpoint');
  form.append(
    h('fieldset', {}, h('legend', {}, 'Destination'), field('URL', c.url), field('Description', c.description)),
    types,
    h('fieldset', {}, h('legend', {}, 'Authentication'), field('Type', c.authType),
      authParts.basic, authParts.bearer, authParts.oauth2_client_credentials),
    h('fieldset', {}, h('legend', {}, 'Payload'), field('Format', c.format), templateField, batchField,
      h('div', { class: 'check' }, c.handshake, h('label', { for: c.handshake.id }, 'CloudEvents handshake before the first delivery'))),
    headers,
    h('fieldset', {}, h('legend', {}, 'Throughput and retries'),
      h('div', { class: 'grid' }, field('Rate limit (per second)', c.rate), field('Most in flight', c.inFlight),
        field('Ordering', c.ordering), field('Retry schedule', c.schedule, 'Waits between attempts, comma-separated.'),
        field('Most attempts', c.maxAttempts))),
    metadata,
    h('div', { class: 'problems', 'aria-live': 'polite' }),
    h('div', { class: 'actions' }, submit));

  const readAuth = () => {
    const type = c.authType.value;
    const secrets = { basic: [c.password], bearer: [c.token], oauth2_client_credentials: [c.clientSecret] }[type] || [];
    const plain = {
      basic: { username: c.username.value },
      oauth2_client_credentials: { tokenUrl: c.tokenUrl.value, clientId: c.clientId.value,
        scope: c.scope.value || undefined, audience: c.audience.value || undefined, clientAuth: c.clientAuth.value },
    }[type] || {};
    if (endpoint && type === auth.type && secrets.every((s) => !s.value)
      && Object.entries(plain).every(([k, v]) => (v || '') === (auth[k] || (k === 'clientAuth' ? 'basic' : '')))) {
      return undefined; // unchanged: keep the stored secrets
    }
    if (type === 'none') return { type };
    if (type === 'basic') return { type, username: c.username.value, password: c.password.value };
    if (type === 'bearer') return { type, token: c.token.value };
    return { type, ...plain, clientSecret: c.clientSecret.value };
  };

  onSubmit(form, submit, async () => {
    const schedule = c.schedule.value.split(',').map((s) => s.trim()).filter(Boolean);
    const attempts = number(c.maxAttempts.value);
    const body = {
      url: c.url.value.trim(),
      description: c.description.value,
      auth: readAuth(),
      format: c.format.value,
      template: c.format.value === 'template' ? parseJson(form, 'template', c.template.value) : null,
      headers: headers.read(),
      metadata: metadata.read(),
      rateLimitPerSecond: number(c.rate.value),
      maxInFlight: number(c.inFlight.value),
      ordering: c.ordering.value,
      maxBatchSize: c.format.value === 'envelope' ? number(c.maxBatchSize.value) : null,
      handshake: c.handshake.checked,
      retry: schedule.length || attempts !== null ? { schedule, ...(attempts !== null ? { maxAttempts: attempts } : {}) } : null,
    };
    let saved;
    if (endpoint) {
      saved = await api('PATCH', `/v1/endpoints/${encodeURIComponent(endpoint.id)}`, body);
    } else {
      for (const key of Object.keys(body)) if (body[key] === null || body[key] === undefined) delete body[key];
      saved = await api('POST', '/v1/endpoints', body);
      const chosen = [...form.querySelectorAll('input[name="eventTypes"]:checked')].map((b) => b.value);
      if (chosen.length) {
        await api('POST', '/v1/subscriptions', { endpointId: saved.id, eventTypes: chosen.includes('*') ? ['*'] : chosen });
      }
    }
    done(saved);
  });
  return form;
}

/** The subscription form: create (`subscription` null) or edit. */
export function subscriptionForm(endpointId, subscription, eventTypes, done, cancel) {
  const sub = subscription || {};
  const listId = uid('types');
  const types = input('eventTypes', (sub.eventTypes || []).join(', '),
    { required: true, list: listId, placeholder: 'order.created, order.paid or *', autocomplete: 'off' });
  const filter = textarea('filter', sub.filter ? JSON.stringify(sub.filter, null, 2) : '',
    { rows: '3', placeholder: '{"data.amount": {"$gte": 100}}' });
  const submit = h('button', { type: 'submit', 'data-mutates': '' }, subscription ? 'Save subscription' : 'Add subscription');
  const form = h('form', { class: 'stack subscription-form', novalidate: true, 'data-mutates': '' },
    field('Event types', types, `Comma-separated; * for all. Known: ${eventTypes.join(', ') || 'none'}`),
    h('datalist', { id: listId }, ['*', ...eventTypes].map((t) => h('option', { value: t }))),
    field('Filter (JSON, optional)', filter),
    h('div', { class: 'problems', 'aria-live': 'polite' }),
    h('div', { class: 'actions' }, submit, cancel ? h('button', { type: 'button', class: 'secondary', on: { click: cancel } }, 'Cancel') : null));
  onSubmit(form, submit, async () => {
    const eventTypesValue = types.value.split(',').map((s) => s.trim()).filter(Boolean);
    const filterValue = parseJson(form, 'filter', filter.value);
    const saved = subscription
      ? await api('PATCH', `/v1/subscriptions/${encodeURIComponent(subscription.id)}`, { eventTypes: eventTypesValue, filter: filterValue })
      : await api('POST', '/v1/subscriptions', { endpointId, eventTypes: eventTypesValue, ...(filterValue ? { filter: filterValue } : {}) });
    done(saved);
  });
  return form;
}
