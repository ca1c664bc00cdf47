//! The integration tests: one test binary (one link of the broker and wasmtime instead of one per
//! file), one module per feature. Every test talks to a real broker over 127.0.0.1 — an
//! in-process Warren per test, or the broker named by `WARREN_TEST_URL` (see `common`).
//! `plugin_panic` stays its own binary: it installs a process-wide log subscriber.

mod common;

mod access;
mod alarm;
mod alternate_exchange;
mod app_lifecycle;
mod auth_backends;
mod auth_plugins;
mod bad_input;
mod basic;
mod cc_bcc;
mod confirms_tx;
mod content_frames;
mod connection;
mod consumers;
mod dead_letter;
mod definition_order;
mod durability;
mod exchanges;
mod flow;
mod hostile_input;
mod length_limits;
mod limits;
mod management;
mod management_definitions;
mod management_lists;
mod management_parameters;
mod management_stats;
mod logs;
mod memory_alarm;
mod oauth2;
mod paging;
mod perf_tool;
mod plugins;
mod plugins_cli;
mod policies;
mod priority;
mod prometheus;
mod queue_args;
mod queues;
mod quorum;
mod reply_to;
mod sdk;
mod requeue;
mod restart;
mod ttl;
mod warrenctl;
mod wire_fuzz;
mod tls;
mod topic_permissions;
