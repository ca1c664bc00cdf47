//! The `[auth] backends` chain over real sockets: RabbitMQ's name for the internal backend, and
//! unknown backends refused at start rather than ignored. (The chain's order: unit tests in
//! `src/auth_backend.rs`.)
use crate::common;
use common::*;
use lapin::{Connection, ConnectionProperties};

async fn login(uri: &str) -> Result<Connection, lapin::Error> {
    timeout(Connection::connect(uri, ConnectionProperties::default())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_name_of_the_internal_backend_logs_in_and_refuses() {
    let b = TestBroker::start_with(|c| c.auth.backends = vec!["rabbit_auth_backend_internal".into()]).await;
    if b.is_external() {
        return;
    }
    let c = login(&b.uri()).await.expect("guest/guest accepted");
    let ch = confirm_channel(&c).await;
    publish_c(&ch, "", "nowhere", b"x", Default::default()).await;
    let bad = format!("amqp://guest:wrong@{}/%2f", b.addr());
    let e = login(&bad).await.unwrap_err();
    assert_eq!(
        amqp_error(&e).unwrap(),
        (403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.".into())
    );
}

#[tokio::test]
async fn unknown_backends_stop_the_broker_at_start() {
    for backends in [vec!["internal".to_string(), "warren_auth_backend_nope".into()], vec![]] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = warren::config::Config::for_tests(dir.path());
        cfg.auth.backends = backends.clone();
        let e = match timeout(warren::server::start(cfg)).await {
            Ok(_) => panic!("started with backends {backends:?}"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with("[auth] backends: "), "{e}");
        if !backends.is_empty() {
            assert_eq!(e, "[auth] backends: unknown backend 'warren_auth_backend_nope' (available: internal, warren_auth_backend_oauth2)");
        }
    }
}
