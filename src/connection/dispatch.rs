//! What a connection does with each frame: connection-class methods (close, update-secret),
//! channel open/close and the channel methods, content frames, and the close that an error
//! leads to (channel-level or the whole connection, with RabbitMQ's codes and texts).

use super::*;

impl Connection {
    pub(super) fn handle(&mut self, f: Frame) -> Result<(), Stop> {
        if self.closing {
            // After connection.close only close-ok (or a crossing close) matters.
            if let Frame::Method { channel: 0, method } = f {
                match method {
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => return Err(Stop::Done),
                    AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                        self.send_close_ok();
                        return Err(Stop::Done);
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match f {
            Frame::Heartbeat { channel: 0 } => Ok(()),
            Frame::Heartbeat { .. } => {
                self.hard_close(ReplyError::new(ErrorKind::UnexpectedFrame, "type 8, all octets = <<>>"));
                Ok(())
            }
            Frame::Method { channel: 0, method } => self.connection_method(method),
            Frame::Method { channel, method } => {
                self.channel_method(channel, method);
                Ok(())
            }
            Frame::Publish { channel, publish } => {
                self.channel_publish(channel, publish, None);
                Ok(())
            }
            Frame::Header { channel: 0, header } => {
                let text = format!("type 2, {}", frame::payload_snippet(&header.raw));
                self.hard_close(ReplyError::new(ErrorKind::UnexpectedFrame, text));
                Ok(())
            }
            Frame::Body { channel: 0, payload } => {
                let text = format!("type 3, {}", frame::payload_snippet(&payload));
                self.hard_close(ReplyError::new(ErrorKind::UnexpectedFrame, text));
                Ok(())
            }
            Frame::Header { channel, header } => {
                let r = match self.channels.get_mut(&channel) {
                    Some(ch) => ch.on_header(&mut self.ctx, header, self.max_message_size),
                    None => Err(ReplyError::new(ErrorKind::ChannelError, format!("unknown channel {channel}")).on(60, 40)),
                };
                self.after_channel_result(channel, r);
                Ok(())
            }
            Frame::Body { channel, payload } => {
                let r = match self.channels.get_mut(&channel) {
                    Some(ch) => ch.on_body(&mut self.ctx, payload),
                    None => Err(ReplyError::new(ErrorKind::ChannelError, format!("unknown channel {channel}")).on(60, 40)),
                };
                self.after_channel_result(channel, r);
                Ok(())
            }
        }
    }

    pub(super) fn send_close_ok(&self) {
        let m = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
        self.ctx.conn.append(|out| frame::write_method(out, 0, m));
    }

    pub(super) fn connection_method(&mut self, m: AMQPClass) -> Result<(), Stop> {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(conn = self.ctx.id, code = c.reply_code, "client closed connection: {}", c.reply_text.as_str());
                // Exclusive queues are gone by the time the client sees close-ok (as in RabbitMQ).
                self.close_channels();
                self.drop_exclusive_queues();
                self.send_close_ok();
                Err(Stop::Done)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Err(Stop::Done),
            AMQPClass::Connection(connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_)) => Ok(()),
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(u)) => {
                self.update_secret(u);
                Ok(())
            }
            other => {
                let (c, mth) = (other.get_amqp_class_id(), other.get_amqp_method_id());
                self.hard_close(ReplyError::new(ErrorKind::ChannelError, "unexpected method in connection state running").on(c, mth));
                Ok(())
            }
        }
    }

    /// `connection.update-secret` (RabbitMQ's `rabbit_reader`): the backend that accepted the
    /// login checks the new secret; the user keeps its name, and its tags, backend state and
    /// expiry are replaced; every channel's permission cache starts afresh. A refusal closes the
    /// connection with 530 NOT_ALLOWED.
    pub(super) fn update_secret(&mut self, u: connection::UpdateSecret) {
        let secret = String::from_utf8_lossy(u.new_secret.as_bytes()).into_owned();
        let reason = u.reason.as_str();
        let name = self.label.name.clone();
        tracing::debug!("connection {name} of user '{}': asked to update secret, reason: {reason}", self.ctx.user);
        match self.ctx.auth.backend.update_secret(&self.ctx.auth, &secret) {
            Ok(mut user) => {
                user.username = self.ctx.auth.username.clone();
                self.ctx.auth = user;
                self.ctx.auth_gen += 1;
                let ok = AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(connection::UpdateSecretOk {}));
                self.ctx.conn.append(|out| frame::write_method(out, 0, ok));
                info!("connection {name}: user '{}' updated secret, reason: {reason}", self.ctx.user);
            }
            Err(why) => {
                tracing::error!("Secret update was refused for user '{}': {why}", self.ctx.user);
                self.hard_close(
                    ReplyError::new(ErrorKind::NotAllowed, "New secret was refused by one of the backends").on(10, 70),
                );
            }
        }
    }

    pub(super) fn channel_method(&mut self, number: u16, m: AMQPClass) {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        if let AMQPClass::Channel(chan::AMQPMethod::Open(_)) = m {
            if self.channels.contains_key(&number) {
                self.hard_close_on(number, ReplyError::new(ErrorKind::ChannelError, "second 'channel.open' seen").on(20, 10));
                return;
            }
            // As RabbitMQ: channel_max limits how many are open, not their numbers.
            if self.channel_max > 0 && self.channels.len() >= self.channel_max as usize {
                let n = self.channels.len();
                self.hard_close(
                    ReplyError::new(
                        ErrorKind::NotAllowed,
                        format!("number of channels opened ({n}) has reached the negotiated channel_max ({})", self.channel_max),
                    ),
                );
                return;
            }
            if let Err(e) = self.ctx.broker.check_channel_limit(&self.ctx.user) {
                self.hard_close(e);
                return;
            }
            let ch = Channel::new(number, self.ctx.conn.clone());
            self.channel_list.lock().insert(number, ch.shared().clone());
            self.channels.insert(number, ch);
            counters::bump(&self.ctx.broker.counters.channels_opened);
            self.count_channels();
            let ok = AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {}));
            self.ctx.conn.append(|out| frame::write_method(out, number, ok));
            return;
        }
        let Some(ch) = self.channels.get_mut(&number) else {
            self.hard_close_on(number, ReplyError::new(ErrorKind::ChannelError, "expected 'channel.open'").on(class_id, method_id));
            return;
        };
        match m {
            AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => {
                if ch.is_closing() {
                    self.channels.remove(&number);
                    self.unregister_channel(number);
                    self.count_channels();
                }
                return;
            }
            AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                let mut ch = self.channels.remove(&number).expect("present");
                self.unregister_channel(number);
                self.count_channels();
                ch.close(&mut self.ctx);
                let ok = AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {}));
                self.ctx.conn.append(|out| frame::write_method(out, number, ok));
                return;
            }
            _ => {}
        }
        if ch.is_closing() {
            return;
        }
        let r = ch.on_method(&mut self.ctx, m).map_err(|e| e.on(class_id, method_id));
        self.after_channel_result(number, r);
    }

    /// basic.publish (`Frame::Publish`): as `channel_method` takes a method other than
    /// channel.open/close/close-ok; with `content` (its header and body, taken from the buffer
    /// with it by `frame::take_content`), as the three frames one after the other would be: the
    /// first error ends it (the channel or the connection is then closing and would ignore the
    /// content frames that follow).
    pub(super) fn channel_publish(&mut self, number: u16, p: frame::Publish, content: Option<(frame::ContentHeader, Option<bytes::Bytes>)>) {
        let Some(ch) = self.channels.get_mut(&number) else {
            self.hard_close_on(number, ReplyError::new(ErrorKind::ChannelError, "expected 'channel.open'").on(60, 40));
            return;
        };
        if ch.is_closing() {
            return;
        }
        let r = match content {
            None => ch.on_publish(p).map_err(|e| e.on(60, 40)),
            Some((header, body)) => ch.on_publish_whole(&mut self.ctx, p, header, body, self.max_message_size),
        };
        self.after_channel_result(number, r);
    }

    /// Turns a channel method's error into channel.close (soft) or connection.close (hard).
    pub(super) fn after_channel_result(&mut self, number: u16, r: Result<(), ReplyError>) {
        let Err(err) = r else { return };
        if err.kind.is_hard() {
            self.hard_close_on(number, err);
            return;
        }
        if let Some(ch) = self.channels.get_mut(&number) {
            if ch.is_closing() {
                return;
            }
            tracing::error!("{}", errlog::channel_error(&self.label, number, &err));
            ch.close(&mut self.ctx);
            ch.set_closing();
            let m = AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
                reply_code: err.code(),
                reply_text: err.wire_text(),
                class_id: err.class_id,
                method_id: err.method_id,
            }));
            self.ctx.conn.append(|out| frame::write_method(out, number, m));
        }
    }
}

pub(super) fn frame_error(e: FrameError) -> ReplyError {
    match e {
        FrameError::UnknownMethod { class_id, method_id } => {
            ReplyError::new(ErrorKind::CommandInvalid, format!("unknown method {class_id}/{method_id}")).on(class_id, method_id)
        }
        FrameError::NotImplemented { class_id, method_id, text } => {
            ReplyError::new(ErrorKind::NotImplemented, text).on(class_id, method_id)
        }
        FrameError::Malformed { class_id, method_id, what, .. } => {
            ReplyError::new(ErrorKind::FrameError, format!("cannot decode {what}")).on(class_id, method_id)
        }
        FrameError::TooDeep { class_id, method_id, what, .. } => ReplyError::new(
            ErrorKind::FrameError,
            format!("cannot decode {what}: field tables nested deeper than {} levels", crate::protocol::guard::MAX_NESTING),
        )
        .on(class_id, method_id),
        other => ReplyError::new(ErrorKind::FrameError, other.to_string()),
    }
}
