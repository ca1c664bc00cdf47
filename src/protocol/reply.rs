//! Reply codes (spec §1.9 constants) and the error type the channel and connection code raise.
//! The texts follow RabbitMQ: `NAME - explanation`.

use amq_protocol::types::ShortString;

/// The reply codes Warren sends, named as in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ContentTooLarge,
    NoRoute,
    NoConsumers,
    ConnectionForced,
    InvalidPath,
    AccessRefused,
    NotFound,
    ResourceLocked,
    PreconditionFailed,
    FrameError,
    SyntaxError,
    CommandInvalid,
    ChannelError,
    UnexpectedFrame,
    ResourceError,
    NotAllowed,
    NotImplemented,
    InternalError,
    /// 541 INTERNAL_ERROR reported on the channel only (RabbitMQ does this when a channel
    /// crashes; Warren when an exchange-type plugin fails during a publish).
    ChannelInternalError,
}

impl ErrorKind {
    pub fn code(self) -> u16 {
        use ErrorKind::*;
        match self {
            ContentTooLarge => 311,
            NoRoute => 312,
            NoConsumers => 313,
            ConnectionForced => 320,
            InvalidPath => 402,
            AccessRefused => 403,
            NotFound => 404,
            ResourceLocked => 405,
            PreconditionFailed => 406,
            FrameError => 501,
            SyntaxError => 502,
            CommandInvalid => 503,
            ChannelError => 504,
            UnexpectedFrame => 505,
            ResourceError => 506,
            NotAllowed => 530,
            NotImplemented => 540,
            InternalError | ChannelInternalError => 541,
        }
    }

    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            ContentTooLarge => "CONTENT_TOO_LARGE",
            NoRoute => "NO_ROUTE",
            NoConsumers => "NO_CONSUMERS",
            ConnectionForced => "CONNECTION_FORCED",
            InvalidPath => "INVALID_PATH",
            AccessRefused => "ACCESS_REFUSED",
            NotFound => "NOT_FOUND",
            ResourceLocked => "RESOURCE_LOCKED",
            PreconditionFailed => "PRECONDITION_FAILED",
            FrameError => "FRAME_ERROR",
            SyntaxError => "SYNTAX_ERROR",
            CommandInvalid => "COMMAND_INVALID",
            ChannelError => "CHANNEL_ERROR",
            UnexpectedFrame => "UNEXPECTED_FRAME",
            ResourceError => "RESOURCE_ERROR",
            NotAllowed => "NOT_ALLOWED",
            NotImplemented => "NOT_IMPLEMENTED",
            InternalError | ChannelInternalError => "INTERNAL_ERROR",
        }
    }

    /// Hard errors close the connection, soft ones only the channel (spec JSON `hard-error`).
    pub fn is_hard(self) -> bool {
        use ErrorKind::*;
        !matches!(
            self,
            ContentTooLarge
                | NoRoute
                | NoConsumers
                | AccessRefused
                | NotFound
                | ResourceLocked
                | PreconditionFailed
                | ChannelInternalError
        )
    }
}

/// An AMQP error to be reported with channel.close or connection.close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    pub kind: ErrorKind,
    /// Full reply text, `NAME - explanation`.
    pub text: String,
    /// Class and method of the offending method (0/0 if none).
    pub class_id: u16,
    pub method_id: u16,
}

impl ReplyError {
    pub fn new(kind: ErrorKind, explanation: impl AsRef<str>) -> ReplyError {
        let explanation = explanation.as_ref();
        let text = if explanation.is_empty() {
            kind.name().to_string()
        } else {
            format!("{} - {}", kind.name(), explanation)
        };
        ReplyError { kind, text, class_id: 0, method_id: 0 }
    }

    /// Sets the class/method of the offending method, unless one is already set.
    pub fn on(mut self, class_id: u16, method_id: u16) -> ReplyError {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    pub fn code(&self) -> u16 {
        self.kind.code()
    }

    /// The reply text as sent in channel.close / connection.close: a short string, so a text
    /// over 255 bytes is cut to 252 and ends in "..." as RabbitMQ does
    /// (`rabbit_binary_generator:amqp_exception_explanation`); the cut falls on a character
    /// boundary. The full text stays in `text` for the log.
    pub fn wire_text(&self) -> ShortString {
        ShortString::from(truncate_short(&self.text))
    }
}

/// `text` if it fits a short string, else its first 252 bytes (at a character boundary) + "...".
pub fn truncate_short(text: &str) -> String {
    if text.len() <= 255 {
        return text.to_string();
    }
    let mut cut = 252;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.code(), self.text)
    }
}

impl std::error::Error for ReplyError {}

/// Shorthands used all over the channel code.
pub fn not_found(what: &str, name: &str, vhost: &str) -> ReplyError {
    ReplyError::new(ErrorKind::NotFound, format!("no {what} '{name}' in vhost '{vhost}'"))
}

pub fn precondition(text: impl AsRef<str>) -> ReplyError {
    ReplyError::new(ErrorKind::PreconditionFailed, text)
}

pub fn access_refused(text: impl AsRef<str>) -> ReplyError {
    ReplyError::new(ErrorKind::AccessRefused, text)
}

pub fn not_implemented(text: impl AsRef<str>) -> ReplyError {
    ReplyError::new(ErrorKind::NotImplemented, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_rabbitmq() {
        let e = not_found("queue", "nope", "/");
        assert_eq!(e.text, "NOT_FOUND - no queue 'nope' in vhost '/'");
        assert_eq!(e.code(), 404);
        assert!(!e.kind.is_hard());
        assert!(ErrorKind::FrameError.is_hard());
        assert_eq!(ReplyError::new(ErrorKind::InternalError, "").text, "INTERNAL_ERROR");
    }

    #[test]
    fn long_texts_are_cut_like_rabbitmq() {
        let e = not_found("queue", &"q".repeat(240), "/");
        let wire = e.wire_text();
        assert_eq!(wire.as_str().len(), 255);
        assert!(wire.as_str().starts_with("NOT_FOUND - no queue 'qqq"));
        assert!(wire.as_str().ends_with("qqq..."));
        // A multi-byte character across byte 252 is not split.
        let t = format!("{}é{}", "a".repeat(251), "b".repeat(10));
        assert_eq!(truncate_short(&t), format!("{}...", "a".repeat(251)));
        assert_eq!(truncate_short("short"), "short");
    }
}
