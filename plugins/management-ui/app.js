// Warren management web UI. Plain JavaScript, no build step, no external resources.
//
// It talks only to RabbitMQ's management HTTP API, same origin (`api/...` relative to the page),
// with HTTP Basic credentials from the login form kept in sessionStorage. Pages are chosen by the
// URL hash (#/queues, #/queue/<vhost>/<name>, ...); the current page's live parts are refreshed
// every POLL_MS, as RabbitMQ's UI does. Charts are drawn on <canvas> by drawChart below from
// samples this page collects (message_stats.*_details.rate and queue_totals of GET /api/overview).
'use strict';

const POLL_MS = 5000;
const HISTORY = 60; // chart samples kept: 5 minutes at one sample per poll
const AUTH_KEY = 'warren-mgmt-auth';
const VHOST_KEY = 'warren-mgmt-vhost';

const state = {
  auth: sessionStorage.getItem(AUTH_KEY), // base64("user:password")
  user: null, // GET /api/whoami
  vhosts: [],
  timer: null,
  page: 0, // incremented on each navigation; stale refreshes of an old page are dropped
  history: [], // overview samples: {t, rates: {...}, queued: {...}}
  exchangeTypes: ['direct', 'fanout', 'headers', 'topic'], // replaced by the overview's list
  keepFlash: false, // set by go(): the next page keeps the message of the action that moved there
};

// Navigate after an action, keeping that action's message on screen.
function go(hash) {
  state.keepFlash = true;
  location.hash = hash;
}

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, body) {
    const reason = body && typeof body === 'object' ? (body.reason || body.error) : body;
    super(reason ? String(reason) : `HTTP ${status}`);
    this.status = status;
  }
}

// One request to the management API; resolves to the parsed JSON body (or null when empty).
async function api(method, path, body, extraHeaders) {
  const headers = Object.assign({ Authorization: 'Basic ' + state.auth }, extraHeaders || {});
  // credentials: 'omit' sends our Authorization header but no cookies, and keeps the browser from
  // answering a 401's `WWW-Authenticate: Basic` with its own password dialog (Fetch standard:
  // the prompt is only for requests that include credentials); the login form reports it instead.
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch('api' + path, init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = text; }
  }
  if (resp.status === 401 && path !== '/whoami') {
    logout('Login failed');
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

const enc = encodeURIComponent;
const vpath = (vhost, name) => '/' + enc(vhost) + '/' + enc(name);

// ---------------------------------------------------------------- DOM helpers

// h('tag.class', {attr: value, onclick: fn}, child, ...): children are nodes, strings or arrays.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function flash(kind, text) {
  replace(document.getElementById('flash'), text ? h('div.' + kind, {}, text) : null);
}

const num = (n) => (n === undefined || n === null ? '' : Number(n).toLocaleString('en-US'));
const rate = (details) => (details && typeof details.rate === 'number' ? details.rate.toFixed(2) + '/s' : '');
const stat = (obj, key) => rate(obj && obj.message_stats && obj.message_stats[key + '_details']);
const yesNo = (b) => (b ? 'yes' : 'no');
const exName = (name) => (name === '' ? '(AMQP default)' : name);
const exUrlName = (name) => (name === '' ? 'amq.default' : name);

function tags(list) {
  return list.filter(Boolean).map((t) => h('span.tag', { title: t[1] || '' }, t[0]));
}

// A table: columns are [title, row => cell, 'num'?]; an empty list prints `empty`.
function table(columns, rows, empty) {
  const head = h('tr', {}, columns.map((c) => h('th', {}, c[0])));
  const body = rows.length
    ? rows.map((r) => h('tr', {}, columns.map((c) => h(c[2] === 'num' ? 'td.num' : 'td', {}, c[1](r)))))
    : h('tr', {}, h('td.empty', { colspan: columns.length }, empty || 'Nothing to show'));
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
}

function kvTable(pairs) {
  return h('table.kv', {}, pairs.filter((p) => p).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))));
}

// A form in a grid. Fields: {name, label, type: text|password|select|textarea|checkbox|file,
// options: [[value, label]], value, hint}. onSubmit(values, form) may return a message to flash.
function form(id, fields, submitLabel, onSubmit) {
  const f = h('form.grid', { id });
  for (const fd of fields) {
    const fid = id + '-' + fd.name;
    let input;
    if (fd.type === 'select') {
      input = h('select', { id: fid, name: fd.name },
        fd.options.map(([v, l]) => h('option', { value: v, selected: v === fd.value }, l)));
    } else if (fd.type === 'textarea') {
      input = h('textarea', { id: fid, name: fd.name, placeholder: fd.placeholder }, fd.value || '');
    } else if (fd.type === 'checkbox') {
      input = h('input', { id: fid, name: fd.name, type: 'checkbox', checked: !!fd.value });
    } else {
      input = h('input', { id: fid, name: fd.name, type: fd.type || 'text', value: fd.value,
        placeholder: fd.placeholder, required: fd.required, accept: fd.accept });
    }
    append(f, [h('label', { for: fid }, fd.label), input, fd.hint ? h('span.hint', {}, fd.hint) : null]);
  }
  append(f, [h('span'), h('span.actions', {}, h('button', { type: 'submit' }, submitLabel))]);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const fd of fields) {
      const el = f.elements[fd.name];
      values[fd.name] = fd.type === 'checkbox' ? el.checked : fd.type === 'file' ? el.files[0] : el.value;
    }
    try {
      const msg = await onSubmit(values, f);
      if (msg) flash('ok', msg);
      refreshNow();
    } catch (e) {
      flash('error', e.message);
    }
  });
  return f;
}

const section = (title, ...body) => h('details', {}, h('summary', {}, title), body);

// A button that runs an API call after an optional confirm() and reports the result.
function actionButton(label, question, run, cls) {
  return h('button' + (cls ? '.' + cls : ''), { type: 'button', onclick: async () => {
    if (question && !window.confirm(question)) return;
    try {
      const msg = await run();
      if (msg) flash('ok', msg);
      refreshNow();
    } catch (e) {
      flash('error', e.message);
    }
  } }, label);
}

// "key = value" lines → object. A value that parses as JSON (number, true/false, list, "quoted")
// keeps that type, anything else is a string: `x-max-length = 10` is the number 10.
function parseArgs(text) {
  const out = {};
  for (const raw of (text || '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq < 1) throw new Error(`"${line}": expected key = value`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    try { out[key] = JSON.parse(value); } catch (_) { out[key] = value; }
  }
  return out;
}

const showArgs = (obj) => Object.entries(obj || {}).map(([k, v]) => h('div', {}, k + ' = ' + JSON.stringify(v)));

// The known vhosts as select options, the selected (or default) one first.
function vhostOptions() {
  const first = currentVhost() || '/';
  return [...state.vhosts].sort((a, b) => (b === first) - (a === first) || a.localeCompare(b)).map((v) => [v, v]);
}

const currentVhost = () => sessionStorage.getItem(VHOST_KEY) || '';
const inVhost = (rows) => (currentVhost() ? rows.filter((r) => r.vhost === currentVhost()) : rows);

// ---------------------------------------------------------------- charts

const RATE_SERIES = [
  ['publish', 'Publish', '#e07b00'],
  ['confirm', 'Publisher confirm', '#7a4fb5'],
  ['deliver_get', 'Deliver / get', '#2a7fd4'],
  ['redeliver', 'Redelivered', '#c33'],
  ['ack', 'Consumer ack', '#2c9f45'],
];
const QUEUED_SERIES = [
  ['messages_ready', 'Ready', '#e0b000'],
  ['messages_unacknowledged', 'Unacked', '#2a7fd4'],
  ['messages', 'Total', '#888'],
];

function recordSample(overview) {
  const ms = overview.message_stats || {};
  const qt = overview.queue_totals || {};
  const rates = {};
  for (const [k] of RATE_SERIES) rates[k] = (ms[k + '_details'] && ms[k + '_details'].rate) || 0;
  const queued = {};
  for (const [k] of QUEUED_SERIES) queued[k] = qt[k] || 0;
  state.history.push({ t: Date.now(), rates, queued });
  if (state.history.length > HISTORY) state.history.shift();
}

// A rounded grid step (1, 2, 2.5, 5 × 10^n) at or above v; whole numbers for counts.
function niceStep(v, whole) {
  if (!(v > 0)) return whole ? 1 : 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of (whole && p < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10])) {
    if (m * p >= v) return whole ? Math.max(1, m * p) : m * p;
  }
  return 10 * p;
}

const axisLabel = (v) => (Number.isInteger(v) ? v.toLocaleString('en-US') : String(Number(v.toFixed(2))));

// Line chart of series [{label, color, values}] over the sample times `times` (ms).
function drawChart(canvas, times, series, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 560;
  const hgt = canvas.clientHeight || 200;
  canvas.width = w * dpr;
  canvas.height = hgt * dpr;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, hgt);
  const left = 56, right = 20, top = 8, bottom = 22;
  const pw = w - left - right, ph = hgt - top - bottom;
  const max = 4 * niceStep(Math.max(0, ...series.flatMap((s) => s.values)) / 4, unit === '');
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.strokeStyle = i === 0 ? '#999' : '#e5e5e5';
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
    const v = (max * i) / 4;
    ctx.fillStyle = '#555';
    ctx.textAlign = 'right';
    ctx.fillText(axisLabel(v) + unit, left - 4, y);
  }
  const span = HISTORY * POLL_MS;
  const t1 = times.length ? times[times.length - 1] : Date.now();
  const x = (t) => left + pw - ((t1 - t) / span) * pw;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let m = 0; m <= 5; m++) {
    ctx.fillText(m === 0 ? 'now' : `-${m} min`, left + pw - (m * 60000 / span) * pw, top + ph + 5);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const px = x(times[i]), py = top + ph - (v / max) * ph;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    const last = s.values.length - 1;
    if (last >= 0) {
      ctx.beginPath();
      ctx.arc(x(times[last]), top + ph - (s.values[last] / max) * ph, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  canvas.dataset.samples = String(times.length);
}

function chartBox(id, title, series, unit, pick) {
  const canvas = h('canvas', { id, width: 560, height: 200, role: 'img', 'aria-label': title });
  const legend = h('div.legend');
  const box = h('div.chart', {}, h('h3', {}, title), canvas, legend);
  box.update = () => {
    const times = state.history.map((s) => s.t);
    const data = series.map(([k, label, color]) => ({ label, color, values: state.history.map((s) => pick(s)[k]) }));
    drawChart(canvas, times, data, unit);
    replace(legend, data.map((d) => h('span', {}, h('i', { style: 'background:' + d.color }),
      d.label + ': ' + (d.values.length ? (unit ? d.values[d.values.length - 1].toFixed(2) + unit : num(d.values[d.values.length - 1])) : '-'))));
  };
  return box;
}

// ---------------------------------------------------------------- pages
// Each page builds its static parts (forms) into `main` and returns update(): an async function
// that re-reads the API and redraws the live parts; it runs at once and every POLL_MS.

const pages = {};

pages.overview = (main) => {
  const totals = h('div.totals');
  const rates = chartBox('chart-rates', 'Message rates', RATE_SERIES, '/s', (s) => s.rates);
  const queued = chartBox('chart-queued', 'Queued messages', QUEUED_SERIES, '', (s) => s.queued);
  const node = h('div');
  append(main, h('h1', {}, 'Overview'), totals, h('div.charts', {}, queued, rates), h('h2', {}, 'Node'), node,
    h('h2', {}, 'Export definitions'), exportForm(), h('h2', {}, 'Import definitions'), importForm());
  return async () => {
    const o = await api('GET', '/overview');
    recordSample(o);
    const ot = o.object_totals || {}, qt = o.queue_totals || {};
    replace(totals, [['Connections', ot.connections], ['Channels', ot.channels], ['Exchanges', ot.exchanges],
      ['Queues', ot.queues], ['Consumers', ot.consumers], ['Messages ready', qt.messages_ready],
      ['Unacked', qt.messages_unacknowledged], ['Total messages', qt.messages]]
      .map(([k, v]) => h('div', {}, h('b', {}, num(v || 0)), k)));
    queued.update();
    rates.update();
    replace(node, kvTable([
      ['Product', (o.product_name || '') + ' ' + (o.product_version || o.rabbitmq_version || '')],
      ['Management API', o.management_version],
      ['Cluster', o.cluster_name],
      ['Node', o.node],
      ['Listeners', table([['Protocol', (l) => l.protocol], ['Bound to', (l) => l.ip_address], ['Port', (l) => l.port, 'num']], o.listeners || [])],
    ]));
    document.getElementById('footer').textContent = `${o.product_name || 'Warren'} ${o.product_version || ''} · ${o.cluster_name || ''}`;
  };
};

function exportForm() {
  return form('export-form', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: [['', 'All']].concat(state.vhosts.map((v) => [v, v])) },
    { name: 'filename', label: 'Filename', value: `rabbit_${location.hostname}_${new Date().toISOString().slice(0, 10)}.json` },
  ], 'Download broker definitions', async (v) => {
    const defs = await api('GET', '/definitions' + (v.vhost ? '/' + enc(v.vhost) : ''));
    const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: v.filename || 'definitions.json' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    return 'Definitions downloaded.';
  });
}

function importForm() {
  return form('import-form', [
    { name: 'file', label: 'Definitions file', type: 'file', accept: '.json,application/json', required: true },
    { name: 'vhost', label: 'Virtual host', type: 'select', options: [['', 'All']].concat(state.vhosts.map((v) => [v, v])) },
  ], 'Upload broker definitions', async (v) => {
    if (!v.file) throw new Error('Choose a definitions file first.');
    const text = await v.file.text();
    try { JSON.parse(text); } catch (e) { throw new Error(`${v.file.name} is not JSON: ${e.message}`); }
    await api('POST', '/definitions' + (v.vhost ? '/' + enc(v.vhost) : ''), text);
    return 'Your definitions were imported successfully.';
  });
}

pages.connections = (main) => {
  const list = h('div');
  append(main, h('h1', {}, 'Connections'), list);
  return async () => {
    const rows = inVhost(await api('GET', '/connections'));
    replace(list, table([
      ['Name', (c) => [c.name, (c.client_properties || {}).connection_name ? h('div.sub', {}, c.client_properties.connection_name) : null]],
      ['Virtual host', (c) => c.vhost],
      ['User', (c) => c.user],
      ['State', (c) => c.state],
      ['Protocol', (c) => c.protocol],
      ['Client', (c) => { const p = c.client_properties || {}; return [p.product, p.version].filter(Boolean).join(' '); }],
      ['Channels', (c) => num(c.channels), 'num'],
      ['From client', (c) => rate(c.recv_oct_details), 'num'],
      ['To client', (c) => rate(c.send_oct_details), 'num'],
      ['', (c) => actionButton('Force close', `Close connection ${c.name}?`, async () => {
        await api('DELETE', '/connections/' + enc(c.name), undefined, { 'X-Reason': 'Closed via management plugin' });
        return `Connection ${c.name} closed.`;
      }, 'danger')],
    ], rows, 'No connections'));
  };
};

pages.channels = (main) => {
  const list = h('div');
  append(main, h('h1', {}, 'Channels'), list);
  return async () => {
    const rows = inVhost(await api('GET', '/channels'));
    replace(list, table([
      ['Channel', (c) => c.name],
      ['Virtual host', (c) => c.vhost],
      ['User', (c) => c.user],
      ['Mode', (c) => tags([c.confirm && ['C', 'confirm'], c.transactional && ['T', 'transactional']])],
      ['State', (c) => c.state],
      ['Unconfirmed', (c) => num(c.messages_unconfirmed), 'num'],
      ['Prefetch', (c) => num(c.prefetch_count), 'num'],
      ['Unacked', (c) => num(c.messages_unacknowledged), 'num'],
      ['Consumers', (c) => num(c.consumer_count), 'num'],
      ['Publish', (c) => stat(c, 'publish'), 'num'],
      ['Deliver / get', (c) => stat(c, 'deliver_get'), 'num'],
      ['Ack', (c) => stat(c, 'ack'), 'num'],
    ], rows, 'No channels'));
  };
};

const features = (o) => tags([o.durable && ['D', 'durable'], o.auto_delete && ['AD', 'auto-delete'],
  o.internal && ['I', 'internal'], o.exclusive && ['Excl', 'exclusive'],
  Object.keys(o.arguments || {}).length && ['Args', JSON.stringify(o.arguments)], o.policy && [o.policy, 'policy']]);

pages.exchanges = (main) => {
  const list = h('div');
  append(main, h('h1', {}, 'Exchanges'), list, section('Add a new exchange', form('add-exchange', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'name', label: 'Name', required: true },
    { name: 'type', label: 'Type', type: 'select', options: state.exchangeTypes.map((t) => [t, t]) },
    { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
    { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
    { name: 'internal', label: 'Internal', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
    { name: 'arguments', label: 'Arguments', type: 'textarea', placeholder: 'alternate-exchange = my-ae', hint: 'One key = value per line; JSON values (numbers, true, lists) keep their type.' },
  ], 'Add exchange', async (v) => {
    await api('PUT', '/exchanges' + vpath(v.vhost, v.name), { type: v.type, durable: v.durable === 'true',
      auto_delete: v.auto_delete === 'true', internal: v.internal === 'true', arguments: parseArgs(v.arguments) });
    return `Exchange ${v.name} added.`;
  })));
  return async () => {
    const rows = inVhost(await api('GET', '/exchanges'));
    replace(list, table([
      ['Virtual host', (x) => x.vhost],
      ['Name', (x) => h('a', { href: '#/exchange' + vpath(x.vhost, exUrlName(x.name)) }, exName(x.name))],
      ['Type', (x) => x.type],
      ['Features', features],
      ['Message rate in', (x) => stat(x, 'publish_in'), 'num'],
      ['Message rate out', (x) => stat(x, 'publish_out'), 'num'],
    ], rows, 'No exchanges'));
  };
};

// Bindings table with an Unbind button; `side` says which end to show ('source' or 'destination').
function bindingsTable(vhost, rows, side) {
  return table([
    [side === 'source' ? 'From' : 'To', (b) => (side === 'source'
      ? h('a', { href: '#/exchange' + vpath(vhost, exUrlName(b.source)) }, exName(b.source))
      : h('a', { href: '#/' + (b.destination_type === 'queue' ? 'queue' : 'exchange') + vpath(vhost, b.destination) },
        b.destination + (b.destination_type === 'exchange' ? ' (exchange)' : '')))],
    ['Routing key', (b) => b.routing_key],
    ['Arguments', (b) => showArgs(b.arguments)],
    ['', (b) => (b.source === '' ? '(default binding)' : actionButton('Unbind', null, async () => {
      await api('DELETE', `/bindings/${enc(vhost)}/e/${enc(b.source)}/${b.destination_type === 'queue' ? 'q' : 'e'}/${enc(b.destination)}/${enc(b.properties_key)}`);
      return 'Binding removed.';
    }))],
  ], rows, 'No bindings');
}

function publishForm(id, vhost, exchange, fixedKey) {
  const fields = [
    fixedKey === undefined ? { name: 'routing_key', label: 'Routing key' } : null,
    { name: 'delivery_mode', label: 'Delivery mode', type: 'select', options: [['1', '1 - Non-persistent'], ['2', '2 - Persistent']] },
    { name: 'headers', label: 'Headers', type: 'textarea', placeholder: 'x-my-header = value' },
    { name: 'properties', label: 'Properties', type: 'textarea', placeholder: 'content_type = text/plain\ncorrelation_id = abc', hint: 'content_type, content_encoding, priority, correlation_id, reply_to, expiration, message_id, timestamp, type, user_id, app_id' },
    { name: 'payload', label: 'Payload', type: 'textarea' },
    { name: 'payload_encoding', label: 'Payload encoding', type: 'select', options: [['string', 'String (default)'], ['base64', 'Base64']] },
  ].filter(Boolean);
  return form(id, fields, 'Publish message', async (v) => {
    const properties = Object.assign({ delivery_mode: Number(v.delivery_mode) }, parseArgs(v.properties));
    const headers = parseArgs(v.headers);
    if (Object.keys(headers).length) properties.headers = headers;
    const r = await api('POST', '/exchanges' + vpath(vhost, exchange) + '/publish', {
      properties, routing_key: fixedKey === undefined ? v.routing_key : fixedKey,
      payload: v.payload, payload_encoding: v.payload_encoding });
    return r && r.routed ? 'Message published.' : 'Message published, but not routed.';
  });
}

pages.exchange = (main, [vhost, name]) => {
  const info = h('div'), source = h('div'), dest = h('div');
  const isDefault = name === 'amq.default';
  append(main, h('h1', {}, 'Exchange: ', exName(isDefault ? '' : name), h('span.sub', {}, ` in virtual host ${vhost}`)), info,
    h('h2', {}, 'Bindings from this exchange'), isDefault ? h('p', {}, 'The default exchange is implicitly bound to every queue, with a routing key equal to the queue name.') : source,
    isDefault ? null : section('Add binding from this exchange', form('add-binding', [
      { name: 'dtype', label: 'To', type: 'select', options: [['q', 'Queue'], ['e', 'Exchange']] },
      { name: 'destination', label: 'Name', required: true },
      { name: 'routing_key', label: 'Routing key' },
      { name: 'arguments', label: 'Arguments', type: 'textarea' },
    ], 'Bind', async (v) => {
      await api('POST', `/bindings/${enc(vhost)}/e/${enc(name)}/${v.dtype}/${enc(v.destination)}`, { routing_key: v.routing_key, arguments: parseArgs(v.arguments) });
      return 'Binding added.';
    })),
    h('h2', {}, 'Bindings to this exchange'), dest,
    section('Publish message', publishForm('publish-form', vhost, name)),
    isDefault || name.startsWith('amq.') ? null : section('Delete this exchange', actionButton('Delete', `Delete exchange ${name}?`, async () => {
      await api('DELETE', '/exchanges' + vpath(vhost, name));
      go('#/exchanges');
      return `Exchange ${name} deleted.`;
    }, 'danger')));
  return async () => {
    const [x, out, inc] = await Promise.all([api('GET', '/exchanges' + vpath(vhost, name)),
      isDefault ? [] : api('GET', '/exchanges' + vpath(vhost, name) + '/bindings/source'),
      api('GET', '/exchanges' + vpath(vhost, name) + '/bindings/destination')]);
    replace(info, kvTable([['Type', x.type], ['Features', features(x)], ['Arguments', showArgs(x.arguments)],
      ['Policy', x.policy || ''], ['Message rate in', stat(x, 'publish_in')], ['Message rate out', stat(x, 'publish_out')]]));
    if (!isDefault) replace(source, bindingsTable(vhost, out, 'destination'));
    replace(dest, bindingsTable(vhost, inc, 'source'));
  };
};

pages.queues = (main) => {
  const list = h('div');
  append(main, h('h1', {}, 'Queues'), list, section('Add a new queue', form('add-queue', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'type', label: 'Type', type: 'select', options: [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']] },
    { name: 'name', label: 'Name', required: true },
    { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
    { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
    { name: 'arguments', label: 'Arguments', type: 'textarea', placeholder: 'x-message-ttl = 60000\nx-dead-letter-exchange = dlx', hint: 'One key = value per line; JSON values (numbers, true, lists) keep their type.' },
  ], 'Add queue', async (v) => {
    const args = parseArgs(v.arguments);
    if (v.type !== 'classic') args['x-queue-type'] = v.type;
    await api('PUT', '/queues' + vpath(v.vhost, v.name), { durable: v.durable === 'true', auto_delete: v.auto_delete === 'true', arguments: args });
    return `Queue ${v.name} added.`;
  })));
  return async () => {
    const rows = inVhost(await api('GET', '/queues'));
    replace(list, table([
      ['Virtual host', (q) => q.vhost],
      ['Name', (q) => h('a', { href: '#/queue' + vpath(q.vhost, q.name) }, q.name)],
      ['Type', (q) => q.type || 'classic'],
      ['Features', features],
      ['State', (q) => q.state],
      ['Ready', (q) => num(q.messages_ready), 'num'],
      ['Unacked', (q) => num(q.messages_unacknowledged), 'num'],
      ['Total', (q) => num(q.messages), 'num'],
      ['Consumers', (q) => num(q.consumers), 'num'],
      ['Incoming', (q) => stat(q, 'publish'), 'num'],
      ['Deliver / get', (q) => stat(q, 'deliver_get'), 'num'],
      ['Ack', (q) => stat(q, 'ack'), 'num'],
    ], rows, 'No queues'));
  };
};

function showMessages(box, messages) {
  if (!messages.length) { replace(box, h('p', {}, 'Queue is empty')); return; }
  replace(box, messages.map((m, i) => h('div.message', {},
    h('h3', {}, `Message ${i + 1}`),
    h('p', {}, `The server reported ${m.message_count} messages remaining.`),
    kvTable([['Exchange', exName(m.exchange)], ['Routing Key', m.routing_key], ['Redelivered', m.redelivered ? '●' : '○'],
      ['Properties', showArgs(m.properties)],
      ['Payload', h('span', {}, `${m.payload_bytes} bytes, encoding: ${m.payload_encoding}`, h('pre.payload', {}, m.payload))]]))));
}

pages.queue = (main, [vhost, name]) => {
  const info = h('div'), consumers = h('div'), bindings = h('div'), got = h('div', { id: 'get-result' });
  append(main, h('h1', {}, 'Queue: ', name, h('span.sub', {}, ` in virtual host ${vhost}`)), info,
    h('h2', {}, 'Consumers'), consumers,
    h('h2', {}, 'Bindings'), bindings,
    section('Add binding to this queue', form('add-binding', [
      { name: 'source', label: 'From exchange', required: true },
      { name: 'routing_key', label: 'Routing key' },
      { name: 'arguments', label: 'Arguments', type: 'textarea' },
    ], 'Bind', async (v) => {
      await api('POST', `/bindings/${enc(vhost)}/e/${enc(v.source)}/q/${enc(name)}`, { routing_key: v.routing_key, arguments: parseArgs(v.arguments) });
      return 'Binding added.';
    })),
    section('Publish message', h('p', {}, 'Message will be published to the default exchange with routing key ', h('b', {}, name), ', routing it to this queue.'),
      publishForm('publish-form', vhost, 'amq.default', name)),
    section('Get messages', h('p', {}, 'Warning: getting messages from a queue is a destructive action.'), form('get-form', [
      { name: 'ackmode', label: 'Ack mode', type: 'select', options: [['ack_requeue_true', 'Nack message requeue true'],
        ['ack_requeue_false', 'Automatic ack'], ['reject_requeue_true', 'Reject requeue true'], ['reject_requeue_false', 'Reject requeue false']] },
      { name: 'encoding', label: 'Encoding', type: 'select', options: [['auto', 'Auto string / base64'], ['base64', 'base64']] },
      { name: 'count', label: 'Messages', value: '1' },
    ], 'Get Message(s)', async (v) => {
      const msgs = await api('POST', '/queues' + vpath(vhost, name) + '/get',
        { count: Number(v.count) || 1, ackmode: v.ackmode, encoding: v.encoding, truncate: 50000 });
      showMessages(got, msgs || []);
    }), got),
    section('Move, delete or purge', h('p', {},
      actionButton('Delete queue', `Delete queue ${name}?`, async () => {
        await api('DELETE', '/queues' + vpath(vhost, name));
        go('#/queues');
        return `Queue ${name} deleted.`;
      }, 'danger'), ' ',
      actionButton('Purge messages', `Purge all ready messages of ${name}?`, async () => {
        await api('DELETE', '/queues' + vpath(vhost, name) + '/contents');
        return `Queue ${name} purged.`;
      }, 'danger'))));
  return async () => {
    const [q, bs] = await Promise.all([api('GET', '/queues' + vpath(vhost, name)), api('GET', '/queues' + vpath(vhost, name) + '/bindings')]);
    replace(info, kvTable([['Type', q.type || 'classic'], ['Features', features(q)], ['Arguments', showArgs(q.arguments)],
      ['Policy', q.policy || ''], ['State', q.state], ['Consumers', num(q.consumers)],
      ['Messages', `${num(q.messages)} total, ${num(q.messages_ready)} ready, ${num(q.messages_unacknowledged)} unacked`],
      ['Incoming', stat(q, 'publish')], ['Deliver / get', stat(q, 'deliver_get')], ['Ack', stat(q, 'ack')]]));
    replace(consumers, table([
      ['Channel', (c) => (c.channel_details && c.channel_details.name) || ''],
      ['Consumer tag', (c) => c.consumer_tag],
      ['Ack required', (c) => yesNo(c.ack_required)],
      ['Exclusive', (c) => yesNo(c.exclusive)],
      ['Prefetch count', (c) => num(c.prefetch_count), 'num'],
      ['Arguments', (c) => showArgs(c.arguments)],
    ], q.consumer_details || [], 'No consumers'));
    replace(bindings, bindingsTable(vhost, bs, 'source'));
  };
};

pages.admin = (main, [tab]) => {
  tab = tab || 'users';
  const body = h('div');
  append(main, h('h1', {}, 'Admin'), h('p.subnav', {}, ['users', 'vhosts', 'permissions', 'policies'].map((t) =>
    [h('a', { href: '#/admin/' + t, class: t === tab ? 'active' : null }, t[0].toUpperCase() + t.slice(1)), ' '])), body);
  return (admin[tab] || admin.users)(body);
};

const admin = {};

admin.users = (main) => {
  const list = h('div');
  append(main, h('h2', {}, 'Users'), list, section('Add / update a user', form('add-user', [
    { name: 'name', label: 'Username', required: true },
    { name: 'password', label: 'Password', type: 'password', hint: 'Empty: a user without a password (it can only log in through other auth mechanisms), as RabbitMQ\'s "No password".' },
    { name: 'tags', label: 'Tags', hint: 'Comma-separated: administrator, monitoring, policymaker, management' },
  ], 'Add / update user', async (v) => {
    const body = { tags: v.tags };
    if (v.password) body.password = v.password; else body.password_hash = '';
    await api('PUT', '/users/' + enc(v.name), body);
    return `User ${v.name} saved.`;
  })));
  return async () => {
    const rows = await api('GET', '/users');
    replace(list, table([
      ['Name', (u) => u.name],
      ['Tags', (u) => (Array.isArray(u.tags) ? u.tags.join(', ') : u.tags)],
      ['Can log in with password', (u) => yesNo(u.password_hash)],
      ['', (u) => actionButton('Delete', `Delete user ${u.name}?`, async () => {
        await api('DELETE', '/users/' + enc(u.name));
        return `User ${u.name} deleted.`;
      }, 'danger')],
    ], rows, 'No users'));
  };
};

admin.vhosts = (main) => {
  const list = h('div');
  append(main, h('h2', {}, 'Virtual hosts'), list, section('Add a new virtual host', form('add-vhost', [
    { name: 'name', label: 'Name', required: true },
    { name: 'description', label: 'Description' },
    { name: 'tags', label: 'Tags' },
  ], 'Add virtual host', async (v) => {
    await api('PUT', '/vhosts/' + enc(v.name), { description: v.description, tags: v.tags });
    await loadVhosts();
    return `Virtual host ${v.name} added.`;
  })));
  return async () => {
    const rows = await api('GET', '/vhosts');
    replace(list, table([
      ['Name', (v) => v.name],
      ['Description', (v) => v.description || ''],
      ['Ready', (v) => num(v.messages_ready), 'num'],
      ['Unacked', (v) => num(v.messages_unacknowledged), 'num'],
      ['Total', (v) => num(v.messages), 'num'],
      ['Publish', (v) => stat(v, 'publish'), 'num'],
      ['Deliver / get', (v) => stat(v, 'deliver_get'), 'num'],
      ['', (v) => actionButton('Delete', `Delete virtual host ${v.name} and everything in it?`, async () => {
        await api('DELETE', '/vhosts/' + enc(v.name));
        await loadVhosts();
        return `Virtual host ${v.name} deleted.`;
      }, 'danger')],
    ], rows, 'No virtual hosts'));
  };
};

admin.permissions = (main) => {
  const list = h('div');
  append(main, h('h2', {}, 'Permissions'), list, section('Set permission', form('set-permission', [
    { name: 'user', label: 'User', required: true },
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'configure', label: 'Configure regexp', value: '.*' },
    { name: 'write', label: 'Write regexp', value: '.*' },
    { name: 'read', label: 'Read regexp', value: '.*' },
  ], 'Set permission', async (v) => {
    await api('PUT', '/permissions' + vpath(v.vhost, v.user), { configure: v.configure, write: v.write, read: v.read });
    return `Permission of ${v.user} in ${v.vhost} set.`;
  })));
  return async () => {
    const rows = await api('GET', '/permissions');
    replace(list, table([
      ['User', (p) => p.user],
      ['Virtual host', (p) => p.vhost],
      ['Configure', (p) => p.configure],
      ['Write', (p) => p.write],
      ['Read', (p) => p.read],
      ['', (p) => actionButton('Clear', `Clear the permissions of ${p.user} in ${p.vhost}?`, async () => {
        await api('DELETE', '/permissions' + vpath(p.vhost, p.user));
        return `Permission of ${p.user} in ${p.vhost} cleared.`;
      }, 'danger')],
    ], inVhost(rows), 'No permissions'));
  };
};

admin.policies = (main) => {
  const list = h('div');
  append(main, h('h2', {}, 'Policies'), list, section('Add / update a policy', form('add-policy', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'name', label: 'Name', required: true },
    { name: 'pattern', label: 'Pattern', required: true, placeholder: '^amq\\.' },
    { name: 'apply_to', label: 'Apply to', type: 'select', options: [['all', 'Exchanges and queues'], ['exchanges', 'Exchanges'], ['queues', 'Queues']] },
    { name: 'priority', label: 'Priority', value: '0' },
    { name: 'definition', label: 'Definition', type: 'textarea', placeholder: 'max-length = 1000\ndead-letter-exchange = dlx', hint: 'One key = value per line; JSON values keep their type.' },
  ], 'Add / update policy', async (v) => {
    await api('PUT', '/policies' + vpath(v.vhost, v.name), { pattern: v.pattern, definition: parseArgs(v.definition),
      priority: Number(v.priority) || 0, 'apply-to': v.apply_to });
    return `Policy ${v.name} saved.`;
  })));
  return async () => {
    const rows = inVhost(await api('GET', '/policies'));
    replace(list, table([
      ['Virtual host', (p) => p.vhost],
      ['Name', (p) => p.name],
      ['Pattern', (p) => p.pattern],
      ['Apply to', (p) => p['apply-to']],
      ['Definition', (p) => showArgs(p.definition)],
      ['Priority', (p) => num(p.priority), 'num'],
      ['', (p) => actionButton('Delete', `Delete policy ${p.name}?`, async () => {
        await api('DELETE', '/policies' + vpath(p.vhost, p.name));
        return `Policy ${p.name} deleted.`;
      }, 'danger')],
    ], rows, 'No policies'));
  };
};

// ---------------------------------------------------------------- router and session

let update = null;

async function refreshNow() {
  if (!update) return;
  const page = state.page;
  try {
    await update();
  } catch (e) {
    if (page === state.page && state.auth) flash('error', e.message);
  }
}

function route() {
  if (!state.auth) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map((p) => decodeURIComponent(p));
  const name = parts[0] || 'overview';
  const page = pages[name] || pages.overview;
  state.page += 1;
  clearInterval(state.timer);
  if (!state.keepFlash) flash();
  state.keepFlash = false;
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').slice(2) || 'overview';
    a.classList.toggle('active', target === name || name + 's' === target);
  }
  const main = replace(document.getElementById('main'));
  delete main.dataset.route;
  update = page(main, parts.slice(1));
  const hash = location.hash || '#/';
  // data-route marks the page as drawn (tests and scripts wait for it).
  const drawn = state.page;
  refreshNow().then(() => { if (drawn === state.page) main.dataset.route = hash; });
  state.timer = setInterval(refreshNow, POLL_MS);
}

async function loadVhosts() {
  const list = await api('GET', '/vhosts');
  state.vhosts = list.map((v) => v.name).sort();
  const sel = document.getElementById('vhost-filter');
  replace(sel, h('option', { value: '' }, 'All'), state.vhosts.map((v) => h('option', { value: v, selected: v === currentVhost() }, v)));
}

async function start() {
  try {
    state.user = await api('GET', '/whoami');
  } catch (e) {
    logout(e.status === 401 ? 'Login failed' : e.message);
    return;
  }
  const userTags = Array.isArray(state.user.tags) ? state.user.tags : String(state.user.tags || '').split(',');
  if (!userTags.some((t) => ['administrator', 'monitoring', 'policymaker', 'management'].includes(t.trim()))) {
    logout('Not management user');
    return;
  }
  document.getElementById('whoami').textContent = 'User ' + state.user.name;
  document.getElementById('nav-admin').hidden = !userTags.some((t) => ['administrator', 'policymaker'].includes(t.trim()));
  document.getElementById('login').hidden = true;
  document.getElementById('app').hidden = false;
  try {
    await loadVhosts();
    const o = await api('GET', '/overview');
    const types = (o.exchange_types || []).filter((t) => t.enabled !== false).map((t) => t.name);
    if (types.length) state.exchangeTypes = types.sort();
  } catch (e) {
    flash('error', e.message);
  }
  route();
}

function logout(reason) {
  state.auth = null;
  state.history = [];
  update = null;
  clearInterval(state.timer);
  sessionStorage.removeItem(AUTH_KEY);
  document.getElementById('app').hidden = true;
  document.getElementById('login').hidden = false;
  document.getElementById('login-error').textContent = reason || '';
}

// btoa of UTF-8 bytes, so non-ASCII user names and passwords work.
function basic(user, pass) {
  const bytes = new TextEncoder().encode(user + ':' + pass);
  return btoa(String.fromCharCode(...bytes));
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.auth = basic(document.getElementById('login-username').value, document.getElementById('login-password').value);
    sessionStorage.setItem(AUTH_KEY, state.auth);
    start();
  });
  document.getElementById('logout').addEventListener('click', () => logout(''));
  document.getElementById('vhost-filter').addEventListener('change', (ev) => {
    sessionStorage.setItem(VHOST_KEY, ev.target.value);
    route();
  });
  window.addEventListener('hashchange', route);
  if (state.auth) start(); else logout('');
});
