/* Example exchange type `x-random` (C, clang-19 + wasi-libc, bindings by `wit-bindgen c`).
 *
 * Like RabbitMQ's random exchange: every message goes to exactly one of the exchange's
 * bindings, picked at random with the host's random-u64 (the routing key is ignored).
 * A destination bound twice is twice as likely. Reads nothing of the message; not
 * deterministic, so the host never caches its routes.
 *
 * Ownership (generated bindings): every parameter of an export belongs to the callee and is
 * freed here; returned strings and lists are malloc'ed and freed by the bindings' post-return.
 * No stdio, clocks or other libc I/O: that would pull in WASI imports.
 */
#include <stdlib.h>
#include <string.h>
#include "gen/exchange_type.h"

typedef struct {
  uint32_t dest;
  char *key; /* binding key, kept only to match remove-binding */
  size_t key_len;
} slot_t;

static slot_t *slots = NULL;
static size_t n_slots = 0, cap_slots = 0;

static void clear_slots(void) {
  for (size_t i = 0; i < n_slots; i++) free(slots[i].key); /* free(NULL) is a no-op */
  free(slots);
  slots = NULL;
  n_slots = cap_slots = 0;
}

static void set_string(exchange_type_string_t *s, const char *text) {
  exchange_type_string_dup(s, text);
}

void exports_exchange_type_describe(exchange_type_info_t *ret) {
  set_string(&ret->name, "x-random");
  set_string(&ret->description,
             "each message goes to one binding picked at random (like RabbitMQ's random exchange)");
  ret->reads = 0; /* reads nothing: no routing key, headers or body */
  ret->deterministic = false;
}

bool exports_exchange_type_validate(exchange_type_field_table_t *arguments,
                                    exchange_type_string_t *err) {
  (void)err;
  exchange_type_field_table_free(arguments);
  return true;
}

bool exports_exchange_type_create_exchange(exchange_type_string_t *exchange,
                                           exchange_type_field_table_t *arguments,
                                           exchange_type_option_routing_inputs_t *ret,
                                           exchange_type_string_t *err) {
  (void)err;
  ret->is_some = false; /* read what describe() says (nothing) */
  exchange_type_string_free(exchange);
  exchange_type_field_table_free(arguments);
  clear_slots();
  return true;
}

void exports_exchange_type_delete_exchange(void) { clear_slots(); }

bool exports_exchange_type_validate_binding(exchange_type_binding_t *b,
                                            exchange_type_string_t *err) {
  (void)err;
  exchange_type_binding_free(b);
  return true;
}

bool exports_exchange_type_add_binding(exchange_type_binding_t *b, exchange_type_string_t *err) {
  if (n_slots == cap_slots) {
    size_t cap = cap_slots ? cap_slots * 2 : 16;
    slot_t *grown = realloc(slots, cap * sizeof(slot_t));
    if (!grown) {
      exchange_type_binding_free(b);
      set_string(err, "x-random: out of memory");
      return false;
    }
    slots = grown;
    cap_slots = cap;
  }
  slot_t *s = &slots[n_slots++];
  s->dest = b->destination;
  s->key_len = b->binding_key.len;
  s->key = NULL;
  if (s->key_len > 0) {
    /* take over the key's buffer instead of copying it. An empty string's pointer was not
     * allocated (the canonical ABI passes any aligned value), so it must never be freed. */
    s->key = (char *)b->binding_key.ptr;
    b->binding_key.ptr = NULL;
    b->binding_key.len = 0;
  }
  exchange_type_binding_free(b);
  return true;
}

bool exports_exchange_type_remove_binding(exchange_type_binding_t *b) {
  bool found = false;
  for (size_t i = 0; i < n_slots; i++) {
    slot_t *s = &slots[i];
    if (s->dest == b->destination && s->key_len == b->binding_key.len &&
        (s->key_len == 0 || memcmp(s->key, b->binding_key.ptr, s->key_len) == 0)) {
      free(s->key);
      slots[i] = slots[--n_slots]; /* order does not matter */
      found = true;
      break;
    }
  }
  exchange_type_binding_free(b);
  return found;
}

static void route_one(exchange_type_list_destination_id_t *ret) {
  ret->ptr = NULL;
  ret->len = 0;
  if (n_slots == 0) return;
  ret->ptr = malloc(sizeof(uint32_t));
  if (!ret->ptr) return;
  ret->ptr[0] = slots[warren_plugin_host_random_u64() % n_slots].dest;
  ret->len = 1;
}

void exports_exchange_type_route(exchange_type_message_view_t *msg,
                                 exchange_type_list_destination_id_t *ret) {
  exchange_type_message_view_free(msg); /* x-random reads nothing */
  route_one(ret);
}

void exports_exchange_type_route_batch(exchange_type_list_message_view_t *msgs,
                                       exchange_type_list_list_destination_id_t *ret) {
  size_t n = msgs->len;
  exchange_type_list_message_view_free(msgs);
  ret->len = 0;
  ret->ptr = n ? malloc(n * sizeof(*ret->ptr)) : NULL;
  if (!ret->ptr) return;
  for (size_t i = 0; i < n; i++) route_one(&ret->ptr[i]);
  ret->len = n;
}
