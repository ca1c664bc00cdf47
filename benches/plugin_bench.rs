//! Criterion micro-benchmarks of the Wasm plugin host (issue 4):
//! one route call into Wasm, a host route-cache hit, instantiation of a router, and the swap of an
//! exchange onto a reloaded plugin (new instance + replay of 1,000 bindings).
//!
//! `cargo bench --bench plugin_bench`
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use warren::broker::exchange::{Destination, Exchange};
use warren::broker::queue::Queue;
use warren::exchange_type::{BindingView, ExchangeTypeFactory, MessageView};
use warren::plugin::{PluginEngine, PluginLimits, WasmExchangeType};
use warren::protocol::{AMQPValue, FieldTable};

fn builtin(engine: &PluginEngine, name: &str) -> Arc<WasmExchangeType> {
    Arc::new(engine.load_builtins().unwrap().into_iter().find(|t| t.plugin() == name).unwrap())
}

fn benches(c: &mut Criterion) {
    let engine = PluginEngine::new(PluginLimits::default(), None).unwrap();
    let none = FieldTable::default();

    // Topic with 1,000 bindings: a routing-key-only, deterministic type (cached after a miss).
    let topic = builtin(&engine, "topic");
    let mut r = topic.create("/:bench", &none).unwrap();
    for i in 0..1000u32 {
        let key = format!("orders.region{i}.*");
        r.add_binding(&BindingView { destination: i, binding_key: &key, arguments: &none }).unwrap();
    }
    let mut out = Vec::with_capacity(8);
    c.bench_function("route: topic cache hit (1,000 bindings)", |b| {
        b.iter(|| {
            out.clear();
            r.route(&MessageView { routing_key: "orders.region500.created", headers: None, body: None, properties: None }, &mut out).unwrap();
            black_box(&out);
        })
    });
    // Distinct keys miss the cache: every call enters Wasm.
    let keys: Vec<String> = (0..100_000).map(|i| format!("orders.region{}.k{i}", i % 1000)).collect();
    let mut k = 0usize;
    c.bench_function("route: topic call into Wasm (1,000 bindings, cache miss)", |b| {
        b.iter(|| {
            out.clear();
            k = (k + 1) % keys.len();
            r.route(&MessageView { routing_key: &keys[k], headers: None, body: None, properties: None }, &mut out).unwrap();
            black_box(&out);
        })
    });

    // Headers: reads headers, never cached: a call into Wasm with 3 headers every time.
    let headers = builtin(&engine, "headers");
    let mut hr = headers.create("/:h", &none).unwrap();
    let mut args = FieldTable::default();
    args.insert("format".into(), AMQPValue::LongString("pdf".into()));
    hr.add_binding(&BindingView { destination: 1, binding_key: "", arguments: &args }).unwrap();
    let mut h = FieldTable::default();
    h.insert("format".into(), AMQPValue::LongString("pdf".into()));
    h.insert("type".into(), AMQPValue::LongString("report".into()));
    h.insert("n".into(), AMQPValue::LongInt(3));
    c.bench_function("route: headers call into Wasm (3 headers)", |b| {
        b.iter(|| {
            out.clear();
            hr.route(&MessageView { routing_key: "", headers: Some(&h), body: None, properties: None }, &mut out).unwrap();
            black_box(&out);
        })
    });

    // A new router: Store + instance from the InstancePre + create-exchange.
    let direct = builtin(&engine, "direct");
    c.bench_function("instantiate: new router (direct)", |b| b.iter(|| black_box(direct.create("/:d", &none).unwrap())));

    // Hot-reload swap of one exchange: a fresh instance of the new version gets 1,000 bindings replayed.
    let x = Exchange::new("swap".into(), "/".into(), topic.clone(), false, false, false, none.clone()).unwrap();
    for i in 0..1000u32 {
        let q = Arc::new(Queue::new(format!("q{i}"), "/".into(), false, false, None, none.clone(), None, usize::MAX));
        x.add_binding(Destination::Queue(q), &format!("orders.region{i}.*"), &none).unwrap();
    }
    let new_version: Arc<dyn ExchangeTypeFactory> = builtin(&engine, "topic");
    c.bench_function("hot reload: swap one exchange (1,000 bindings replayed)", |b| {
        b.iter(|| x.swap_type(new_version.clone()).unwrap())
    });
}

criterion_group! {
    name = plugin;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(plugin);
