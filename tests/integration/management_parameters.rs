//! The management API's runtime parameters, global parameters and limits: `/api/parameters`
//! (components Warren has: `vhost-limits`, `operator_policy`; others list empty and are refused
//! on PUT with RabbitMQ's text), `/api/global-parameters`, `/api/vhost-limits`,
//! `/api/user-limits`, with RabbitMQ 3.10's paths, JSON, status codes and errors; the limits set
//! there are enforced on AMQP connections; `warrenctl`'s global parameter commands.
//!
//! With `WARREN_TEST_URL` set, the parts where Warren and RabbitMQ 3.10 agree run against the
//! reference node (`WARREN_TEST_HTTP`, default 127.0.0.1:15673), on a vhost and users of their
//! own; what 3.10 answers with a 500 (a second vhost limit, clearing one) and the global
//! parameters (the node is shared) are checked on Warren only.
use crate::common;
use crate::management::{http, start};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use serde_json::json;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

/// A fresh vhost (guest may use it) and its percent-encoded name.
async fn vhost(addr: std::net::SocketAddr, prefix: &str) -> String {
    let vh = uniq(prefix);
    assert_eq!(http(addr, "PUT", &format!("/api/vhosts/{vh}"), GUEST, None).await.status, 201);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert!(matches!(http(addr, "PUT", &format!("/api/permissions/{vh}/guest"), GUEST, Some(&all)).await.status, 201 | 204));
    vh
}

async fn user(addr: std::net::SocketAddr, prefix: &str, tags: &str) -> String {
    let u = uniq(prefix);
    let r = http(addr, "PUT", &format!("/api/users/{u}"), GUEST, Some(&json!({"password": "pw", "tags": tags}))).await;
    assert_eq!(r.status, 201);
    u
}

fn reason(r: &crate::management::Http) -> String {
    r.json()["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_list_set_and_clear_vhost_limits_and_refuse_unknown_components() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "par-v").await;
    // A component Warren does not have (federation, shovel…): empty lists, 404, refused PUT.
    for path in ["/api/parameters/federation-upstream".to_string(), format!("/api/parameters/federation-upstream/{vh}")] {
        let r = http(addr, "GET", &path, GUEST, None).await;
        assert_eq!((r.status, r.json()), (200, json!([])), "{path}");
    }
    let up = format!("/api/parameters/federation-upstream/{vh}/up");
    assert_eq!(http(addr, "GET", &up, GUEST, None).await.status, 404);
    let r = http(addr, "PUT", &up, GUEST, Some(&json!({"value": {"uri": "amqp://"}}))).await;
    assert_eq!((r.status, r.json()["error"].as_str(), reason(&r).as_str()), (400, Some("bad_request"), "Validation failed\n\ncomponent federation-upstream not found\n"));
    assert_eq!(http(addr, "DELETE", &up, GUEST, None).await.status, 404);

    // vhost-limits, named `limits`: 201 when new, 204 when changed.
    let p = format!("/api/parameters/vhost-limits/{vh}/limits");
    assert_eq!(http(addr, "PUT", &p, GUEST, Some(&json!({"value": {"max-queues": 7}}))).await.status, 201);
    let want = json!({"value": {"max-queues": 7}, "vhost": vh, "component": "vhost-limits", "name": "limits"});
    assert_eq!(http(addr, "GET", &p, GUEST, None).await.json(), want);
    assert_eq!(http(addr, "PUT", &p, GUEST, Some(&json!({"value": {"max-queues": 1}}))).await.status, 204);
    let listed = http(addr, "GET", &format!("/api/parameters/vhost-limits/{vh}"), GUEST, None).await.json();
    assert_eq!(listed[0]["value"], json!({"max-queues": 1}), "{listed}");
    let all = http(addr, "GET", "/api/parameters", GUEST, None).await.json();
    assert!(all.as_array().unwrap().iter().any(|x| x["vhost"] == vh.as_str() && x["component"] == "vhost-limits"), "{all}");
    // ... and the broker enforces it: a second queue in the vhost is refused.
    let conn = timeout(lapin::Connection::connect(&b.uri_with_vhost(&vh), Default::default())).await.unwrap();
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.queue_declare("q1".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    let e = timeout(ch.queue_declare("q2".into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap_err();
    assert!(e.to_string().contains("queue limit in vhost"), "{e}");
    let _ = conn.close(200, "bye".into()).await;

    // RabbitMQ's refusals.
    let r = http(addr, "PUT", &p, GUEST, Some(&json!({"value": {"max-foo": 7}}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "Validation failed\n\nUnrecognised terms [{&lt;&lt;\"max-foo\"&gt;&gt;,7}] in limits\n"));
    let r = http(addr, "PUT", &p, GUEST, Some(&json!({"nothing": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "[{key_missing,value}]"));
    let r = http(addr, "PUT", "/api/parameters/vhost-limits/no-such-vhost/limits", GUEST, Some(&json!({"value": {"max-queues": 1}}))).await;
    assert_eq!((r.status, r.json()), (404, json!({"error": "not_found", "reason": "vhost_not_found"})));
    assert_eq!(http(addr, "GET", "/api/parameters/vhost-limits/no-such-vhost", GUEST, None).await.status, 404);

    // Clearing: 204, then 404.
    assert_eq!(http(addr, "DELETE", &p, GUEST, None).await.status, 204);
    assert_eq!(http(addr, "DELETE", &p, GUEST, None).await.status, 404);
    assert_eq!(http(addr, "GET", &p, GUEST, None).await.status, 404);

    // Only policymakers: others get RabbitMQ's 401.
    let mon = user(addr, "par-mon", "monitoring").await;
    let r = http(addr, "GET", "/api/parameters", Some((&mon, "pw")), None).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "User not authorised to access object"));
    http(addr, "DELETE", &format!("/api/users/{mon}"), GUEST, None).await;
    http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_policies_are_runtime_parameters_too() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "par-op").await;
    let p = format!("/api/parameters/operator_policy/{vh}/cap");
    let value = json!({"pattern": "^capped", "definition": {"max-length": 3}, "priority": 0, "apply-to": "queues"});
    assert_eq!(http(addr, "PUT", &p, GUEST, Some(&json!({"value": value}))).await.status, 201);
    let got = http(addr, "GET", &p, GUEST, None).await.json();
    assert_eq!(got, json!({"value": value, "vhost": vh, "component": "operator_policy", "name": "cap"}));
    let op = http(addr, "GET", &format!("/api/operator-policies/{vh}/cap"), GUEST, None).await;
    assert_eq!((op.status, op.json()["pattern"].clone()), (200, json!("^capped")));
    assert_eq!(http(addr, "DELETE", &p, GUEST, None).await.status, 204);
    assert_eq!(http(addr, "GET", &format!("/api/operator-policies/{vh}/cap"), GUEST, None).await.status, 404);
    http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_and_user_limits_resources() {
    let (b, addr) = start().await;
    let vh = vhost(addr, "lim-v").await;
    let mq = format!("/api/vhost-limits/{vh}/max-queues");
    assert_eq!(http(addr, "PUT", &mq, GUEST, Some(&json!({"value": 5}))).await.status, 204);
    let r = http(addr, "GET", &format!("/api/vhost-limits/{vh}"), GUEST, None).await;
    assert_eq!((r.status, r.json()), (200, json!([{"vhost": vh, "value": {"max-queues": 5}}])));
    let all = http(addr, "GET", "/api/vhost-limits", GUEST, None).await.json();
    assert!(all.as_array().unwrap().contains(&json!({"vhost": vh, "value": {"max-queues": 5}})), "{all}");
    assert_eq!(http(addr, "GET", &mq, GUEST, None).await.status, 405);
    let r = http(addr, "PUT", "/api/vhost-limits/no-such-vhost/max-queues", GUEST, Some(&json!({"value": 1}))).await;
    assert_eq!((r.status, r.json()), (404, json!({"error": "not_found", "reason": "vhost_not_found"})));
    assert_eq!(http(addr, "GET", "/api/vhost-limits/no-such-vhost", GUEST, None).await.status, 404);
    let r = http(addr, "PUT", &mq, GUEST, Some(&json!({"nope": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "[{key_missing,value}]"));
    if !b.is_external() {
        // RabbitMQ 3.10 answers these with a 500; Warren merges, clears and refuses.
        assert_eq!(http(addr, "PUT", &format!("/api/vhost-limits/{vh}/max-connections"), GUEST, Some(&json!({"value": 0}))).await.status, 204);
        let r = http(addr, "GET", &format!("/api/vhost-limits/{vh}"), GUEST, None).await;
        assert_eq!(r.json(), json!([{"vhost": vh, "value": {"max-connections": 0, "max-queues": 5}}]));
        // Enforced: max-connections 0 refuses every connection to the vhost.
        let e = timeout(lapin::Connection::connect(&b.uri_with_vhost(&vh), Default::default())).await.unwrap_err();
        assert!(e.to_string().contains("connection limit"), "{e}");
        assert_eq!(http(addr, "DELETE", &format!("/api/vhost-limits/{vh}/max-connections"), GUEST, None).await.status, 204);
        timeout(lapin::Connection::connect(&b.uri_with_vhost(&vh), Default::default())).await.unwrap().close(200, "bye".into()).await.unwrap();
        let r = http(addr, "PUT", &format!("/api/vhost-limits/{vh}/max-channels"), GUEST, Some(&json!({"value": 1}))).await;
        assert_eq!((r.status, reason(&r).as_str()), (400, "Validation failed\n\nUnrecognised terms [{&lt;&lt;\"max-channels\"&gt;&gt;,1}] in limits\n"));
        assert_eq!(http(addr, "DELETE", &mq, GUEST, None).await.status, 204);
        assert_eq!(http(addr, "GET", &format!("/api/vhost-limits/{vh}"), GUEST, None).await.json(), json!([]));
        assert_eq!(http(addr, "DELETE", &mq, GUEST, None).await.status, 204, "clearing a limit that is not set");
    }

    let u = user(addr, "lim-u", "").await;
    let base = format!("/api/user-limits/{u}");
    assert_eq!(http(addr, "PUT", &format!("{base}/max-channels"), GUEST, Some(&json!({"value": 5}))).await.status, 204);
    assert_eq!(http(addr, "PUT", &format!("{base}/max-connections"), GUEST, Some(&json!({"value": 3}))).await.status, 204);
    let r = http(addr, "GET", &base, GUEST, None).await;
    assert_eq!((r.status, r.json()), (200, json!([{"user": u, "value": {"max-channels": 5, "max-connections": 3}}])));
    assert!(http(addr, "GET", "/api/user-limits", GUEST, None).await.json().as_array().unwrap().iter().any(|x| x["user"] == u.as_str()));
    let r = http(addr, "PUT", &format!("{base}/max-queues"), GUEST, Some(&json!({"value": 3}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "Unrecognised terms [{<<\"max-queues\">>,3}] in user-limits"));
    let r = http(addr, "PUT", &format!("{base}/max-channels"), GUEST, Some(&json!({"value": "x"}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "max-channels should be a number, actually was <<\"x\">>"));
    assert_eq!(http(addr, "GET", "/api/user-limits/no-such-user", GUEST, None).await.status, 404);
    assert_eq!(http(addr, "GET", &format!("{base}/max-channels"), GUEST, None).await.status, 405);
    // Administrators only.
    let pm = user(addr, "lim-pm", "policymaker").await;
    let r = http(addr, "PUT", &format!("{base}/max-channels"), Some((&pm, "pw")), Some(&json!({"value": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "Not administrator user"));
    let r = http(addr, "PUT", &format!("/api/vhost-limits/{vh}/max-queues"), Some((&pm, "pw")), Some(&json!({"value": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "Not administrator user"));
    // Clearing one, then one that is not set: 204 both times.
    assert_eq!(http(addr, "DELETE", &format!("{base}/max-channels"), GUEST, None).await.status, 204);
    assert_eq!(http(addr, "GET", &base, GUEST, None).await.json(), json!([{"user": u, "value": {"max-connections": 3}}]));
    assert_eq!(http(addr, "DELETE", &format!("{base}/max-channels"), GUEST, None).await.status, 204);
    if !b.is_external() {
        // Enforced: max-connections 0 refuses the user's connections.
        assert_eq!(http(addr, "PUT", &format!("{base}/max-connections"), GUEST, Some(&json!({"value": 0}))).await.status, 204);
        let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
        assert_eq!(http(addr, "PUT", &format!("/api/permissions/%2F/{u}"), GUEST, Some(&all)).await.status, 201);
        let uri = b.uri_for(&u, "pw", "/");
        let e = timeout(lapin::Connection::connect(&uri, Default::default())).await.unwrap_err();
        assert!(e.to_string().contains("connection limit"), "{e}");
    }
    for who in [&u, &pm] {
        http(addr, "DELETE", &format!("/api/users/{who}"), GUEST, None).await;
    }
    http(addr, "DELETE", &format!("/api/vhosts/{vh}"), GUEST, None).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_parameters_set_read_and_clear() {
    let (b, addr) = start().await;
    let list = http(addr, "GET", "/api/global-parameters", GUEST, None).await;
    assert_eq!(list.status, 200);
    assert!(list.json().as_array().unwrap().iter().any(|p| p["name"] == "internal_cluster_id"), "{}", list.json());
    if b.is_external() {
        return;
    }
    let p = "/api/global-parameters/cluster_name";
    assert_eq!(http(addr, "GET", p, GUEST, None).await.status, 404);
    assert_eq!(http(addr, "PUT", p, GUEST, Some(&json!({"value": "rabbit-test-cluster"}))).await.status, 201);
    assert_eq!(http(addr, "GET", p, GUEST, None).await.json(), json!({"name": "cluster_name", "value": "rabbit-test-cluster"}));
    assert_eq!(http(addr, "GET", "/api/overview", GUEST, None).await.json()["cluster_name"], "rabbit-test-cluster");
    assert_eq!(http(addr, "PUT", p, GUEST, Some(&json!({"name": "cluster_name", "value": "other"}))).await.status, 204);
    let r = http(addr, "PUT", p, GUEST, Some(&json!({"nope": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "[{key_missing,value}]"));
    // A global parameter Warren has no use for is refused, not stored and ignored.
    let r = http(addr, "PUT", "/api/global-parameters/some-plugin-setting", GUEST, Some(&json!({"value": {"a": 1}}))).await;
    assert_eq!(r.status, 400);
    assert!(reason(&r).contains("not supported"), "{}", reason(&r));
    let mgmt = user(addr, "gp-m", "management").await;
    let r = http(addr, "GET", "/api/global-parameters", Some((&mgmt, "pw")), None).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "User not authorised to access object"));
    assert_eq!(http(addr, "DELETE", p, GUEST, None).await.status, 204);
    assert_eq!(http(addr, "DELETE", p, GUEST, None).await.status, 404);
    assert_eq!(http(addr, "GET", "/api/overview", GUEST, None).await.json()["cluster_name"], "warren@localhost");
    // PUT /api/cluster-name (administrators) sets the same parameter.
    assert_eq!(http(addr, "PUT", "/api/cluster-name", GUEST, Some(&json!({"name": "renamed"}))).await.status, 204);
    assert_eq!(http(addr, "GET", "/api/cluster-name", GUEST, None).await.json(), json!({"name": "renamed"}));
    assert_eq!(http(addr, "GET", p, GUEST, None).await.json()["value"], "renamed");
    let r = http(addr, "PUT", "/api/cluster-name", GUEST, Some(&json!({"nope": 1}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (400, "[{key_missing,name}]"));
    let pm = user(addr, "gp-pm", "policymaker").await;
    let r = http(addr, "PUT", "/api/cluster-name", Some((&pm, "pw")), Some(&json!({"name": "x"}))).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "Not administrator user"));
    assert_eq!(http(addr, "DELETE", "/api/cluster-name", GUEST, None).await.status, 405);
    assert_eq!(http(addr, "DELETE", p, GUEST, None).await.status, 204);

    // warrenctl, with rabbitmqctl 3.10's texts and exit codes.
    let out = b.ctl_ok(&["set_global_parameter", "cluster_name", "\"from-ctl\""]).await.unwrap();
    assert_eq!(out, "Setting global runtime parameter \"cluster_name\" to \"\"from-ctl\"\" ...\n");
    assert_eq!(http(addr, "GET", p, GUEST, None).await.json()["value"], "from-ctl");
    let out = b.ctl_ok(&["list_global_parameters"]).await.unwrap();
    assert!(out.starts_with("Listing global runtime parameters ...\nname\tvalue\ncluster_name\t\"from-ctl\"\n"), "{out}");
    let (code, _, err) = b.ctl(&["set_global_parameter", "cluster_name", "notjson"]).await.unwrap();
    assert_eq!((code, err.contains("JSON decoding error. Reason: badarg")), (69, true), "{err}");
    let out = b.ctl_ok(&["clear_global_parameter", "cluster_name"]).await.unwrap();
    assert_eq!(out, "Clearing global runtime parameter \"cluster_name\" ...\n");
    let (code, _, err) = b.ctl(&["clear_global_parameter", "cluster_name"]).await.unwrap();
    assert_eq!((code, err.contains("Parameter does not exist")), (69, true), "{err}");
    let (code, _, _) = b.ctl(&["clear_global_parameter"]).await.unwrap();
    assert_eq!(code, 64);
    b.stop().await;
}
