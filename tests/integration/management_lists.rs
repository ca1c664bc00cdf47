//! RabbitMQ's list parameters on the management API (`sort`, `sort_reverse`, `page`,
//! `page_size`, `name`, `use_regex`, `columns`), applied by the host to typed rows, and the
//! overview of a user who sees one vhost only. Each test works in vhosts of its own, so it also
//! runs against RabbitMQ 3.10 (`WARREN_TEST_URL`, management on `WARREN_TEST_HTTP`).

use crate::common;
use crate::management::{Http, http, start};
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

async fn get(addr: SocketAddr, path: &str) -> Http {
    http(addr, "GET", path, GUEST, None).await
}

/// A fresh vhost (guest gets full permissions on it, as its creator).
async fn vhost(addr: SocketAddr, prefix: &str) -> String {
    let vh = uniq(prefix);
    assert_eq!(http(addr, "PUT", &format!("/api/vhosts/{vh}"), GUEST, Some(&json!({}))).await.status, 201);
    vh
}

async fn publish(addr: SocketAddr, vh: &str, queue: &str, n: usize) {
    for _ in 0..n {
        let body = json!({"properties": {}, "routing_key": queue, "payload": "x", "payload_encoding": "string"});
        let r = http(addr, "POST", &format!("/api/exchanges/{vh}/amq.default/publish"), GUEST, Some(&body)).await;
        assert_eq!(r.json(), json!({"routed": true}));
    }
}

fn names(v: &Value) -> Vec<String> {
    let items = v.get("items").unwrap_or(v);
    items.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

fn error(r: &Http) -> (u16, String, String) {
    let v = r.json();
    (r.status, v["error"].as_str().unwrap_or("").into(), v["reason"].as_str().unwrap_or("").into())
}

/// Polls `path` until `ok` holds for its JSON (RabbitMQ's queue counts and stats lag by up to
/// its 5 s collection interval; Warren's hold at once).
async fn until(addr: SocketAddr, auth: Option<(&str, &str)>, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        last = http(addr, "GET", path, auth, None).await.json();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("{path} never matched: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_list_sorts_filters_and_pages_as_rabbitmq() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "lists-q").await;
    // Queues a..d with 2, 0, 3, 1 messages and x-max-length 40, 10, (none), 30.
    let specs = [("a", 2, Some(40)), ("b", 0, Some(10)), ("c", 3, None), ("d", 1, Some(30))];
    for (n, count, max) in specs {
        let args = max.map_or(json!({}), |m| json!({"x-max-length": m}));
        let r = http(addr, "PUT", &format!("/api/queues/{vh}/q-{n}"), GUEST, Some(&json!({"durable": false, "arguments": args}))).await;
        assert_eq!(r.status, 201);
        publish(addr, &vh, &format!("q-{n}"), count).await;
    }
    let base = format!("/api/queues/{vh}");
    until(addr, GUEST, &format!("{base}?columns=messages"), |v| v.as_array().is_some_and(|a| a.iter().filter_map(|q| q["messages"].as_u64()).sum::<u64>() == 6)).await;

    // A key the queue itself answers (messages), both ways.
    assert_eq!(names(&get(addr, &format!("{base}?sort=messages")).await.json()), ["q-b", "q-d", "q-a", "q-c"]);
    let r = get(addr, &format!("{base}?sort=messages&sort_reverse=true&page=1&page_size=3&columns=name,messages")).await.json();
    assert_eq!(
        r,
        json!({"filtered_count": 4, "item_count": 3, "page": 1, "page_count": 2, "page_size": 3, "total_count": 4,
               "items": [{"name": "q-c", "messages": 3}, {"name": "q-a", "messages": 2}, {"name": "q-d", "messages": 1}]})
    );
    // A counter of the queue's message_stats, reversed (RabbitMQ's stats may lag a little).
    let by_publish = format!("{base}?sort=message_stats.publish&sort_reverse=true&columns=name");
    until(addr, GUEST, &by_publish, |v| names(v) == ["q-c", "q-a", "q-d", "q-b"]).await;
    // A key only the JSON row has (a nested argument; missing counts as 0).
    assert_eq!(names(&get(addr, &format!("{base}?sort=arguments.x-max-length")).await.json()), ["q-c", "q-b", "q-d", "q-a"]);
    // sort_reverse alone reverses the list's own order (vhost, name).
    assert_eq!(names(&get(addr, &format!("{base}?sort_reverse=true")).await.json()), ["q-d", "q-c", "q-b", "q-a"]);

    // A case-insensitive regex filter with paging.
    let r = get(addr, &format!("{base}?page=2&page_size=1&name=%5EQ-%5Bbcd%5D%24&use_regex=true&sort=messages&columns=name")).await.json();
    assert_eq!(r, json!({"filtered_count": 3, "item_count": 1, "items": [{"name": "q-d"}], "page": 2, "page_count": 3, "page_size": 1, "total_count": 4}));
    // A substring filter is case-insensitive too; without `page` it filters nothing.
    assert_eq!(get(addr, &format!("{base}?page=1&name=Q-A")).await.json()["filtered_count"], 1);
    assert_eq!(names(&get(addr, &format!("{base}?name=q-a")).await.json()).len(), 4);

    // Just past the end is an empty page; further is out of range.
    let r = get(addr, &format!("{base}?page=3&page_size=2")).await.json();
    assert_eq!((r["item_count"].as_u64(), r["page_count"].as_u64(), r["items"].clone()), (Some(0), Some(2), json!([])));
    assert_eq!(
        error(&get(addr, &format!("{base}?page=4&page_size=2")).await),
        (400, "page_out_of_range".into(), "Page out of range, page: 4 page size: 2, len: 4".into())
    );
    assert_eq!(
        error(&get(addr, &format!("{base}?page=1&page_size=501")).await),
        (400, "invalid_pagination_parameters".into(), "Invalid pagination parameters: page number 1, page size 501".into())
    );
    assert_eq!(error(&get(addr, &format!("{base}?page=1&name=(&use_regex=true")).await), (400, "bad_request".into(), "Pagination parameters are invalid".into()));
    assert_eq!(error(&get(addr, &format!("{base}?page=one")).await), (400, "bad_request".into(), "Pagination parameters are invalid".into()));
    assert_eq!(http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await.status, 204);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_and_vhost_lists_page_and_other_lists_do_not() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "lists-x").await;
    // Exchange names of this test only (the list across vhosts is filtered by them).
    let t = uniq("lx");
    let x = |i: u32| format!("{t}-{i}");
    for (i, kind) in [(1, "topic"), (2, "direct"), (3, "topic"), (4, "fanout")] {
        assert_eq!(http(addr, "PUT", &format!("/api/exchanges/{vh}/{}", x(i)), GUEST, Some(&json!({"type": kind}))).await.status, 201);
    }
    let body = json!({"routing_key": "k"});
    assert_eq!(http(addr, "PUT", &format!("/api/queues/{vh}/q"), GUEST, Some(&json!({"durable": false}))).await.status, 201);
    assert_eq!(http(addr, "POST", &format!("/api/bindings/{vh}/e/{}/q/q", x(1)), GUEST, Some(&body)).await.status, 201);
    assert_eq!(http(addr, "POST", &format!("/api/bindings/{vh}/e/{}/q/q", x(3)), GUEST, Some(&body)).await.status, 201);

    // Sorted by type, ties in name order; reversed, the whole order turns round.
    let upper = t.to_uppercase();
    let r = get(addr, &format!("/api/exchanges/{vh}?page=1&page_size=10&name={upper}&sort=type&sort_reverse=true&columns=name,type")).await.json();
    assert_eq!(
        r["items"],
        json!([{"name": x(3), "type": "topic"}, {"name": x(1), "type": "topic"}, {"name": x(4), "type": "fanout"}, {"name": x(2), "type": "direct"}])
    );
    assert_eq!((r["filtered_count"].as_u64(), r["page_count"].as_u64()), (Some(4), Some(1)));
    assert!(r["total_count"].as_u64().unwrap() > 4, "the amq.* exchanges and the default one count in the total");
    let r = get(addr, &format!("/api/exchanges?page=2&page_size=1&name=%5E{upper}-%5B13%5D%24&use_regex=true&columns=name,vhost")).await.json();
    assert_eq!(r["items"], json!([{"name": x(3), "vhost": vh}]));
    assert_eq!(r["filtered_count"], 2);
    assert_eq!(
        error(&get(addr, &format!("/api/exchanges/{vh}?page=4&page_size=2&name={t}")).await),
        (400, "page_out_of_range".into(), "Page out of range, page: 4 page size: 2, len: 4".into())
    );

    // The vhost list pages too.
    let r = get(addr, &format!("/api/vhosts?page=1&page_size=5&name={vh}&columns=name")).await.json();
    assert_eq!((r["filtered_count"].as_u64(), r["items"].clone()), (Some(1), json!([{"name": vh}])));

    // Bindings are not paged (RabbitMQ answers the array) but sort and columns apply.
    let r = get(addr, &format!("/api/bindings/{vh}?page=1&page_size=1&sort=source&sort_reverse=true&columns=source,destination")).await.json();
    let mine: Vec<Value> = r.as_array().expect("an array").iter().filter(|b| b["source"] != "").cloned().collect();
    assert_eq!(mine, [json!({"source": x(3), "destination": "q"}), json!({"source": x(1), "destination": "q"})]);
    assert_eq!(http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await.status, 204);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_of_a_management_user_counts_its_vhosts_only() {
    let (b, addr) = start().await;
    let mine = vhost(addr, "ov-mine").await;
    let other = vhost(addr, "ov-other").await;
    let user = uniq("ov-user");
    let me = Some((user.as_str(), "pw"));
    assert_eq!(http(addr, "PUT", &format!("/api/users/{user}"), GUEST, Some(&json!({"password": "pw", "tags": "management"}))).await.status, 201);
    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(http(addr, "PUT", &format!("/api/permissions/{mine}/{user}"), GUEST, Some(&perm)).await.status, 201);
    for vh in [&mine, &other] {
        assert_eq!(http(addr, "PUT", &format!("/api/queues/{vh}/q"), GUEST, Some(&json!({"durable": false}))).await.status, 201);
    }
    publish(addr, &mine, "q", 3).await;
    publish(addr, &other, "q", 5).await;

    let o = until(addr, me, "/api/overview", |o| o["queue_totals"]["messages"] == 3 && o["message_stats"]["publish"] == 3).await;
    assert_eq!(o["object_totals"]["queues"], 1);
    assert_eq!(o["object_totals"]["exchanges"], get(addr, &format!("/api/exchanges/{mine}")).await.json().as_array().unwrap().len());
    for hidden in ["node", "listeners", "contexts"] {
        assert!(o.get(hidden).is_none(), "a management user's overview has no {hidden}: {o}");
    }
    assert!(o["object_totals"].get("consumers").is_none(), "nor a consumer count");

    // The administrator sees every vhost.
    let all = until(addr, GUEST, "/api/overview", |o| o["message_stats"]["publish"].as_u64().unwrap_or(0) >= 8).await;
    assert!(all["queue_totals"]["messages"].as_u64().unwrap() >= 8);
    assert!(all["object_totals"]["consumers"].is_u64() && all["node"].is_string());

    assert_eq!(http(addr, "DELETE", &format!("/api/users/{user}"), GUEST, None).await.status, 204);
    for vh in [&mine, &other] {
        assert_eq!(http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await.status, 204);
    }
    b.stop().await;
}

/// `columns=` on the single objects (queue, exchange, node, overview, whoami, permission,
/// definitions), as
/// RabbitMQ's `extract_columns`: a path through a string keeps the string (the management
/// component's own picker answered `{}`), RabbitMQ's maps (`arguments`, the overview's totals
/// and rates) are kept whole, arrays of objects are filtered element by element.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_objects_take_columns_as_rabbitmq() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "cols-one").await;
    let q = uniq("cols-q");
    let put = http(addr, "PUT", &format!("/api/queues/{vh}/{q}"), GUEST, Some(&json!({"durable": false, "arguments": {"x-max-length": 5}}))).await;
    assert_eq!(put.status, 201);
    publish(addr, &vh, &q, 1).await;
    let one = format!("/api/queues/{vh}/{q}");
    let stats = until(addr, GUEST, &format!("{one}?columns=name,message_stats.publish"), |v| v.get("message_stats").is_some()).await;
    assert_eq!(stats, json!({"name": q, "message_stats": {"publish": 1}}));
    for cols in ["name,name.x", "name.x", "name.x,name", "name..x,,"] {
        let r = get(addr, &format!("{one}?columns={cols}")).await;
        assert_eq!((r.status, r.json()), (200, json!({"name": q})), "columns={cols}");
    }
    let r = get(addr, &format!("{one}?columns=arguments.nope,durable")).await.json();
    assert_eq!(r, json!({"arguments": {"x-max-length": 5}, "durable": false}));
    assert_eq!(get(addr, &format!("{one}?columns=")).await.json(), json!([]));
    let r = get(addr, &format!("/api/exchanges/{vh}/amq.direct?columns=name,type")).await.json();
    assert_eq!(r, json!({"name": "amq.direct", "type": "direct"}));
    assert_eq!(get(addr, "/api/whoami?columns=name").await.json(), json!({"name": "guest"}));
    let cluster = get(addr, "/api/overview").await.json()["cluster_name"].clone();
    assert_eq!(get(addr, "/api/cluster-name?columns=name").await.json(), json!({"name": cluster}));
    assert_eq!(get(addr, "/api/cluster-name?columns=x").await.json(), json!([]));
    assert_eq!(get(addr, &format!("/api/permissions/{vh}/guest?columns=user,vhost")).await.json(), json!({"user": "guest", "vhost": vh}));

    let o = get(addr, "/api/overview?columns=node,object_totals.queues,message_stats.publish").await.json();
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&o), ["message_stats", "node", "object_totals"], "{o}");
    assert!(o["object_totals"]["exchanges"].is_u64(), "the overview's totals are kept whole: {o}");
    assert!(o["message_stats"]["publish_details"].is_object(), "the overview's rates are kept whole: {o}");

    let node = o["node"].as_str().unwrap().to_string();
    let n = get(addr, &format!("/api/nodes/{node}?columns=name,exchange_types.name")).await;
    assert_eq!(n.status, 200);
    let n = n.json();
    assert_eq!((keys(&n), n["name"].as_str()), (vec!["exchange_types".to_string(), "name".to_string()], Some(node.as_str())));
    let types = n["exchange_types"].as_array().unwrap();
    assert!(types.iter().all(|t| keys(t) == ["name"]), "{n}");
    assert!(types.iter().any(|t| t["name"] == "topic"), "{n}");
    if !b.is_external() {
        // RabbitMQ answers an unknown node with an empty 500 (a failed call to it); Warren 404.
        assert_eq!(get(addr, "/api/nodes/nope@nowhere?columns=name").await.status, 404);
    }
    // The definitions document too, whole or per vhost.
    let d = get(addr, &format!("/api/definitions/{vh}?columns=queues.name")).await.json();
    assert_eq!(d, json!({"queues": [{"name": q}]}));
    let d = get(addr, "/api/definitions?columns=rabbit_version").await.json();
    assert_eq!(keys(&d), ["rabbit_version"], "{d}");

    assert_eq!(http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await.status, 204);
    b.stop().await;
}
