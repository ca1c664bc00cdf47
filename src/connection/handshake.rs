//! connection.start / start-ok (SASL PLAIN, AMQPLAIN, EXTERNAL) / tune / tune-ok / open.

use crate::broker::outbound::ConnShared;
use crate::auth_backend::{AuthUser, Credentials};
use crate::broker::{Broker, Vhost};
use crate::protocol::frame::{self, FRAME_MIN_SIZE, Frame, parse_frame};
use crate::protocol::reply::{ErrorKind, ReplyError};
use crate::protocol::{AMQPClass, AMQPValue, FieldTable, LongString, connection};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use super::transport::{Reader, Writer};
use crate::tls::PeerTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::warn;

pub(super) struct Handshake {
    pub user: String,
    /// The user as accepted by an auth backend, which answers its permission checks.
    pub auth: AuthUser,
    pub vhost: Arc<Vhost>,
    pub heartbeat: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub cancel_notify: bool,
    /// The client takes connection.blocked / unblocked (capability `connection.blocked`).
    pub blocked_notify: bool,
    /// The client's start-ok properties (product, version, `connection_name`, capabilities...).
    pub client_properties: FieldTable,
    /// The SASL mechanism of the login (`auth_mechanism`).
    pub mechanism: String,
}

/// Warren's own version, in `warren_version`, `platform` and `information`.
const WARREN: &str = env!("CARGO_PKG_VERSION");
/// The RabbitMQ release whose behaviour Warren reproduces. Advertised as product "RabbitMQ" with
/// this version, as browsers keep "Mozilla" in their user agent: client libraries pick
/// RabbitMQ's semantics from it (kombu/celery apply basic.qos `global` as RabbitMQ ≥ 3.3 does only
/// when product is "RabbitMQ"; otherwise their prefetch increases for ETA tasks never reach the
/// consumer). Warren identifies itself in `warren_version`, `platform` and `information`.
pub const RABBITMQ_COMPAT: &str = "3.10.8";

/// The server properties of connection.start (keys are sorted on the wire, as RabbitMQ's).
pub fn server_properties(broker: &Broker) -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(v.into());
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p.insert("cluster_name".into(), s(&broker.cluster_name()));
    p.insert("copyright".into(), s("Copyright (c) the Warren developers"));
    p.insert(
        "information".into(),
        s(&format!("Warren {WARREN}: an AMQP 0-9-1 broker with WebAssembly plugins, compatible with RabbitMQ {RABBITMQ_COMPAT}. Licensed under the MPL 2.0")),
    );
    p.insert("platform".into(), s(&format!("Warren {WARREN} (Rust)")));
    p.insert("product".into(), s("RabbitMQ"));
    p.insert("version".into(), s(RABBITMQ_COMPAT));
    p.insert("warren_version".into(), s(WARREN));
    p
}

async fn send(wr: &mut Writer, m: AMQPClass) -> Result<(), ()> {
    let mut out = BytesMut::new();
    frame::write_method(&mut out, 0, m);
    wr.write_all(&out).await.map_err(|_| ())?;
    wr.flush().await.map_err(|_| ())
}

/// Reads the next method on channel 0 (heartbeats are skipped).
async fn next_method(
    rd: &mut Reader,
    wr: &mut Writer,
    buf: &mut BytesMut,
    frame_max: u32,
) -> Result<AMQPClass, ()> {
    loop {
        match parse_frame(buf, frame_max) {
            Ok(Some(Frame::Method { channel: 0, method })) => return Ok(method),
            Ok(Some(Frame::Heartbeat { .. })) => continue,
            // A frame that cannot be decoded: connection.close with the frame error, then drop.
            Err(e) => {
                close(wr, super::frame_error(e)).await;
                return Err(());
            }
            // Any other frame during the handshake is a protocol violation: drop the socket.
            Ok(Some(_)) => return Err(()),
            Ok(None) => {}
        }
        if rd.read_buf(buf).await.map_err(|_| ())? == 0 {
            return Err(());
        }
    }
}

async fn close(wr: &mut Writer, err: ReplyError) {
    let m = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: err.code(),
        reply_text: err.wire_text(),
        class_id: err.class_id,
        method_id: err.method_id,
    }));
    let _ = send(wr, m).await;
}

/// Credentials from a SASL response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            Some((String::from_utf8(user.to_vec()).ok()?, String::from_utf8(pass.to_vec()).ok()?))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            let (_, table) = amq_protocol::types::parsing::parse_field_table(&framed[..]).ok()?;
            let get = |k: &str| match table.inner().get(k)? {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
                AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

fn client_capability(props: &FieldTable, name: &str) -> bool {
    match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => matches!(t.inner().get(name), Some(AMQPValue::Boolean(true))),
        _ => false,
    }
}

pub(super) async fn run(
    broker: &Arc<Broker>,
    conn: &Arc<ConnShared>,
    rd: &mut Reader,
    wr: &mut Writer,
    buf: &mut BytesMut,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    tls: Option<&PeerTls>,
) -> Result<Handshake, ()> {
    let cfg = &broker.config.amqp;
    let offered = mechanisms(&broker.config.auth.mechanisms, tls.is_some());
    let start = AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(broker),
        mechanisms: LongString::from(offered.join(" ")),
        locales: LongString::from("en_US"),
    }));
    send(wr, start).await?;

    let AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)) = next_method(rd, wr, buf, cfg.frame_max).await? else {
        return Err(());
    };
    let mechanism = start_ok.mechanism.as_str().to_owned();
    if !offered.contains(&mechanism.as_str()) {
        warn!(peer = %peer, "unsupported mechanism or malformed response ({mechanism})");
        return Err(());
    }
    let failure_close = client_capability(&start_ok.client_properties, "authentication_failure_close");
    let cancel_notify = client_capability(&start_ok.client_properties, "consumer_cancel_notify");
    let blocked_notify = client_capability(&start_ok.client_properties, "connection.blocked");
    let client_properties = start_ok.client_properties.clone();
    // SASL EXTERNAL (rabbitmq_auth_mechanism_ssl): the name comes from the client certificate and
    // the backends are asked for that user without a password.
    let login = if mechanism == "EXTERNAL" {
        match tls.map(|t| &t.login) {
            Some(Ok(name)) => Ok((name.clone(), broker.auth.login_external(name, peer))),
            Some(Err(why)) => Err(*why),
            None => Err("not SSL connection"),
        }
    } else {
        match credentials(&mechanism, start_ok.response.as_bytes()) {
            // The `[auth] backends` chain: the first backend that accepts wins.
            Some((user, pass)) => Ok((user.clone(), broker.auth.login(&Credentials { username: &user, password: &pass, peer }))),
            None => {
                warn!(peer = %peer, "unsupported mechanism or malformed response ({mechanism})");
                return Err(());
            }
        }
    };
    let (user, login) = match login {
        Ok(l) => l,
        Err(why) => (String::new(), Err(vec![why.to_string()])),
    };
    let loopback_ok = !broker.config.auth.loopback_users.contains(&user) || local.is_some_and(|a| a.ip().is_loopback());
    if login.is_err() || !loopback_ok {
        if let Err(refusals) = &login {
            for why in refusals {
                warn!(peer = %peer, "{mechanism} login refused: {why}");
            }
        } else {
            warn!(peer = %peer, "{mechanism} login refused: user '{user}' can only connect via localhost");
        }
        if failure_close {
            close(
                wr,
                ReplyError::new(
                    ErrorKind::AccessRefused,
                    format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
                ),
            )
            .await;
        }
        return Err(());
    }
    let Ok(auth) = login else { return Err(()) };
    // The name the backend gave (a token backend takes it from the token), as RabbitMQ.
    let user = auth.username.clone();

    let tune = AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
        channel_max: cfg.channel_max,
        frame_max: cfg.frame_max,
        heartbeat: cfg.heartbeat,
    }));
    send(wr, tune).await?;
    let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) = next_method(rd, wr, buf, cfg.frame_max).await? else {
        return Err(());
    };
    // 0 means "no limit" from the client: take ours.
    let frame_max = if t.frame_max == 0 { cfg.frame_max } else { t.frame_max };
    let channel_max = if t.channel_max == 0 { cfg.channel_max } else { t.channel_max };
    // A channel_max of 0 in the config is "no limit" (RabbitMQ's `channel_max = 0`): any value
    // the client asks for stands.
    if frame_max < FRAME_MIN_SIZE || frame_max > cfg.frame_max || (cfg.channel_max != 0 && channel_max > cfg.channel_max) {
        warn!(peer = %peer, "negotiated frame_max = {} / channel_max = {} out of range", t.frame_max, t.channel_max);
        return Err(());
    }
    conn.set_frame_max(frame_max);

    let AMQPClass::Connection(connection::AMQPMethod::Open(open)) = next_method(rd, wr, buf, frame_max).await? else {
        return Err(());
    };
    let vhost_name = open.virtual_host.as_str();
    let Some(vhost) = broker.vhost(vhost_name) else {
        close(wr, ReplyError::new(ErrorKind::NotAllowed, format!("vhost {vhost_name} not found")).on(10, 40)).await;
        return Err(());
    };
    let decision = auth.backend.check_vhost(&auth, vhost_name, peer);
    if !decision.allowed() {
        let text = decision.refusal_text(format!("access to vhost '{vhost_name}' refused for user '{}'", auth.username), auth.backend.name());
        close(wr, ReplyError::new(ErrorKind::NotAllowed, text).on(10, 40)).await;
        return Err(());
    }
    if let Err(e) = broker.check_connection_limits(vhost_name, &user) {
        warn!(peer = %peer, "{}", e.text);
        close(wr, e).await;
        return Err(());
    }
    send(wr, AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {}))).await?;
    Ok(Handshake { user, auth, vhost, heartbeat: t.heartbeat, frame_max, channel_max, cancel_notify, blocked_notify, client_properties, mechanism })
}

/// The mechanisms offered in connection.start, in `[auth] mechanisms` order: EXTERNAL only on
/// TLS connections (RabbitMQ offers it there even without a client certificate, so a client
/// that tries it is refused with a reason rather than failing to negotiate).
fn mechanisms(configured: &[String], tls: bool) -> Vec<&str> {
    configured.iter().map(String::as_str).filter(|m| *m != "EXTERNAL" || tls).collect()
}

/// The SASL mechanisms Warren implements (`[auth] mechanisms` may list these only).
pub const MECHANISMS: [&str; 3] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_and_amqplain() {
        assert_eq!(credentials("PLAIN", b"\0guest\0guest"), Some(("guest".into(), "guest".into())));
        // AMQPLAIN: LOGIN (longstr) and PASSWORD (longstr), table body without length.
        let mut body = Vec::new();
        for (k, v) in [("LOGIN", "bob"), ("PASSWORD", "pw")] {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.push(b'S');
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        assert_eq!(credentials("AMQPLAIN", &body), Some(("bob".into(), "pw".into())));
        assert_eq!(credentials("EXTERNAL", b""), None);
    }
}
