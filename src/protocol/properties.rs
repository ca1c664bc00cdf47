//! A message's basic properties, allocated only when the publisher set some.

use amq_protocol::protocol::basic::AMQPProperties;
use std::ops::Deref;
use std::sync::LazyLock;

/// The properties of a content header. Most messages set none: they all read one shared default
/// instead of each carrying a boxed copy (an allocation, a few hundred bytes zeroed, and a free
/// per message). Boxed when set, so that moving a header or message copies a pointer.
#[derive(Debug, Clone, Default)]
pub struct Properties(Option<Box<AMQPProperties>>);

static NONE_SET: LazyLock<AMQPProperties> = LazyLock::new(AMQPProperties::default);

impl Properties {
    pub fn new(p: AMQPProperties) -> Properties {
        Properties(Some(Box::new(p)))
    }
}

impl Deref for Properties {
    type Target = AMQPProperties;

    fn deref(&self) -> &AMQPProperties {
        self.0.as_deref().unwrap_or(&NONE_SET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_properties_read_as_the_defaults_and_set_ones_as_given() {
        let none = Properties::default();
        assert!(none.delivery_mode().is_none() && none.headers().is_none() && none.reply_to().is_none());
        let set = Properties::new(AMQPProperties::default().with_delivery_mode(2).with_priority(3));
        assert_eq!((*set.delivery_mode(), *set.priority()), (Some(2), Some(3)));
        let copy = set.clone();
        drop(set);
        assert_eq!(*copy.delivery_mode(), Some(2));
    }
}
