// The event catalogue, and example payloads made up from JSON Schemas.

import { api } from './api.js';
import { h, heading, pre, section } from './dom.js';

const MAX_DEPTH = 6;

function stringFor(schema, name) {
  switch (schema.format) {
    case 'date-time': return '2024-05-07T19:18:32Z';
    case 'date': return '2024-05-07';
    case 'time': return '19:18:32Z';
    case 'uri': case 'url': case 'uri-reference': return 'https://example.com/resource';
    case 'email': return 'user@example.com';
    case 'uuid': return '3fa85f64-5717-4562-b3fc-2c963f66afa6';
    case 'ipv4': return '192.0.2.1';
    case 'hostname': return 'example.com';
    default: break;
  }
  const text = name ? `example ${name}` : 'example';
  if (typeof schema.minLength === 'number' && text.length < schema.minLength) return text.padEnd(schema.minLength, 'x');
  if (typeof schema.maxLength === 'number') return text.slice(0, schema.maxLength);
  return text;
}

function numberFor(schema, integer) {
  let value = typeof schema.minimum === 'number' ? schema.minimum
    : typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + 1 : 1;
  if (typeof schema.maximum === 'number' && value > schema.maximum) value = schema.maximum;
  return integer ? Math.ceil(value) : value;
}

/**
 * An example value for `schema`: its own `examples`, `const`, `default` or
 * first `enum` value when it has one, else one built from `type`,
 * `properties` (required ones, or all), `items`, the first branch of
 * `oneOf`/`anyOf`, and `allOf` merged; depth is bounded.
 */
export function example(schema, depth = 0, name = '') {
  if (!schema || typeof schema !== 'object' || depth > MAX_DEPTH) return null;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if ('const' in schema) return schema.const;
  if ('default' in schema) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  for (const key of ['oneOf', 'anyOf']) {
    if (Array.isArray(schema[key]) && schema[key].length) return example(schema[key][0], depth + 1, name);
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length) {
    const merged = { ...schema, allOf: undefined, properties: { ...(schema.properties || {}) }, required: [...(schema.required || [])] };
    for (const part of schema.allOf) {
      Object.assign(merged.properties, part.properties || {});
      merged.required.push(...(part.required || []));
      if (!merged.type && part.type) merged.type = part.type;
    }
    delete merged.allOf;
    return example(merged, depth + 1, name);
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t) => t !== 'null') || 'null';
  if (!type) type = schema.properties ? 'object' : schema.items ? 'array' : null;
  switch (type) {
    case 'object': {
      const out = {};
      const props = schema.properties || {};
      const required = Array.isArray(schema.required) ? schema.required : [];
      const keys = Object.keys(props);
      for (const key of keys.length && required.length ? keys.filter((k) => required.includes(k)).concat(keys.filter((k) => !required.includes(k))) : keys) {
        out[key] = example(props[key], depth + 1, key);
      }
      for (const key of required) if (!(key in out)) out[key] = 'example';
      return out;
    }
    case 'array': {
      const item = Array.isArray(schema.prefixItems) ? schema.prefixItems.map((s) => example(s, depth + 1, name)) : null;
      if (item) return item;
      const count = Math.max(1, typeof schema.minItems === 'number' ? schema.minItems : 1);
      return Array.from({ length: Math.min(count, 3) }, () => example(schema.items || {}, depth + 1, name));
    }
    case 'string': return stringFor(schema, name);
    case 'integer': return numberFor(schema, true);
    case 'number': return numberFor(schema, false);
    case 'boolean': return true;
    case 'null': return null;
    default: return {};
  }
}

/** Every event type, following `nextCursor` (bounded). */
export async function allEventTypes() {
  const types = [];
  let cursor = '';
  for (let page = 0; page < 20; page += 1) {
    const answer = await api('GET', `/v1/event-types?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    types.push(...(answer.data || []));
    cursor = answer.nextCursor;
    if (!cursor) break;
  }
  return types;
}

export async function catalogView() {
  const types = await allEventTypes();
  const toc = types.length
    ? h('nav', { class: 'toc', 'aria-label': 'Event types' }, h('ul', {}, types.map((t) => h('li', {}, h('a', { href: `#type-${t.name}`, 'data-anchor': `type-${t.name}` }, t.name)))))
    : h('p', { class: 'empty' }, 'No event types are published yet.');
  return [
    heading('Event catalogue'),
    h('p', { class: 'lead' }, 'The events your endpoints can subscribe to, with the schema of their data and an example.'),
    toc,
    types.map((t) => section(t.name,
      h('p', { class: 'description' }, t.description || 'No description.'),
      t.code !== null && t.code !== undefined ? h('p', {}, 'Code: ', h('code', {}, String(t.code))) : null,
      h('div', { class: 'two-col' },
        h('div', {}, h('h3', {}, 'Schema of data'), t.schema ? pre(t.schema, `Schema of ${t.name}`) : h('p', { class: 'muted' }, 'Any JSON.')),
        h('div', {}, h('h3', {}, 'Example data'), pre(t.schema ? example(t.schema) : {}, `Example of ${t.name}`))),
    )).map((card, i) => { card.id = `type-${types[i].name}`; return card; }),
  ];
}
