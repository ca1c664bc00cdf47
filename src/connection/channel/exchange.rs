//! The exchange class: declare, delete, bind, unbind.

use super::{Channel, send, string_arg};
use crate::broker::ExchangeDecl;
use crate::broker::auth::Access;
use crate::broker::exchange::{Destination, Exchange};
use crate::connection::ConnCtx;
use crate::protocol::reply::{ErrorKind, ReplyError, access_refused};
use crate::protocol::{AMQPClass, exchange};
use std::sync::Arc;

impl Channel {
    pub(super) fn exchange(&mut self, ctx: &mut ConnCtx, m: exchange::AMQPMethod) -> Result<(), ReplyError> {
        let ch = self.number();
        let vhost = ctx.vhost.clone();
        match m {
            exchange::AMQPMethod::Declare(d) => {
                // RabbitMQ's order: type, default exchange, configure permission, then (for a new
                // exchange) the reserved prefix and the alternate exchange's permissions.
                // Passive declares need no permission.
                if !d.passive {
                    ctx.broker.exchange_type_or_error(d.kind.as_str())?;
                    if d.exchange.as_str().is_empty() {
                        return Err(access_refused("operation not permitted on the default exchange"));
                    }
                    self.check(ctx, Access::Configure, "exchange", d.exchange.as_str())?;
                    if vhost.exchange(d.exchange.as_str()).is_none()
                        && !d.exchange.as_str().starts_with("amq.")
                        && let Some(ae) = string_arg(&d.arguments, "alternate-exchange")
                    {
                        self.check(ctx, Access::Read, "exchange", d.exchange.as_str())?;
                        self.check(ctx, Access::Write, "exchange", &ae)?;
                    }
                }
                let decl = ExchangeDecl {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                };
                vhost.declare_exchange(&ctx.broker, &decl)?;
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Delete(d) => {
                let name = d.exchange.as_str();
                if !name.is_empty() && !name.starts_with("amq.") {
                    self.check(ctx, Access::Configure, "exchange", name)?;
                }
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                if !d.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Bind(b) => {
                let (src, dst) = self.e2e(ctx, b.source.as_str(), b.destination.as_str(), b.routing_key.as_str())?;
                vhost.bind(&src, Destination::Exchange(dst), b.routing_key.as_str(), &b.arguments)?;
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})));
                }
                Ok(())
            }
            exchange::AMQPMethod::Unbind(b) => {
                self.binding_checks(ctx, "exchange", b.destination.as_str(), b.source.as_str(), b.routing_key.as_str())?;
                if let (Some(src), Some(dst)) = (vhost.exchange(b.source.as_str()), vhost.exchange(b.destination.as_str())) {
                    vhost.unbind(&src, &Destination::Exchange(dst), b.routing_key.as_str(), &b.arguments)?;
                }
                if !b.nowait {
                    send(ctx, ch, AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})));
                }
                Ok(())
            }
            _ => Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected exchange method")),
        }
    }

    pub(super) fn e2e(&self, ctx: &ConnCtx, source: &str, dest: &str, routing_key: &str) -> Result<(Arc<Exchange>, Arc<Exchange>), ReplyError> {
        self.binding_checks(ctx, "exchange", dest, source, routing_key)?;
        let dst = ctx.vhost.exchange_or_404(dest)?;
        let src = ctx.vhost.exchange_or_404(source)?;
        Ok((src, dst))
    }

    /// RabbitMQ's `binding_action` checks, in its order: write on the destination, neither end the
    /// default exchange, read on the source, then (if the source exists and is a topic exchange)
    /// read on the topic `routing_key`. Existence is checked after these.
    pub(super) fn binding_checks(&self, ctx: &ConnCtx, dest_kind: &str, dest: &str, source: &str, routing_key: &str) -> Result<(), ReplyError> {
        self.check(ctx, Access::Write, dest_kind, dest)?;
        if source.is_empty() || (dest_kind == "exchange" && dest.is_empty()) {
            return Err(access_refused("operation not permitted on the default exchange"));
        }
        self.check(ctx, Access::Read, "exchange", source)?;
        match ctx.vhost.exchange(source) {
            Some(x) => self.check_topic(ctx, &x, routing_key, Access::Read),
            None => Ok(()),
        }
    }

}
