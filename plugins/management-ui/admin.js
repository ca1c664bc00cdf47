// Warren management UI: the Admin pages (users, virtual hosts, permissions and topic
// permissions, policies and operator policies, virtual host and user limits, cluster name).
// Loaded after pages.js.
'use strict';

pages.admin = (main, [tab]) => {
  // A policymaker (not an administrator) may only manage policies: start there.
  const tags = Array.isArray(state.user.tags) ? state.user.tags : String(state.user.tags || '').split(',');
  tab = tab || (tags.map((t) => t.trim()).includes('administrator') ? 'users' : 'policies');
  const body = h('div');
  append(main, h('h1', {}, 'Admin'), h('p.subnav', {}, ['users', 'vhosts', 'permissions', 'policies', 'limits', 'cluster'].map((t) =>
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
      ['Can log in with password', (u) => (u.password_hash === undefined ? '' : yesNo(u.password_hash))],
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
  const list = h('div'), topics = h('div');
  append(main, h('h2', {}, 'Permissions'), list, section('Set permission', form('set-permission', [
    { name: 'user', label: 'User', required: true },
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'configure', label: 'Configure regexp', value: '.*' },
    { name: 'write', label: 'Write regexp', value: '.*' },
    { name: 'read', label: 'Read regexp', value: '.*' },
  ], 'Set permission', async (v) => {
    await api('PUT', '/permissions' + vpath(v.vhost, v.user), { configure: v.configure, write: v.write, read: v.read });
    return `Permission of ${v.user} in ${v.vhost} set.`;
  })), h('h2', {}, 'Topic permissions'), topics, section('Set topic permission', form('set-topic-permission', [
    { name: 'user', label: 'User', required: true },
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'exchange', label: 'Exchange', value: 'amq.topic', required: true },
    { name: 'write', label: 'Write regexp', value: '.*', hint: 'Routing keys this user may publish with to that topic exchange' },
    { name: 'read', label: 'Read regexp', value: '.*', hint: 'Binding keys this user may bind its queues with' },
  ], 'Set topic permission', async (v) => {
    await api('PUT', '/topic-permissions' + vpath(v.vhost, v.user), { exchange: v.exchange, write: v.write, read: v.read });
    return `Topic permission of ${v.user} in ${v.vhost} on ${v.exchange} set.`;
  })));
  return async () => {
    // Topic permissions are their own section: if that call fails, it says why there.
    const [rows, topicRows] = await Promise.all([api('GET', '/permissions'), api('GET', '/topic-permissions').catch((e) => e)]);
    replace(topics, topicRows instanceof Error ? h('p.error', {}, topicRows.message) : table([
      ['User', (p) => p.user],
      ['Virtual host', (p) => p.vhost],
      ['Exchange', (p) => p.exchange],
      ['Write', (p) => p.write],
      ['Read', (p) => p.read],
      ['', (p) => actionButton('Clear', `Clear the topic permission of ${p.user} in ${p.vhost} on ${p.exchange}?`, async () => {
        await api('DELETE', '/topic-permissions' + vpath(p.vhost, p.user) + '/' + enc(p.exchange));
        return `Topic permission of ${p.user} in ${p.vhost} on ${p.exchange} cleared.`;
      }, 'danger')],
    ], inVhost(topicRows), 'No topic permissions'));
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

// User policies and operator policies (RabbitMQ's operator-policies: limits an operator sets that
// user policies cannot lift) share one form and table; each kind fails on its own.
function policySection(kind, path, title, id, list) {
  const noun = kind === 'operator' ? 'Operator policy' : 'Policy';
  const body = h('div');
  append(list, h('h2', {}, title), body, section(`Add / update ${kind === 'operator' ? 'an operator policy' : 'a policy'}`, form(id, [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions() },
    { name: 'name', label: 'Name', required: true },
    { name: 'pattern', label: 'Pattern', required: true, placeholder: '^amq\\.' },
    { name: 'apply_to', label: 'Apply to', type: 'select', options: kind === 'operator' ? [['queues', 'Queues']]
      : [['all', 'Exchanges and queues'], ['exchanges', 'Exchanges'], ['queues', 'Queues']] },
    { name: 'priority', label: 'Priority', value: '0' },
    { name: 'definition', label: 'Definition', type: 'textarea', placeholder: kind === 'operator' ? 'max-length = 1000\nmessage-ttl = 60000'
      : 'max-length = 1000\ndead-letter-exchange = dlx', hint: 'One key = value per line; JSON values keep their type.' },
  ], `Add / update ${noun.toLowerCase()}`, async (v) => {
    await api('PUT', path + vpath(v.vhost, v.name), { pattern: v.pattern, definition: parseArgs(v.definition),
      priority: Number(v.priority) || 0, 'apply-to': v.apply_to });
    return `${noun} ${v.name} saved.`;
  })));
  return async () => {
    let rows;
    try {
      rows = inVhost(await api('GET', path));
    } catch (e) {
      replace(body, h('p.error', {}, e.message));
      return;
    }
    replace(body, table([
      ['Virtual host', (p) => p.vhost],
      ['Name', (p) => p.name],
      ['Pattern', (p) => p.pattern],
      ['Apply to', (p) => p['apply-to']],
      ['Definition', (p) => showArgs(p.definition)],
      ['Priority', (p) => num(p.priority), 'num'],
      ['', (p) => actionButton('Delete', `Delete ${noun.toLowerCase()} ${p.name}?`, async () => {
        await api('DELETE', path + vpath(p.vhost, p.name));
        return `${noun} ${p.name} deleted.`;
      }, 'danger')],
    ], rows, kind === 'operator' ? 'No operator policies' : 'No policies'));
  };
}

admin.policies = (main) => {
  const user = policySection('user', '/policies', 'Policies', 'add-policy', main);
  const operator = policySection('operator', '/operator-policies', 'Operator policies', 'add-operator-policy', main);
  return () => Promise.all([user(), operator()]);
};

// Virtual host limits (max-connections, max-queues) and user limits (max-connections,
// max-channels), one row per limit, as RabbitMQ's Admin > Limits page.
function limitSection(kind, list) {
  const [path, key, title, noun, names] = kind === 'vhost'
    ? ['/vhost-limits', 'vhost', 'Virtual host limits', 'virtual host', ['max-connections', 'max-queues']]
    : ['/user-limits', 'user', 'User limits', 'user', ['max-connections', 'max-channels']];
  const id = `set-${kind}-limit`;
  const body = h('div');
  append(list, h('h2', {}, title), body, section(`Set / update a ${noun} limit`, form(id, [
    kind === 'vhost' ? { name: 'on', label: 'Virtual host', type: 'select', options: vhostOptions() }
      : { name: 'on', label: 'User', required: true },
    { name: 'name', label: 'Limit', type: 'select', options: names.map((n) => [n, n]) },
    { name: 'value', label: 'Value', required: true, hint: 'A negative value means no limit; 0 refuses every new one.' },
  ], 'Set limit', async (v) => {
    const value = Number(v.value);
    if (!Number.isInteger(value)) throw new Error(`"${v.value}" is not a whole number`);
    await api('PUT', path + vpath(v.on, v.name), { value });
    return `Limit ${v.name} of ${noun} ${v.on} set.`;
  })));
  return async () => {
    let rows;
    try {
      rows = await api('GET', path);
    } catch (e) {
      replace(body, h('p.error', {}, e.message));
      return;
    }
    const flat = rows.flatMap((r) => Object.entries(r.value || {}).map(([name, value]) => ({ on: r[key], vhost: r.vhost, name, value })));
    replace(body, table([
      [kind === 'vhost' ? 'Virtual host' : 'User', (l) => l.on],
      ['Limit', (l) => l.name],
      ['Value', (l) => num(l.value), 'num'],
      ['', (l) => actionButton('Clear', `Clear limit ${l.name} of ${noun} ${l.on}?`, async () => {
        await api('DELETE', path + vpath(l.on, l.name));
        return `Limit ${l.name} of ${noun} ${l.on} cleared.`;
      }, 'danger')],
    ], kind === 'vhost' ? inVhost(flat) : flat, kind === 'vhost' ? 'No virtual host limits' : 'No user limits'));
  };
}

admin.limits = (main) => {
  const vhost = limitSection('vhost', main);
  const user = limitSection('user', main);
  return () => Promise.all([vhost(), user()]);
};

// The cluster name (the `cluster_name` global parameter: shown in the footer and the overview,
// sent to clients in connection.start), renamed with PUT /api/cluster-name as RabbitMQ's UI does.
admin.cluster = (main) => {
  const shown = h('div');
  append(main, h('h2', {}, 'Cluster'), shown, section('Rename the cluster', form('cluster-name', [
    { name: 'name', label: 'Cluster name', required: true },
  ], 'Rename', async (v) => {
    await api('PUT', '/cluster-name', { name: v.name });
    return `Cluster renamed to ${v.name}.`;
  })));
  return async () => {
    const c = await api('GET', '/cluster-name');
    replace(shown, kvTable([['Cluster name', c.name]]));
  };
};
