#!/usr/bin/env python3
"""Creates the objects of tests/integration/fixtures/rabbitmq-3.10-definitions.json on the reference
RabbitMQ 3.10 (management API on 127.0.0.1:15673, guest/guest: vhost defs-fixture, user
defs-fixture-user with password fixture-pw, exchanges, queues, bindings, a policy, an operator policy,
vhost limits), then prints its GET /api/definitions narrowed to them. The integration test
management_definitions reads the live export when the vhost exists there, else the committed file:

    .venv/bin/python scripts/rabbitmq-defs-fixture.py > tests/integration/fixtures/rabbitmq-3.10-definitions.json
"""
import base64
import json
import sys
import urllib.request
B='http://127.0.0.1:15673/api'
H={'Authorization': 'Basic ' + base64.b64encode(b'guest:guest').decode(), 'content-type':'application/json'}
def req(m, path, body=None):
    r = urllib.request.Request(B+path, method=m, headers=H, data=None if body is None else json.dumps(body).encode())
    try:
        x = urllib.request.urlopen(r).read()
        return json.loads(x) if x else None
    except urllib.error.HTTPError as e:
        print(m, path, e.code, e.read(), file=sys.stderr); raise
V='defs-fixture'
req('PUT', f'/vhosts/{V}', {'description': 'exported from RabbitMQ 3.10', 'tags': 'fixture,test'})
req('PUT', f'/users/defs-fixture-user', {'password': 'fixture-pw', 'tags': 'monitoring'})
req('PUT', f'/permissions/{V}/defs-fixture-user', {'configure': '^fx-', 'write': '.*', 'read': '.*'})
req('PUT', f'/permissions/{V}/guest', {'configure': '.*', 'write': '.*', 'read': '.*'})
req('PUT', f'/exchanges/{V}/fx-topic', {'type': 'topic', 'durable': True, 'arguments': {'alternate-exchange': 'fx-ae'}})
req('PUT', f'/exchanges/{V}/fx-ae', {'type': 'fanout', 'durable': True})
req('PUT', f'/queues/{V}/fx-orders', {'durable': True, 'arguments': {'x-max-length': 1000, 'x-dead-letter-exchange': 'fx-ae', 'x-queue-type': 'classic'}})
req('PUT', f'/queues/{V}/fx-quorum', {'durable': True, 'arguments': {'x-queue-type': 'quorum', 'x-delivery-limit': 5}})
req('PUT', f'/queues/{V}/fx-dead', {'durable': True, 'arguments': {}})
req('POST', f'/bindings/{V}/e/fx-topic/q/fx-orders', {'routing_key': 'orders.#', 'arguments': {}})
req('POST', f'/bindings/{V}/e/fx-ae/q/fx-dead', {'routing_key': '', 'arguments': {}})
req('POST', f'/bindings/{V}/e/fx-topic/e/fx-ae', {'routing_key': 'audit.*', 'arguments': {'x-note': 'e2e'}})
req('PUT', f'/policies/{V}/fx-ttl', {'pattern': '^fx-orders$', 'definition': {'message-ttl': 60000}, 'priority': 1, 'apply-to': 'queues'})
req('PUT', f'/operator-policies/{V}/fx-cap', {'pattern': '^fx-', 'definition': {'max-length': 5000}, 'priority': 0, 'apply-to': 'queues'})
req('PUT', f'/vhost-limits/{V}/max-connections', {'value': 50})
req('PUT', f'/vhost-limits/{V}/max-queues', {'value': 20})
d = req('GET', '/definitions')
keep = lambda o: o.get('vhost') == V
out = {
  'rabbit_version': d['rabbit_version'], 'rabbitmq_version': d['rabbitmq_version'], 'product_name': d['product_name'], 'product_version': d['product_version'],
  'users': [u for u in d['users'] if u['name'] == 'defs-fixture-user'],
  'vhosts': [v for v in d['vhosts'] if v['name'] == V],
  'permissions': [p for p in d['permissions'] if keep(p)],
  'topic_permissions': [p for p in d['topic_permissions'] if keep(p)],
  'parameters': [p for p in d['parameters'] if keep(p)],
  'global_parameters': d['global_parameters'],
  'policies': [p for p in d['policies'] if keep(p)],
  'queues': [q for q in d['queues'] if keep(q)],
  'exchanges': [x for x in d['exchanges'] if keep(x)],
  'bindings': [b for b in d['bindings'] if keep(b)],
}
print(json.dumps(out, indent=1))
