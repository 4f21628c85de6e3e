// The overview, endpoint list, events and deliveries views.

import { api, ApiError, enc, query } from './api.js';
import { badge, field, fields, h, heading, input, isoToLocal, link, localToIso, pre, replace, section, select, table, time } from './dom.js';
import { action, canWrite } from './forms.js';

const STATUSES = ['pending', 'delivered', 'retrying', 'failed'];

function endpointName(ep) {
  return ep.description || ep.url;
}

async function endpointsById() {
  const answer = await api('GET', '/v1/endpoints?limit=200');
  return answer.data || [];
}

function endpointLink(id, byId) {
  const ep = byId.get(id);
  return link(`#/endpoints/${enc(id)}`, ep ? endpointName(ep) : id);
}

function deliveryRows(deliveries, byId) {
  return deliveries.map((d) => [
    link(`#/deliveries/${enc(d.id)}`, d.eventId, { class: 'mono', 'aria-label': `Delivery of event ${d.eventId}` }),
    d.eventType,
    endpointLink(d.endpointId, byId),
    badge(d.status),
    String(d.attemptCount),
    time(d.createdAt),
  ]);
}

const DELIVERY_HEADERS = ['Event', 'Type', 'Endpoint', 'Status', 'Attempts', 'Time'];

async function healthBadge(id) {
  try {
    const health = await api('GET', `/v1/endpoints/${enc(id)}/health`);
    const failing = health.consecutiveFailures > 0 ? `, ${health.consecutiveFailures} failures in a row` : '';
    return h('span', {}, badge(health.circuit, health.circuit === 'closed' ? 'ok' : 'bad'), failing);
  } catch (err) {
    if (err.status === 401) throw err;
    return h('span', { class: 'muted' }, 'unknown');
  }
}

function endpointTable(endpoints, healths) {
  return table('Endpoints', ['Endpoint', 'URL', 'Status', 'Health'], endpoints.map((ep, i) => [
    link(`#/endpoints/${enc(ep.id)}`, endpointName(ep)),
    h('span', { class: 'url' }, ep.url),
    badge(ep.status),
    healths[i],
  ]), 'No endpoints yet.');
}

export async function landingView() {
  const [endpoints, deliveries] = await Promise.all([endpointsById(), api('GET', '/v1/deliveries?limit=20')]);
  const healths = await Promise.all(endpoints.slice(0, 50).map((ep) => healthBadge(ep.id)));
  const byId = new Map(endpoints.map((ep) => [ep.id, ep]));
  const create = canWrite() ? link('#/endpoints/new', 'New endpoint', { class: 'button', 'data-mutates': '' }) : null;
  return [
    heading('Overview', h('div', { class: 'actions' }, create)),
    section('Endpoints', endpointTable(endpoints, healths)),
    section('Recent deliveries', table('Recent deliveries', DELIVERY_HEADERS, deliveryRows(deliveries.data || [], byId), 'No deliveries yet.'),
      h('p', {}, link('#/deliveries', 'All deliveries'))),
  ];
}

export async function endpointsView() {
  const endpoints = await endpointsById();
  const healths = await Promise.all(endpoints.slice(0, 50).map((ep) => healthBadge(ep.id)));
  const create = canWrite() ? link('#/endpoints/new', 'New endpoint', { class: 'button', 'data-mutates': '' }) : null;
  return [heading('Endpoints', h('div', { class: 'actions' }, create)), section('All endpoints', endpointTable(endpoints, healths))];
}

/** A search form whose submit puts its values into the hash. */
function filterForm(path, params, controls) {
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filters' },
    controls, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply'), link(path, 'Clear', { class: 'button secondary' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      values[el.name] = el.type === 'datetime-local' ? localToIso(el.value) : el.value.trim();
    }
    location.hash = `${path}${query(values)}`;
  });
  return form;
}

function pager(path, params, nextCursor) {
  const first = params.cursor ? link(`${path}${query({ ...params, cursor: '' })}`, 'First page', { class: 'button secondary' }) : null;
  const next = nextCursor ? link(`${path}${query({ ...params, cursor: nextCursor })}`, 'Next page', { class: 'button secondary' }) : null;
  return first || next ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, first, next) : null;
}

function timeFilters(params) {
  return [field('After', input('after', isoToLocal(params.after), { type: 'datetime-local' })),
    field('Before', input('before', isoToLocal(params.before), { type: 'datetime-local' }))];
}

export async function deliveriesView(params) {
  const endpoints = await endpointsById();
  const byId = new Map(endpoints.map((ep) => [ep.id, ep]));
  const filters = filterForm('#/deliveries', params, h('div', { class: 'grid' },
    field('Endpoint', select('endpointId', [['', 'Any'], ...endpoints.map((ep) => [ep.id, endpointName(ep)])], params.endpointId || '')),
    field('Event type', input('eventType', params.eventType)),
    field('Status', select('status', [['', 'Any'], ...STATUSES.map((s) => [s, s])], params.status || '')),
    field('Event id', input('eventId', params.eventId)),
    timeFilters(params)));
  const answer = await api('GET', `/v1/deliveries${query({ limit: 50, ...params })}`);
  return [
    heading('Deliveries', h('button', { type: 'button', class: 'secondary', 'data-refresh': '' }, 'Refresh')),
    filters,
    section('Newest first', table('Deliveries', DELIVERY_HEADERS, deliveryRows(answer.data || [], byId), 'No deliveries match.'),
      pager('#/deliveries', params, answer.nextCursor)),
  ];
}

function attemptView(attempt) {
  const request = attempt.request;
  // Headers come as a list of {name, value} in the order sent (a map is read too).
  const raw = request ? request.headers || [] : [];
  const headers = Array.isArray(raw) ? raw.map((header) => [header.name, header.value]) : Object.entries(raw);
  return h('article', { class: 'attempt card', 'data-attempt': String(attempt.n) },
    h('h3', {}, `Attempt ${attempt.n}`, ' ', attempt.statusCode ? badge(String(attempt.statusCode), attempt.statusCode < 300 ? 'ok' : 'bad') : badge('no answer', 'bad')),
    fields([['Time', time(attempt.at)], ['Latency', `${attempt.latencyMs} ms`], ['Error', attempt.error || null]]),
    h('div', { class: 'two-col' },
      h('section', { class: 'request', 'aria-label': `Request of attempt ${attempt.n}` }, h('h4', {}, 'Request'),
        request
          ? [fields([['URL', h('span', { class: 'url' }, request.url)], ['Body', `${request.bodyBytes} bytes`]]),
            headers.length
              ? h('ul', { class: 'plain headers', 'aria-label': 'Request headers' }, headers.map(([k, v]) => h('li', {}, h('code', {}, k), ': ', v)))
              : h('p', { class: 'muted' }, 'No headers recorded.')]
          : h('p', { class: 'muted' }, 'Request details were not recorded.')),
      h('section', { class: 'response', 'aria-label': `Response of attempt ${attempt.n}` }, h('h4', {}, 'Response'),
        fields([['Status', attempt.statusCode ? String(attempt.statusCode) : 'No answer']]),
        attempt.responseBody ? h('pre', { class: 'body', tabindex: '0', 'aria-label': 'Response body' }, attempt.responseBody)
          : h('p', { class: 'muted' }, 'Empty body.'))));
}

export async function deliveryView(id, rerender) {
  const [d, endpoints] = await Promise.all([api('GET', `/v1/deliveries/${enc(id)}`), endpointsById()]);
  const byId = new Map(endpoints.map((ep) => [ep.id, ep]));
  const note = h('p', { class: 'note', 'aria-live': 'polite' });
  const retry = action('Retry now', async () => {
    await api('POST', `/v1/deliveries/${enc(id)}/retry`);
    replace(note, 'Retry queued.');
    for (const wait of [400, 1200, 3000]) setTimeout(() => rerender({ keepFocus: true }), wait);
  });
  const attempts = d.attempts || [];
  return [
    heading(`Delivery of ${d.eventType}`, h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', 'data-refresh': '' }, 'Refresh'), retry)),
    note,
    section('Delivery', fields([
      ['Id', h('code', {}, d.id)],
      ['Event', link(`#/events/${enc(d.eventId)}`, d.eventId)],
      ['Event type', d.eventType],
      ['Endpoint', endpointLink(d.endpointId, byId)],
      ['Status', badge(d.status)],
      ['Attempts', h('span', { 'data-attempt-count': '' }, String(d.attemptCount))],
      ['Created', time(d.createdAt)],
      ['Updated', time(d.updatedAt)],
      ['Next attempt', d.nextAttemptAt ? time(d.nextAttemptAt) : null],
    ])),
    h('h2', {}, 'Attempts'),
    attempts.length ? attempts.slice().reverse().map(attemptView) : h('p', { class: 'empty' }, 'No attempt yet.'),
  ];
}

function notYet(title) {
  return [heading(title), h('p', { class: 'empty' }, 'The event log is not available on this server yet.')];
}

export async function eventsView(params) {
  let answer;
  try {
    answer = await api('GET', `/v1/events${query({ limit: 50, ...params })}`);
  } catch (err) {
    if (err instanceof ApiError && err.unrouted) return notYet('Events');
    throw err;
  }
  const filters = filterForm('#/events', params, h('div', { class: 'grid' }, field('Event type', input('type', params.type)), timeFilters(params)));
  const rows = (answer.data || []).map((e) => [
    link(`#/events/${enc(e.id)}`, e.id, { class: 'mono' }), e.type, time(e.time), String(e.deliveries ?? 0),
    h('span', { class: 'preview' }, JSON.stringify(e.data)),
  ]);
  return [heading('Events'), filters,
    section('Newest first', table('Events', ['Event', 'Type', 'Time', 'Deliveries', 'Data'], rows, 'No events match.'),
      pager('#/events', params, answer.nextCursor))];
}

export async function eventView(id) {
  let e;
  try {
    e = await api('GET', `/v1/events/${enc(id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.unrouted) return notYet('Event');
    throw err;
  }
  const endpoints = await endpointsById();
  const byId = new Map(endpoints.map((ep) => [ep.id, ep]));
  return [
    heading(`Event ${e.type}`),
    section('Event', fields([['Id', h('code', {}, e.id)], ['Type', e.type], ['Time', time(e.time)],
      ['Published', e.publishedAt ? time(e.publishedAt) : null],
      ['Resource', e.resource !== undefined && e.resource !== null ? pre(e.resource, 'Resource') : null],
      ['Deliveries', String(e.deliveries ?? (e.deliveryRecords || []).length)]])),
    section('Data', pre(e.data, 'Event data')),
    section('Deliveries', table('Deliveries of this event', DELIVERY_HEADERS, deliveryRows(e.deliveryRecords || [], byId), 'No deliveries.')),
  ];
}

