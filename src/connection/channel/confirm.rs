//! The confirm class: confirm.select, and the batched publisher confirms of a channel.

use super::{Channel, send};
use crate::connection::ConnCtx;
use crate::protocol::reply::{ErrorKind, ReplyError, precondition};
use crate::protocol::{AMQPClass, confirm};

impl Channel {
    pub(super) fn confirm(&mut self, ctx: &mut ConnCtx, m: confirm::AMQPMethod) -> Result<(), ReplyError> {
        let confirm::AMQPMethod::Select(s) = m else {
            return Err(ReplyError::new(ErrorKind::CommandInvalid, "unexpected confirm method"));
        };
        if self.tx.is_some() {
            return Err(precondition("cannot switch from tx to confirm mode"));
        }
        self.confirm = true;
        self.shared.info.mode.store(crate::broker::delivery::ChannelInfo::CONFIRM, std::sync::atomic::Ordering::Relaxed);
        if !s.nowait {
            send(ctx, self.number(), AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
        }
        Ok(())
    }

    /// Sends the pending publisher confirms as one ack with multiple=true.
    pub fn flush_confirms(&mut self, ctx: &ConnCtx) {
        if self.confirm && !self.closing {
            self.shared.confirms.flush(&ctx.conn, self.number());
        }
    }
}
