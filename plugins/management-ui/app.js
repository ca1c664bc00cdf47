// Warren management web UI. Plain JavaScript, no build step, no external resources.
//
// It talks only to RabbitMQ's management HTTP API, same origin (`api/...` relative to the page),
// with HTTP Basic credentials from the login form kept in sessionStorage. Pages are chosen by the
// URL hash (#/queues, #/queue/<vhost>/<name>, ...); the current page's live parts are refreshed
// every POLL_MS, as RabbitMQ's UI does.
//
// Files, loaded in this order by index.html (plain scripts sharing one global scope):
//   app.js     HTTP, DOM helpers, router and login session (this file)
//   charts.js  the overview's <canvas> charts
//   pages.js   overview, connections, channels, exchanges, queues (+ bindings, publish, get)
//   admin.js   users, virtual hosts, permissions and topic permissions, policies
'use strict';

const POLL_MS = 5000;
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
    let reason = body && typeof body === 'object' ? (body.reason || body.error) : body;
    if (reason && typeof reason !== 'string') reason = JSON.stringify(reason); // ["not_int","priority"]
    super(reason || `HTTP ${status}`);
    this.status = status;
    this.error = body && typeof body === 'object' ? body.error : undefined; // e.g. page_out_of_range
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
  // A 401 is also how the API refuses an action to a logged-in user ("User not authorised to
  // access virtual host"); only a refused login means the stored credentials are no longer good.
  if (resp.status === 401 && path !== '/whoami' && !(data && data.reason && data.reason !== 'Login failed')) {
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

// A table: columns are [title, row => cell, td class ('num', 'name')?, sort key?]; an empty list
// prints `empty`. With a sorter ({key, reverse, set(key)}), titles of columns with a sort key are
// buttons that sort by it (again: the other way round), marked ▲ / ▼ while sorted.
function table(columns, rows, empty, sorter) {
  // With one virtual host selected in the header, its column says nothing.
  if (currentVhost()) columns = columns.filter((c) => c[0] !== 'Virtual host');
  const title = (c) => (sorter && c[3]
    ? h('button.sort', { type: 'button', 'data-sort': c[3], onclick: () => sorter.set(c[3]) },
      c[0], sorter.key === c[3] ? (sorter.reverse ? ' ▼' : ' ▲') : '')
    : c[0]);
  const head = h('tr', {}, columns.map((c) => h('th', {}, title(c))));
  const body = rows.length
    ? rows.map((r) => h('tr', {}, columns.map((c) => h(c[2] ? 'td.' + c[2] : 'td', {}, c[1](r)))))
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

// ---------------------------------------------------------------- router and session

let update = null;
let inflight = null; // the current page's running refresh: {page, promise, again}

// Redraws the current page. One refresh runs at a time per page: a call while one is running (a
// slow API, or an action during a poll) asks for one more run after it, so the page ends up
// showing the state after the action and polls never pile up.
function refreshNow() {
  if (!update) return Promise.resolve();
  if (inflight && inflight.page === state.page) {
    inflight.again = true;
    return inflight.promise;
  }
  const run = { page: state.page, again: false };
  const draw = update;
  run.promise = (async () => {
    do {
      run.again = false;
      try {
        await draw();
      } catch (e) {
        if (run.page === state.page && state.auth) flash('error', e.message);
      }
    } while (run.again && run.page === state.page);
    if (inflight === run) inflight = null;
  })();
  inflight = run;
  return run.promise;
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
    logout(e.message); // the API's reason: RabbitMQ says "Login failed" or "Not management user"
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
    document.getElementById('footer').textContent = `${o.product_name || 'Warren'} ${o.product_version || ''} · ${o.cluster_name || ''}`;
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
