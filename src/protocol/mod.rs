//! AMQP 0-9-1 wire format. Pure: no I/O.
//!
//! Method types are generated from RabbitMQ's AMQP 0-9-1 spec JSON by the `amq-protocol` crate; this
//! module adds what a broker needs on top: incremental frame splitting on `bytes::Bytes` (content
//! bodies are never copied after they are read), frame writers, and the reply codes.

pub mod frame;
pub mod guard;
pub mod properties;
pub mod reply;
pub mod shortstr;

pub use amq_protocol::protocol::{
    AMQPClass, access, basic, channel, confirm, connection, exchange, queue, tx,
};
pub use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
pub use frame::{Frame, FrameError};
pub use properties::Properties;
pub use shortstr::ShortStr;
pub use reply::{ErrorKind, ReplyError};

/// Class id of `basic`, the only content class.
pub const CLASS_BASIC: u16 = 60;
