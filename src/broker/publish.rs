//! The publish pipeline: how a message enters the broker, whoever sends it.
//!
//! basic.publish and tx.commit (through the channel code), dead-lettering
//! ([`publish_dead_letter`]) and later the management API's publish all call [`publish`]: route (default exchange natively, otherwise
//! the exchange and its exchange-to-exchange bindings) → each destination queue enqueues and says
//! what it did ([`Enqueued`]) → the publisher hears back: basic.return for a mandatory message
//! that reached no queue, and its publisher confirm once every durable copy is on disk.
//! Permission checks and frame assembly stay with the caller (the edge); the caller gets a typed
//! [`Outcome`].

use super::Vhost;
use super::delivery::ChannelShared;
use super::exchange::Exchange;
use super::message::Message;
use super::persist;
use super::queue::{Enqueued, Queue};
use super::stats::Stat;
use crate::protocol::frame;
use crate::protocol::reply::{ErrorKind, ReplyError};
use crate::protocol::{AMQPClass, basic};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Who published, when it is a client channel: basic.return and the publisher confirm go there.
pub struct Publisher<'a> {
    pub channel: &'a Arc<ChannelShared>,
    /// The publish's confirm sequence number (confirm mode only).
    pub confirm: Option<u64>,
}

/// What became of one published message.
#[derive(Clone, Default)]
pub struct Outcome {
    /// Queues the message was enqueued on.
    pub routed: usize,
    /// It reached no queue and was mandatory: a basic.return went to the publisher.
    pub returned: bool,
    /// At least one copy went to the store; a confirm completes after the commit.
    pub stored: bool,
    /// A queue refused it (x-overflow reject-publish): the confirm is a nack.
    pub rejected: bool,
    /// A destination queue whose consumers are behind (publisher flow control, `flow.rs`):
    /// the publishing connection pauses its reader until it is relieved.
    pub flow: Option<Arc<Queue>>,
}

thread_local! {
    // Reused destination list: the pipeline allocates nothing per message in the common case.
    // Taken (not borrowed) while in use, so a nested publish (dead-lettering) simply gets a
    // fresh one.
    static QUEUES: RefCell<Vec<Arc<Queue>>> = const { RefCell::new(Vec::new()) };
}

/// Publishes `msg` to `exchange` (None: the default exchange, which routes by queue name). The
/// message comes shared already: the queues keep it as it is (built in place once, not moved
/// through the pipeline).
pub fn publish(
    vhost: &Vhost,
    exchange: Option<&Arc<Exchange>>,
    msg: Arc<Message>,
    mandatory: bool,
    from: Option<Publisher<'_>>,
) -> Result<Outcome, ReplyError> {
    // The publishing channel's reference is copied out, so counting costs a few relaxed
    // increments and nothing else.
    let client = from.as_ref().map(|p| (&**p.channel, p.confirm.is_some()));
    let r = publish_inner(vhost, exchange, msg, mandatory, from);
    if let Ok(o) = &r {
        count(vhost, exchange, client, o);
    }
    r
}

fn publish_inner(
    vhost: &Vhost,
    exchange: Option<&Arc<Exchange>>,
    msg: Arc<Message>,
    mandatory: bool,
    from: Option<Publisher<'_>>,
) -> Result<Outcome, ReplyError> {
    if exchange.is_none() {
        if msg.routing_key.starts_with(super::reply_to::PSEUDO_QUEUE) {
            return Ok(reply(vhost, msg, mandatory, from));
        }
        if msg.properties.headers().is_none() {
            // The default exchange and no CC/BCC: one queue at most, no list.
            let q = vhost.default_route(&msg.routing_key);
            return Ok(enqueue(msg, q.as_slice(), mandatory, from));
        }
    }
    let mut queues = QUEUES.with(|c| c.take());
    queues.clear();
    // CC/BCC: looked at only when the message has headers.
    let (extra, bcc) = if msg.properties.headers().is_some() { cc_keys(&msg) } else { (Vec::new(), false) };
    let msg = if bcc { Arc::new(without_header(&msg, "BCC")) } else { msg };
    let r = route(vhost, exchange, &msg, &extra, &mut queues).map(|()| enqueue(msg, &queues, mandatory, from));
    queues.clear();
    QUEUES.with(|c| c.replace(queues));
    r
}

/// The counters of one publish (relaxed atomic adds, see `stats.rs`; the broker's global
/// totals are sums of these): the exchange's `publish_in`/`publish_out`; the publishing
/// channel's `publish`, `publish_confirm` in confirm mode and, for a message no queue took,
/// `return_unroutable` (mandatory), `drop_unroutable`, or `publish_refused` when every
/// destination refused it.
fn count(vhost: &Vhost, exchange: Option<&Arc<Exchange>>, channel: Option<(&ChannelShared, bool)>, outcome: &Outcome) {
    exchange.map_or(&vhost.default_stats, |x| &x.stats).published(outcome.routed);
    let Some((ch, confirm)) = channel else { return };
    // Only the channel's own connection reader publishes on it: one writer.
    ch.stats.incr_owned(Stat::Publish);
    if confirm {
        ch.stats.incr_owned(Stat::PublishConfirm);
    }
    if outcome.routed == 0 {
        ch.stats.incr(if outcome.rejected {
            Stat::PublishRefused
        } else if outcome.returned {
            Stat::ReturnUnroutable
        } else {
            Stat::DropUnroutable
        });
    }
}

/// Publishes a dead-lettered message (no publisher to answer), leaving out the destination
/// queues `cycle` refuses.
pub fn publish_dead_letter(
    vhost: &Vhost,
    exchange: Option<&Arc<Exchange>>,
    msg: Message,
    extra_keys: &[String],
    cycle: &dyn Fn(&Queue) -> bool,
) -> Result<Outcome, ReplyError> {
    let mut queues = QUEUES.with(|c| c.take());
    queues.clear();
    let r = route(vhost, exchange, &msg, extra_keys, &mut queues).map(|()| {
        queues.retain(|q| !cycle(q));
        enqueue(Arc::new(msg), &queues, false, None)
    });
    queues.clear();
    QUEUES.with(|c| c.replace(queues));
    r
}

/// The routing keys of a message's `CC` and `BCC` headers (RabbitMQ's sender-selected
/// distribution), and whether it has a `BCC` (removed before delivery).
pub fn cc_keys(msg: &Message) -> (Vec<String>, bool) {
    let Some(h) = msg.properties.headers() else { return (Vec::new(), false) };
    let mut keys = Vec::new();
    let mut bcc = false;
    for name in ["CC", "BCC"] {
        if let Some(crate::protocol::AMQPValue::FieldArray(a)) = h.inner().get(name) {
            bcc |= name == "BCC";
            keys.extend(a.as_slice().iter().filter_map(super::queue_args::as_str));
        }
    }
    (keys, bcc)
}

/// Routes `msg` by its routing key, then by each of `extra` keys (CC/BCC, dead-letter keys).
fn route(vhost: &Vhost, exchange: Option<&Arc<Exchange>>, msg: &Message, extra: &[String], queues: &mut Vec<Arc<Queue>>) -> Result<(), ReplyError> {
    route_key(vhost, exchange, msg, queues)?;
    for key in extra {
        let copy = Message { exchange: msg.exchange.clone(), routing_key: key.as_str().into(), properties: msg.properties.clone(), header_raw: msg.header_raw.clone(), body: msg.body.clone() };
        route_key(vhost, exchange, &copy, queues)?;
    }
    Ok(())
}

fn route_key(vhost: &Vhost, exchange: Option<&Arc<Exchange>>, msg: &Message, queues: &mut Vec<Arc<Queue>>) -> Result<(), ReplyError> {
    match exchange {
        None => {
            if let Some(q) = vhost.default_route(&msg.routing_key)
                && !queues.iter().any(|x| Arc::ptr_eq(x, &q))
            {
                queues.push(q);
            }
            Ok(())
        }
        Some(x) => {
            let failed = |(name, kind, failure): (String, String, crate::exchange_type::TypeFailure)| {
                tracing::error!(exchange = %name, kind = %kind, "exchange type failed: {}", failure.0);
                ReplyError::new(
                    ErrorKind::ChannelInternalError,
                    format!("exchange type '{kind}' of exchange '{name}' in vhost '{}' failed: {}", vhost.name, failure.0),
                )
            };
            vhost.route(x, msg, queues).map_err(failed)?;
            // alternate-exchange: what the exchange could not route goes to its AE (and on to
            // the AE's AE), each exchange once. Looked up only for unroutable messages.
            let mut cur = x.clone();
            let mut seen: Vec<*const Exchange> = Vec::new();
            while queues.is_empty() {
                let Some(ae) = cur.alternate_exchange() else { break };
                let Some(ae) = vhost.exchange(&ae) else { break };
                if Arc::ptr_eq(&ae, x) || seen.contains(&Arc::as_ptr(&ae)) {
                    break;
                }
                seen.push(Arc::as_ptr(&ae));
                vhost.route(&ae, msg, queues).map_err(failed)?;
                cur = ae;
            }
            Ok(())
        }
    }
}

/// A copy of `msg` without header `key`.
pub fn without_header(msg: &Message, key: &str) -> Message {
    let mut kept = crate::protocol::FieldTable::default();
    for (k, v) in msg.properties.headers().iter().flat_map(|h| h.inner()) {
        if k.as_str() != key {
            kept.insert(k.clone(), v.clone());
        }
    }
    msg.with_headers(kept)
}

/// A direct reply-to reply: straight to the consuming channel, or unroutable.
fn reply(vhost: &Vhost, msg: Arc<Message>, mandatory: bool, from: Option<Publisher<'_>>) -> Outcome {
    let mut outcome = Outcome::default();
    if vhost.reply_to.deliver(&msg.routing_key, &msg) {
        outcome.routed = 1;
    } else if let (true, Some(p)) = (mandatory, &from) {
        write_return(p.channel, &msg);
        outcome.returned = true;
    }
    if let Some(Publisher { channel, confirm: Some(seq) }) = from {
        channel.confirms.complete(seq, true);
    }
    outcome
}

fn enqueue(msg: Arc<Message>, queues: &[Arc<Queue>], mandatory: bool, from: Option<Publisher<'_>>) -> Outcome {
    let mut outcome = Outcome::default();
    if queues.is_empty() {
        if let (true, Some(p)) = (mandatory, &from) {
            write_return(p.channel, &msg);
            outcome.returned = true;
        }
        if let Some(Publisher { channel, confirm: Some(seq) }) = from {
            channel.confirms.complete(seq, true);
        }
        return outcome;
    }
    let durable = queues.iter().filter(|q| q.stores(&msg)).count();
    let confirm = from.as_ref().and_then(|p| p.confirm.map(|seq| (seq, p.channel)));
    if durable == 0 {
        let mut rejected = false;
        for q in queues {
            match q.publish(msg.clone(), None) {
                Enqueued::Accepted | Enqueued::Stored => outcome.routed += 1,
                Enqueued::Rejected => rejected = true,
                Enqueued::Gone => {}
            }
            note_flow(&mut outcome, q);
        }
        outcome.rejected = rejected;
        if let Some((seq, channel)) = confirm {
            // A queue that refused it (x-overflow reject-publish) makes it a nack.
            channel.confirms.complete(seq, !rejected);
        }
        return outcome;
    }
    // A message that may expire carries its publish time, so recovery can restore its TTL.
    let may_expire = msg.properties.expiration().is_some() || queues.iter().any(|q| q.stores(&msg) && q.args().message_ttl.is_some());
    let record = persist::record(&msg, may_expire.then(super::ttl::now_ms));
    // One count per durable queue (its commit) plus one for the pipeline itself.
    let waiter = confirm.map(|(seq, channel)| Arc::new(ConfirmWait::new(seq, durable + 1, channel.clone())));
    for q in queues {
        let durable = q.stores(&msg);
        let r = if durable {
            let w = waiter.clone();
            q.publish(msg.clone(), Some((&record, Box::new(move |r| ConfirmWait::done(w, r)))))
        } else {
            q.publish(msg.clone(), None)
        };
        match r {
            Enqueued::Accepted => outcome.routed += 1,
            Enqueued::Stored => {
                outcome.routed += 1;
                outcome.stored = true;
            }
            Enqueued::Rejected => {
                outcome.rejected = true;
                if durable {
                    // Its commit will never come: count it down.
                    ConfirmWait::settle(waiter.clone(), false);
                }
            }
            Enqueued::Gone => {}
        }
        note_flow(&mut outcome, q);
    }
    // The pipeline's own count: the confirm cannot complete before every queue has answered.
    ConfirmWait::settle(waiter, !outcome.rejected);
    outcome
}

/// Publisher flow control: the first destination that is over its limit once this message is
/// in (one atomic load per queue) pauses the publishing connection.
fn note_flow(outcome: &mut Outcome, q: &Arc<Queue>) {
    if outcome.flow.is_none() && q.flow.is_over() {
        outcome.flow = Some(q.clone());
    }
}

/// basic.return 312 NO_ROUTE with the message's properties and body.
fn write_return(channel: &ChannelShared, msg: &Message) {
    let (ch, conn) = (channel.number, &channel.conn);
    let frame_max = conn.frame_max();
    let m = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
        reply_code: 312,
        reply_text: "NO_ROUTE".into(),
        exchange: msg.exchange.as_str().into(),
        routing_key: msg.routing_key.as_str().into(),
    }));
    conn.append(|out| {
        frame::write_method(out, ch, m);
        frame::write_header_raw(out, ch, &msg.header_raw);
        if !msg.body.is_empty() {
            frame::write_body(out, ch, &msg.body, frame_max);
        }
    });
}

/// Counts down the store commits of one confirmed publish (one per durable queue it went to),
/// then completes its confirm.
struct ConfirmWait {
    seq: u64,
    left: AtomicUsize,
    ok: AtomicBool,
    channel: Arc<ChannelShared>,
}

impl ConfirmWait {
    fn new(seq: u64, n: usize, channel: Arc<ChannelShared>) -> ConfirmWait {
        ConfirmWait { seq, left: n.into(), ok: true.into(), channel }
    }

    /// Runs on the store's writer thread after the commit (or at once for a queue deleted
    /// meanwhile).
    fn done(w: Option<Arc<ConfirmWait>>, r: Result<(), crate::store::StoreError>) {
        Self::settle(w, r.is_ok());
    }

    /// Counts down one answer (`ok` false: the confirm will be a nack).
    fn settle(w: Option<Arc<ConfirmWait>>, ok: bool) {
        let Some(w) = w else { return };
        if !ok {
            w.ok.store(false, Ordering::Relaxed);
        }
        if w.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            w.channel.confirms.complete(w.seq, w.ok.load(Ordering::Relaxed));
            super::confirm::Confirms::flush_soon(&w.channel);
        }
    }
}
