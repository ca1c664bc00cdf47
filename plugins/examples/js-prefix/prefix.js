// Example exchange type `x-prefix` (JavaScript, componentize-js).
//
// A message goes to every destination whose binding key is a prefix of its routing key
// ("eu." matches "eu.fr.paris"; the empty key matches everything). With the exchange
// argument `x-prefix-match = "longest"` only the bindings with the longest matching prefix
// get it (like a routing table); the default, "all", sends it to every matching binding.
// Reads only the routing key and is deterministic, so the host caches its routes.

import { log } from 'warren:plugin/host@0.1.0';

const MODE_ARG = 'x-prefix-match';
const MODES = ['all', 'longest'];

let longest = false;
// binding key -> Map(destination -> number of identical bindings)
let byPrefix = new Map();
let maxLen = 0;

function modeOf(args) {
  for (const [name, value] of args) {
    if (name !== MODE_ARG) continue;
    if (value.tag !== 'long-string' || !MODES.includes(value.val)) {
      throw `x-prefix: argument ${MODE_ARG} must be "all" or "longest"`;
    }
    return value.val;
  }
  return 'all';
}

function routeKey(key) {
  const out = [];
  const top = Math.min(key.length, maxLen);
  if (longest) {
    for (let i = top; i >= 0; i--) {
      const dests = byPrefix.get(key.slice(0, i));
      if (dests) {
        for (const d of dests.keys()) out.push(d);
        return out;
      }
    }
    return out;
  }
  for (let i = 0; i <= top; i++) {
    const dests = byPrefix.get(key.slice(0, i));
    if (dests) for (const d of dests.keys()) out.push(d);
  }
  return out;
}

export function describe() {
  return {
    name: 'x-prefix',
    description: 'routes to bindings whose key is a prefix of the routing key (x-prefix-match: all | longest)',
    reads: { routingKey: true, headers: false, body: false, properties: false },
    deterministic: true,
  };
}

export function validate(args) {
  modeOf(args);
}

export function createExchange(exchange, args) {
  longest = modeOf(args) === 'longest';
  byPrefix = new Map();
  maxLen = 0;
  log('debug', `exchange ${exchange}: prefix match mode ${longest ? 'longest' : 'all'}`);
  // option<routing-inputs>: undefined = what describe() says (the routing key)
  return undefined;
}

export function deleteExchange() {
  byPrefix = new Map();
  maxLen = 0;
}

export function validateBinding(b) {
  // any binding key is a prefix
}

export function addBinding(b) {
  let dests = byPrefix.get(b.bindingKey);
  if (!dests) {
    dests = new Map();
    byPrefix.set(b.bindingKey, dests);
  }
  dests.set(b.destination, (dests.get(b.destination) || 0) + 1);
  if (b.bindingKey.length > maxLen) maxLen = b.bindingKey.length;
}

export function removeBinding(b) {
  const dests = byPrefix.get(b.bindingKey);
  if (!dests || !dests.has(b.destination)) return false;
  const n = dests.get(b.destination) - 1;
  if (n > 0) {
    dests.set(b.destination, n);
  } else {
    dests.delete(b.destination);
    if (dests.size === 0) {
      byPrefix.delete(b.bindingKey);
      maxLen = 0;
      for (const k of byPrefix.keys()) if (k.length > maxLen) maxLen = k.length;
    }
  }
  return true;
}

export function route(msg) {
  return routeKey(msg.routingKey);
}

export function routeBatch(msgs) {
  return msgs.map((m) => routeKey(m.routingKey));
}
