// One endpoint: its settings, health, traffic chart, signing secret, test
// sends, replay and recovery, and its subscriptions.

import { api, ApiError, enc, onSubmit, problemBox } from './api.js';
import { allEventTypes, example } from './catalog.js';
import { minutesChart } from './chart.js';
import { badge, field, fields, h, heading, input, isoToLocal, link, localToIso, pre, replace, section, select, textarea, time } from './dom.js';
import { action, canWrite, endpointForm, subscriptionForm } from './forms.js';

function authSummary(auth) {
  if (!auth || auth.type === 'none') return 'None';
  if (auth.type === 'basic') return `HTTP Basic as ${auth.username}`;
  if (auth.type === 'bearer') return 'Bearer token';
  return h('span', {}, 'OAuth 2.0 client credentials: ', fields([
    ['Token URL', auth.tokenUrl], ['Client id', auth.clientId], ['Scope', auth.scope],
    ['Audience', auth.audience], ['Client authentication', auth.clientAuth]]));
}

function settings(ep) {
  const headers = Object.entries(ep.headers || {});
  const metadata = Object.entries(ep.metadata || {});
  return fields([
    ['Id', h('code', {}, ep.id)],
    ['URL', h('span', { class: 'url' }, ep.url)],
    ['Description', ep.description || h('span', { class: 'muted' }, 'None')],
    ['Status', [badge(ep.status), ep.disabledReason ? ` (${ep.disabledReason})` : null]],
    ['Authentication', authSummary(ep.auth)],
    ['Format', ep.format],
    ['Template', ep.template ? pre(ep.template, 'Template') : null],
    ['Most events per request', ep.maxBatchSize ?? null],
    ['Handshake', ep.handshake ? 'Yes' : 'No'],
    ['Headers', headers.length ? h('ul', { class: 'plain' }, headers.map(([k, v]) => h('li', {}, h('code', {}, k), ': ', v))) : 'None'],
    ['Rate limit', ep.rateLimitPerSecond ? `${ep.rateLimitPerSecond} per second` : 'None'],
    ['Most in flight', ep.maxInFlight ?? 'Default'],
    ['Ordering', ep.ordering],
    ['Retries', ep.retry ? `${(ep.retry.schedule || []).join(', ') || 'default schedule'}${ep.retry.maxAttempts ? `, at most ${ep.retry.maxAttempts} attempts` : ''}` : 'Default policy'],
    ['Metadata', metadata.length ? h('ul', { class: 'plain' }, metadata.map(([k, v]) => h('li', {}, h('code', {}, k), ': ', v))) : null],
    ['Created', time(ep.createdAt)],
    ['Updated', time(ep.updatedAt)],
  ]);
}

async function healthPanel(id) {
  try {
    const health = await api('GET', `/v1/endpoints/${enc(id)}/health`);
    return fields([
      ['Circuit', badge(health.circuit, health.circuit === 'closed' ? 'ok' : 'bad')],
      ['Consecutive failures', String(health.consecutiveFailures)],
      ['In flight', String(health.inFlight)],
      ['Last success', time(health.lastSuccessAt)],
      ['Failing since', health.failingSince ? time(health.failingSince) : null],
      ['Token error', health.tokenError ? h('span', { class: 'error-text' }, health.tokenError) : null],
    ]);
  } catch (err) {
    if (err.status === 401) throw err;
    return problemBox(err);
  }
}

async function statsPanel(id) {
  try {
    const stats = await api('GET', `/v1/endpoints/${enc(id)}/stats`);
    const minutes = (stats && stats.minutes) || [];
    if (!minutes.length) return h('p', { class: 'empty' }, 'No data.');
    return [minutesChart(minutes),
      stats.truncated ? h('p', { class: 'muted' }, 'A busy hour: the oldest deliveries are not counted.') : null];
  } catch (err) {
    if (err instanceof ApiError && err.missing) return h('p', { class: 'empty' }, 'No data.');
    if (err.status === 401) throw err;
    return problemBox(err);
  }
}

function secretPanel(id) {
  if (!canWrite()) return h('p', { class: 'muted' }, 'The signing secret is not shown in read-only sessions.');
  const out = h('div', { class: 'secret', 'aria-live': 'polite' });
  const show = (secret) => replace(out, h('code', { class: 'secret-value' }, secret));
  const reveal = h('button', { type: 'button', class: 'secondary' }, 'Reveal signing secret');
  reveal.addEventListener('click', async () => {
    try { show((await api('GET', `/v1/endpoints/${enc(id)}/secret`)).secret); } catch (err) { replace(out, problemBox(err)); }
  });
  const rotate = action('Rotate secret', async () => {
    try { show((await api('POST', `/v1/endpoints/${enc(id)}/secret/rotate`)).secret); } catch (err) { replace(out, problemBox(err)); }
  }, { confirm: 'Rotate now' });
  return [h('p', { class: 'muted' }, 'Verify the signature of every webhook with this secret.'), h('div', { class: 'actions' }, reveal, rotate), out];
}

/** The test form; its data starts as the example of the chosen type's schema. */
function testPanel(id, types) {
  const own = types.filter((t) => !t.name.startsWith('herald.'));
  const ordered = [...own, ...types.filter((t) => !own.includes(t))];
  const type = select('eventType', ordered.length ? ordered.map((t) => [t.name, t.name]) : [['test', 'test']]);
  const data = textarea('data', '{}', { rows: '6' });
  const fillExample = () => {
    const chosen = types.find((t) => t.name === type.value);
    data.value = JSON.stringify(chosen && chosen.schema ? example(chosen.schema) : {}, null, 2);
  };
  type.addEventListener('change', fillExample);
  fillExample();
  const out = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', 'data-mutates': '' }, 'Send test event');
  const form = h('form', { class: 'stack', novalidate: true, 'data-mutates': '' },
    h('div', { class: 'grid' }, field('Event type', type), field('Data (JSON)', data)),
    h('div', { class: 'problems' }), h('div', { class: 'actions' }, submit), out);
  onSubmit(form, submit, async () => {
    let parsed;
    try { parsed = JSON.parse(data.value || '{}'); } catch (e) {
      throw new ApiError(400, { title: 'Invalid JSON', detail: e.message, errors: [{ field: 'data', message: 'is not valid JSON' }] });
    }
    const outcome = await api('POST', `/v1/endpoints/${enc(id)}/test`, { eventType: type.value, data: parsed });
    replace(out, h('div', { class: 'test-outcome' }, h('h3', {}, 'Attempt'), fields([
      ['Result', badge(outcome.delivered ? 'delivered' : 'failed')],
      ['Status code', outcome.statusCode ?? 'No answer'],
      ['Latency', `${outcome.latencyMs} ms`],
      ['Error', outcome.error || null]])));
  });
  return form;
}

/** Replay (`since`/`until`) or recover (`since`) form. */
function resendForm(id, kind) {
  const hourAgo = isoToLocal(new Date(Date.now() - 3600e3).toISOString());
  const since = input('since', hourAgo, { type: 'datetime-local', required: true });
  const until = kind === 'replay' ? input('until', '', { type: 'datetime-local' }) : null;
  const out = h('p', { 'aria-live': 'polite' });
  const label = kind === 'replay' ? 'Replay events' : 'Recover failed deliveries';
  const submit = h('button', { type: 'submit', 'data-mutates': '' }, label);
  const form = h('form', { class: 'stack', novalidate: true, 'data-mutates': '' },
    h('div', { class: 'grid' }, field('Since', since), until ? field('Until (optional)', until) : null),
    h('div', { class: 'problems' }), h('div', { class: 'actions' }, submit), out);
  onSubmit(form, submit, async () => {
    const body = { since: localToIso(since.value) };
    if (until && until.value) body.until = localToIso(until.value);
    const answer = await api('POST', `/v1/endpoints/${enc(id)}/${kind}`, body);
    const n = kind === 'replay' ? answer.count : answer.recovered;
    replace(out, kind === 'replay' ? `${n} ${n === 1 ? 'event' : 'events'} queued for replay.`
      : `${n} ${n === 1 ? 'delivery' : 'deliveries'} queued again.`);
  }, (err) => {
    if (!(err instanceof ApiError && err.missing && kind === 'replay')) return false;
    replace(out, 'Replay is not available on this server yet.');
    return true;
  });
  return form;
}

async function subscriptionsPanel(endpointId, types) {
  const box = h('div', {});
  const load = async () => {
    const answer = await api('GET', `/v1/subscriptions?endpointId=${enc(endpointId)}&limit=200`);
    const subs = answer.data || [];
    const rows = subs.map((sub) => {
      const edit = action('Edit', () => {
        const row = box.querySelector(`[data-subscription="${CSS.escape(sub.id)}"]`);
        replace(row, subscriptionForm(endpointId, sub, types, () => load(), () => load()));
        row.querySelector('input').focus();
      });
      const remove = action('Delete', async () => {
        try { await api('DELETE', `/v1/subscriptions/${enc(sub.id)}`); await load(); } catch (err) { box.prepend(problemBox(err)); }
      }, { danger: true, confirm: 'Delete subscription' });
      return h('li', { class: 'subscription', 'data-subscription': sub.id },
        h('div', { class: 'sub-types' }, sub.eventTypes.map((t) => h('code', { class: 'tag' }, t))),
        sub.filter ? pre(sub.filter, 'Filter') : h('p', { class: 'muted' }, 'No filter.'),
        h('div', { class: 'actions' }, edit, remove));
    });
    replace(box,
      subs.length ? h('ul', { class: 'subscriptions' }, rows) : h('p', { class: 'empty' }, 'No subscriptions: this endpoint receives nothing.'),
      canWrite() ? h('details', {}, h('summary', {}, 'Add a subscription'), subscriptionForm(endpointId, null, types, () => load())) : null);
  };
  await load();
  return box;
}

export async function endpointView(id, rerender) {
  const [ep, types] = await Promise.all([api('GET', `/v1/endpoints/${enc(id)}`), allEventTypes().catch(() => [])]);
  const names = types.map((t) => t.name);
  const [health, stats, subs] = await Promise.all([healthPanel(id), statsPanel(id), subscriptionsPanel(id, names)]);
  const toggle = ep.status === 'active'
    ? action('Deactivate', async () => { await api('POST', `/v1/endpoints/${enc(id)}/deactivate`); rerender(); })
    : action('Activate', async () => { await api('POST', `/v1/endpoints/${enc(id)}/activate`); rerender(); });
  const remove = action('Delete endpoint', async () => {
    await api('DELETE', `/v1/endpoints/${enc(id)}`);
    location.hash = '#/endpoints';
  }, { danger: true, confirm: 'Delete for good' });
  const edit = canWrite() ? link(`#/endpoints/${enc(id)}/edit`, 'Edit', { class: 'button secondary', 'data-mutates': '' }) : null;
  return [
    heading(ep.description || ep.url, h('div', { class: 'actions' }, edit, toggle, remove)),
    h('p', {}, link(`#/deliveries?endpointId=${enc(id)}`, 'Deliveries to this endpoint')),
    h('div', { class: 'two-col' },
      section('Settings', settings(ep)),
      h('div', {}, section('Health', health), section('Last hour', stats), section('Signing secret', secretPanel(id)))),
    section('Subscriptions', subs),
    canWrite() ? h('div', { class: 'two-col' },
      section('Send a test event', testPanel(id, types)),
      h('div', {},
        section('Replay', h('p', { class: 'muted' }, 'Send the events of a time range again.'), resendForm(id, 'replay')),
        section('Recover', h('p', { class: 'muted' }, 'Retry the deliveries that failed since a time.'), resendForm(id, 'recover')))) : null,
  ];
}

export async function endpointEditView(id) {
  const ep = await api('GET', `/v1/endpoints/${enc(id)}`);
  if (!canWrite()) return [heading('Edit endpoint'), h('p', {}, 'This session is read-only.')];
  return [
    heading('Edit endpoint', link(`#/endpoints/${enc(id)}`, 'Back to the endpoint')),
    section('Settings', endpointForm(ep, [], (saved) => { location.hash = `#/endpoints/${enc(saved.id)}`; })),
  ];
}

export async function endpointCreateView() {
  if (!canWrite()) return [heading('New endpoint'), h('p', {}, 'This session is read-only.')];
  const types = await allEventTypes().catch(() => []);
  return [
    heading('New endpoint'),
    section('Settings', endpointForm(null, types.map((t) => t.name), (saved) => { location.hash = `#/endpoints/${enc(saved.id)}`; })),
  ];
}
