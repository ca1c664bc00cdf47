// Warren management UI: overview, connections, channels, exchanges and queues pages (with
// bindings, publish and get). Loaded after app.js and charts.js.
'use strict';

// Each page builds its static parts (forms) into `main` and returns update(): an async function
// that re-reads the API and redraws the live parts; it runs at once and every POLL_MS.

const pages = {};

pages.overview = (main) => {
  const totals = h('div.totals');
  const rates = chartBox('chart-rates', 'Message rates', RATE_SERIES, '/s', (s) => s.rates);
  const queued = chartBox('chart-queued', 'Queued messages', QUEUED_SERIES, '', (s) => s.queued);
  const node = h('div'), nodes = h('div', { id: 'nodes' });
  append(main, h('h1', {}, 'Overview'), totals, h('div.charts', {}, queued, rates), h('h2', {}, 'Nodes'), nodes, h('h2', {}, 'Node'), node,
    h('h2', {}, 'Export definitions'), exportForm(), h('h2', {}, 'Import definitions'), importForm());
  return async () => {
    // The nodes table is extra: if /api/nodes fails, that section says why and the rest still shows.
    const [o, ns] = await Promise.all([api('GET', '/overview'), api('GET', '/nodes').catch((e) => e)]);
    recordSample(o);
    replace(nodes, ns instanceof Error ? h('p.error', {}, ns.message) : table([
      ['Name', (n) => n.name],
      ['File descriptors', (n) => used(n.fd_used, n.fd_total, num)],
      ['Socket descriptors', (n) => used(n.sockets_used, n.sockets_total, num)],
      ['Memory', (n) => [used(n.mem_used, n.mem_limit, bytes), n.mem_alarm ? h('span.tag.alarm', {}, 'memory alarm') : null]],
      ['Disk space', (n) => [n.disk_free === undefined ? '' : `${bytes(n.disk_free)} free (limit ${bytes(n.disk_free_limit)})`,
        n.disk_free_alarm ? h('span.tag.alarm', {}, 'disk alarm') : null]],
      ['Uptime', (n) => duration(n.uptime)],
      ['Running', (n) => yesNo(n.running)],
    ], ns, 'No nodes'));
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

// "used of total" for the nodes table, each formatted by fmt; empty when the API has no figure.
const used = (a, b, fmt) => (a === undefined ? '' : b === undefined ? fmt(a) : `${fmt(a)} of ${fmt(b)}`);

function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

// Milliseconds as RabbitMQ's UI shows an uptime: "3d 4h", "5h 12m", "7m 3s".
function duration(ms) {
  if (typeof ms !== 'number') return '';
  const s = Math.floor(ms / 1000), d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : `${m}m ${s % 60}s`;
}

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

// The list pages ask for one page at a time, filtered by name, as RabbitMQ's UI does
// (`?page=&page_size=&name=&use_regex=&pagination=true`, plus `sort=&sort_reverse=` once a column
// title is clicked; the API caps page_size at 500), from the
// per-vhost path when a vhost is selected. An API that answers with a plain array (RabbitMQ does
// for /vhosts/{vhost}/connections and /channels) is filtered and paged here the same way.
const PAGE_SIZES = [20, 50, 100, 500];

function pagedList(path, vhostPath) {
  const opts = { page: 1, size: 100, name: '', regex: false, sort: '', reverse: false };
  let typing = null; // a filter edit waiting for the typing pause
  let filterInput = null;
  // A change of page, size, regex or sort made while a filter edit still waits applies that edit
  // too, so the page asked for is a page of the filtered list.
  const again = (changes) => {
    if (typing) {
      clearTimeout(typing);
      typing = null;
      if (!('name' in changes)) changes = { name: filterInput.value, ...changes };
    }
    Object.assign(opts, changes);
    refreshNow();
  };
  const pageInput = h('select.page', { id: 'list-page', 'aria-label': 'Page', onchange: (e) => again({ page: Number(e.target.value) }) },
    h('option', { value: 1 }, 1));
  const setPages = (count) => replace(pageInput, Array.from({ length: Math.max(1, count) }, (_, i) =>
    h('option', { value: i + 1, selected: i + 1 === opts.page }, i + 1)));
  const info = h('span.sub');
  const bar = h('div.listbar', {},
    h('label', {}, 'Filter ', filterInput = h('input.filter', { placeholder: 'name', 'aria-label': 'Filter by name', oninput: (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => { typing = null; again({ name: e.target.value, page: 1 }); }, 300);
    } })),
    h('label', {}, h('input', { type: 'checkbox', onchange: (e) => again({ regex: e.target.checked, page: 1 }) }), ' Regex'),
    h('label', {}, 'Page ', pageInput), info,
    h('label', {}, 'Page size ', h('select', { id: 'list-page-size', onchange: (e) => again({ size: Number(e.target.value), page: 1 }) },
      PAGE_SIZES.map((n) => h('option', { value: n, selected: n === opts.size }, n)))));

  const sorter = {
    get key() { return opts.sort; },
    get reverse() { return opts.reverse; },
    set(key) { again({ reverse: key === opts.sort ? !opts.reverse : false, sort: key }); },
  };

  function localPage(all) {
    let match;
    if (opts.regex) {
      let re;
      try { re = new RegExp(opts.name); } catch (e) { throw new Error('Invalid regular expression: ' + e.message); }
      match = (r) => re.test(r.name);
    } else {
      const needle = opts.name.toLowerCase();
      match = (r) => String(r.name).toLowerCase().includes(needle);
    }
    const filtered = all.filter(match);
    if (opts.sort) {
      const value = (r) => opts.sort.split('.').reduce((o, k) => (o == null ? undefined : o[k]), r);
      const cmp = (a, b) => {
        const x = value(a), y = value(b);
        if (x === y) return 0;
        if (x === undefined) return -1; // missing first, as RabbitMQ sorts them
        if (y === undefined) return 1;
        return typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      };
      filtered.sort((a, b) => (opts.reverse ? -cmp(a, b) : cmp(a, b)));
    }
    const start = (opts.page - 1) * opts.size;
    return { items: filtered.slice(start, start + opts.size), filtered_count: filtered.length, total_count: all.length,
      page_count: Math.ceil(filtered.length / opts.size), page: opts.page };
  }

  async function load() {
    const vhost = currentVhost();
    const base = vhost && vhostPath ? vhostPath(enc(vhost)) : path;
    const query = () => `?page=${opts.page}&page_size=${opts.size}&name=${enc(opts.name)}&use_regex=${opts.regex}&pagination=true` +
      (opts.sort ? `&sort=${enc(opts.sort)}&sort_reverse=${opts.reverse}` : '');
    let r;
    try {
      r = await api('GET', base + query());
    } catch (e) {
      if (e.error !== 'page_out_of_range' || opts.page === 1) throw e;
      opts.page = 1;
      r = await api('GET', base + query());
    }
    if (Array.isArray(r)) {
      const all = vhost && base === path ? inVhost(r) : r;
      r = localPage(all);
      if (r.page_count && opts.page > r.page_count) {
        opts.page = 1;
        r = localPage(all);
      }
    }
    setPages(r.page_count);
    replace(info, `of ${Math.max(1, r.page_count)} · ${num(r.filtered_count)} matching of ${num(r.total_count)}`);
    return r.items;
  }
  return { bar, load, sorter };
}

pages.connections = (main) => {
  const list = h('div'), pager = pagedList('/connections', (v) => '/vhosts/' + v + '/connections');
  append(main, h('h1', {}, 'Connections'), pager.bar, list);
  return async () => {
    const rows = await pager.load();
    replace(list, table([
      ['Name', (c) => [h('a', { href: '#/connection/' + enc(c.name) }, c.name),
        (c.client_properties || {}).connection_name ? h('div.sub', {}, c.client_properties.connection_name) : null], 'name', 'name'],
      ['Virtual host', (c) => c.vhost, null, 'vhost'],
      ['User', (c) => c.user, null, 'user'],
      ['State', (c) => c.state, null, 'state'],
      ['Protocol', (c) => c.protocol, null, 'protocol'],
      ['Client', (c) => { const p = c.client_properties || {}; return [p.product, p.version].filter(Boolean).join(' '); }],
      ['Channels', (c) => num(c.channels), 'num', 'channels'],
      ['From client', (c) => rate(c.recv_oct_details), 'num', 'recv_oct_details.rate'],
      ['To client', (c) => rate(c.send_oct_details), 'num', 'send_oct_details.rate'],
      ['', (c) => actionButton('Force close', `Close connection ${c.name}?`, async () => {
        await api('DELETE', '/connections/' + enc(c.name), undefined, { 'X-Reason': 'Closed via management plugin' });
        return `Connection ${c.name} closed.`;
      }, 'danger')],
    ], rows, 'No connections', pager.sorter));
  };
};

const channelColumns = () => [
  ['Channel', (c) => c.name, 'name', 'name'],
  ['Virtual host', (c) => c.vhost, null, 'vhost'],
  ['User', (c) => c.user, null, 'user'],
  ['Mode', (c) => tags([c.confirm && ['C', 'confirm'], c.transactional && ['T', 'transactional']])],
  ['State', (c) => c.state, null, 'state'],
  ['Unconfirmed', (c) => num(c.messages_unconfirmed), 'num', 'messages_unconfirmed'],
  ['Prefetch', (c) => num(c.prefetch_count), 'num', 'prefetch_count'],
  ['Unacked', (c) => num(c.messages_unacknowledged), 'num', 'messages_unacknowledged'],
  ['Consumers', (c) => num(c.consumer_count), 'num', 'consumer_count'],
  ['Publish', (c) => stat(c, 'publish'), 'num', 'message_stats.publish_details.rate'],
  ['Deliver / get', (c) => stat(c, 'deliver_get'), 'num', 'message_stats.deliver_get_details.rate'],
  ['Ack', (c) => stat(c, 'ack'), 'num', 'message_stats.ack_details.rate'],
];

pages.connection = (main, [name]) => {
  const info = h('div'), props = h('div'), channels = h('div');
  append(main, h('h1', {}, 'Connection: ', name), info, h('h2', {}, 'Channels'), channels,
    h('h2', {}, 'Client properties'), props,
    section('Close this connection', form('close-connection', [
      { name: 'reason', label: 'Reason', value: 'Closed via management plugin' },
    ], 'Force Close', async (v) => {
      if (!window.confirm(`Close connection ${name}?`)) return null;
      await api('DELETE', '/connections/' + enc(name), undefined, { 'X-Reason': v.reason });
      go('#/connections');
      return `Connection ${name} closed.`;
    })));
  return async () => {
    const [c, chs] = await Promise.all([api('GET', '/connections/' + enc(name)), api('GET', '/connections/' + enc(name) + '/channels')]);
    replace(info, kvTable([['Virtual host', c.vhost], ['User', c.user], ['State', c.state], ['Protocol', c.protocol],
      ['Authentication', c.auth_mechanism], ['Client', `${c.peer_host}:${c.peer_port}`], ['Server', `${c.host}:${c.port}`],
      ['Heartbeat', c.timeout === undefined ? '' : `${c.timeout} s`], ['Frame max', num(c.frame_max)], ['Channel max', num(c.channel_max)],
      ['From client', rate(c.recv_oct_details)], ['To client', rate(c.send_oct_details)]]));
    replace(channels, table(channelColumns(), chs || [], 'No channels'));
    replace(props, showArgs(c.client_properties));
  };
};

pages.channels = (main) => {
  const list = h('div'), pager = pagedList('/channels', (v) => '/vhosts/' + v + '/channels');
  append(main, h('h1', {}, 'Channels'), pager.bar, list);
  return async () => {
    const rows = await pager.load();
    replace(list, table(channelColumns(), rows, 'No channels', pager.sorter));
  };
};

const features = (o) => tags([o.durable && ['D', 'durable'], o.auto_delete && ['AD', 'auto-delete'],
  o.internal && ['I', 'internal'], o.exclusive && ['Excl', 'exclusive'],
  Object.keys(o.arguments || {}).length && ['Args', JSON.stringify(o.arguments)], o.policy && [o.policy, 'policy']]);

pages.exchanges = (main) => {
  const list = h('div'), pager = pagedList('/exchanges', (v) => '/exchanges/' + v);
  append(main, h('h1', {}, 'Exchanges'), pager.bar, list, section('Add a new exchange', form('add-exchange', [
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
    const rows = await pager.load();
    replace(list, table([
      ['Virtual host', (x) => x.vhost, null, 'vhost'],
      ['Name', (x) => h('a', { href: '#/exchange' + vpath(x.vhost, exUrlName(x.name)) }, exName(x.name)), 'name', 'name'],
      ['Type', (x) => x.type, null, 'type'],
      ['Features', features],
      ['Message rate in', (x) => stat(x, 'publish_in'), 'num', 'message_stats.publish_in_details.rate'],
      ['Message rate out', (x) => stat(x, 'publish_out'), 'num', 'message_stats.publish_out_details.rate'],
    ], rows, 'No exchanges', pager.sorter));
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

// The API wants AMQP's types for basic properties: integers for these, strings for the rest
// (`expiration = 60000` must go as "60000"). Unknown keys are left for the API to refuse.
const INT_PROPERTIES = ['delivery_mode', 'priority', 'timestamp'];
const STRING_PROPERTIES = ['content_type', 'content_encoding', 'correlation_id', 'reply_to', 'expiration',
  'message_id', 'type', 'user_id', 'app_id', 'cluster_id'];

function typedProperties(props) {
  for (const [k, v] of Object.entries(props)) {
    if (INT_PROPERTIES.includes(k) && typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v))) props[k] = Number(v);
    if (STRING_PROPERTIES.includes(k) && typeof v !== 'string') props[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return props;
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
    const properties = Object.assign({ delivery_mode: Number(v.delivery_mode) }, typedProperties(parseArgs(v.properties)));
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
  const list = h('div'), pager = pagedList('/queues', (v) => '/queues/' + v);
  append(main, h('h1', {}, 'Queues'), pager.bar, list, section('Add a new queue', form('add-queue', [
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
    const rows = await pager.load();
    replace(list, table([
      ['Virtual host', (q) => q.vhost, null, 'vhost'],
      ['Name', (q) => h('a', { href: '#/queue' + vpath(q.vhost, q.name) }, q.name), 'name', 'name'],
      ['Type', (q) => q.type || 'classic', null, 'type'],
      ['Features', features],
      ['State', (q) => q.state, null, 'state'],
      ['Ready', (q) => num(q.messages_ready), 'num', 'messages_ready'],
      ['Unacked', (q) => num(q.messages_unacknowledged), 'num', 'messages_unacknowledged'],
      ['Total', (q) => num(q.messages), 'num', 'messages'],
      ['Consumers', (q) => num(q.consumers), 'num', 'consumers'],
      ['Incoming', (q) => stat(q, 'publish'), 'num', 'message_stats.publish_details.rate'],
      ['Deliver / get', (q) => stat(q, 'deliver_get'), 'num', 'message_stats.deliver_get_details.rate'],
      ['Ack', (q) => stat(q, 'ack'), 'num', 'message_stats.ack_details.rate'],
    ], rows, 'No queues', pager.sorter));
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
    section('Delete or purge', h('p', {},
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
