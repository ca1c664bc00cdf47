//! The queue class: declare, bind, unbind, purge, delete.

use super::{Channel, random_suffix, send, string_arg};
use crate::broker::QueueDecl;
use crate::broker::auth::Access;
use crate::broker::exchange::Destination;
use crate::connection::ConnCtx;
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused};
use crate::protocol::{AMQPClass, queue};
use std::sync::Arc;

impl Channel {
    pub(super) fn queue(&mut self, ctx: &mut ConnCtx, m: queue::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        let vhost = ctx.vhost.clone();
        match m {
            queue::AMQPMethod::Declare(d) if d.passive && d.queue.as_str() == crate::broker::reply_to::PSEUDO_QUEUE => {
                // Direct reply-to's pseudo-queue exists for passive declares (as RabbitMQ: 0, 1).
                if !d.nowait {
                    let ok = queue::DeclareOk { queue: d.queue, message_count: 0, consumer_count: 1 };
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)));
                }
                Ok(())
            }
            queue::AMQPMethod::Declare(d) => {
                let name = if d.queue.as_str().is_empty() && !d.passive {
                    format!("amq.gen-{}", random_suffix())
                } else if d.queue.as_str().is_empty() {
                    self.queue_name("")?
                } else {
                    d.queue.as_str().to_owned()
                };
                if !d.passive {
                    // As RabbitMQ: the reserved prefix first, then configure permission, then (for
                    // a new queue with a dead-letter exchange) read on it and write on the DLX.
                    if name.starts_with("amq.") && !d.queue.as_str().is_empty() {
                        return Err(access_refused(format!("queue name '{name}' contains reserved prefix 'amq.*'")));
                    }
                    self.check(ctx, Access::Configure, "queue", &name)?;
                    if vhost.queue(&name).is_none()
                        && let Some(dlx) = string_arg(&d.arguments, "x-dead-letter-exchange")
                    {
                        self.check(ctx, Access::Read, "queue", &name)?;
                        self.check(ctx, Access::Write, "exchange", &dlx)?;
                    }
                }
                let decl = QueueDecl {
                    name: &name,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                    owner: ctx.id,
                    server_named: d.queue.as_str().is_empty(),
                };
                let (q, messages, consumers) = vhost.declare_queue(&decl)?;
                if d.exclusive && !d.passive && !ctx.exclusive.iter().any(|x| Arc::ptr_eq(x, &q)) {
                    ctx.exclusive.push(q.clone());
                }
                self.last_queue = name.clone();
                if !d.nowait {
                    let ok = queue::DeclareOk { queue: name.as_str().into(), message_count: messages, consumer_count: consumers };
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)));
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                self.binding_checks(ctx, "queue", &name, b.exchange.as_str(), b.routing_key.as_str())?;
                let q = vhost.queue_for(&name, ctx.id)?;
                let x = vhost.exchange_or_404(b.exchange.as_str())?;
                vhost.bind(&x, Destination::Queue(q), b.routing_key.as_str(), &b.arguments)?;
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})));
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                self.binding_checks(ctx, "queue", &name, b.exchange.as_str(), b.routing_key.as_str())?;
                if let (Some(q), Some(x)) = (vhost.queue(&name), vhost.exchange(b.exchange.as_str())) {
                    vhost.check_exclusive(&q, ctx.id)?;
                    vhost.unbind(&x, &Destination::Queue(q), b.routing_key.as_str(), &b.arguments)?;
                }
                send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})));
                Ok(())
            }
            queue::AMQPMethod::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                self.check(ctx, Access::Read, "queue", &name)?;
                let q = vhost.queue_for(&name, ctx.id)?;
                let n = q.purge();
                if !p.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n })));
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?;
                self.check(ctx, Access::Configure, "queue", &name)?;
                let n = match vhost.queue(&name) {
                    None => 0,
                    Some(q) => {
                        vhost.check_exclusive(&q, ctx.id)?;
                        vhost.delete_queue(&q, d.if_unused, d.if_empty)?
                    }
                };
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n })));
                }
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected queue method")),
        }
    }
}
