//! Exchange types (world `exchange-type`): RabbitMQ's `rabbit_exchange_type` contract.
//!
//! Implement [`ExchangeType`] (`describe` and `route` are required, the rest has defaults) and
//! export it with [`crate::export_exchange_type!`]. The broker makes one Wasm instance per
//! exchange, and the macro keeps one value of your type (made with `Default`) per instance: the
//! value is the state of one exchange.
//!
//! Bindings: by default the SDK keeps them for you in a [`Bindings`] list, handed to `route`.
//! A type with an index of its own (a hash map, a trie) overrides `add_binding` and
//! `remove_binding`, keeps the bindings in `self` and leaves the list empty.

pub use crate::bindings::exchange_type::warren::plugin::types::{BasicProperties, FieldValue};
pub use crate::bindings::exchange_type::{Binding, DestinationId, FieldTable, Info, MessageView, RoutingInputs};
pub use crate::{DestSet, topic_words};

/// An exchange type. Each method is the WIT export of the same name (see
/// `wit/exchange-type.wit`), with the same arguments; the methods of one exchange take `self`.
pub trait ExchangeType: Default + 'static {
    /// Name (the type used in `exchange.declare`), description, what `route` reads and whether it
    /// is deterministic. Called once when the plugin is loaded; must not depend on state.
    fn describe() -> Info;

    /// Checks the arguments of an `exchange.declare`; `Err(text)` refuses it with
    /// 406 PRECONDITION_FAILED and `text`. Runs on a scratch instance: keep no state.
    /// Default: every argument is accepted.
    fn validate(arguments: FieldTable) -> Result<(), String> {
        let _ = arguments;
        Ok(())
    }

    /// This instance now serves the exchange `exchange` ("vhost:name") declared with
    /// `arguments` (accepted by `validate`); called before any binding is added (again after a
    /// trap or a reload, before the bindings are replayed). `Ok(Some(reads))` narrows
    /// `describe().reads` for this exchange. Default: `Ok(None)`.
    fn create_exchange(&mut self, exchange: String, arguments: FieldTable) -> Result<Option<RoutingInputs>, String> {
        let _ = (exchange, arguments);
        Ok(None)
    }

    /// The exchange is being deleted; the instance is dropped afterwards. Default: nothing.
    fn delete_exchange(&mut self) {}

    /// Checks a binding before it is added; `Err(text)` refuses the bind with
    /// 406 PRECONDITION_FAILED and `text`. Must not change state. Default: accepted.
    fn validate_binding(&self, binding: Binding) -> Result<(), String> {
        let _ = binding;
        Ok(())
    }

    /// Adds a binding (already validated). The same binding may be added more than once; each
    /// add is matched by one remove. Default: appended to `store`, the list `route` receives.
    fn add_binding(&mut self, binding: Binding, store: &mut Bindings) -> Result<(), String> {
        store.add(binding);
        Ok(())
    }

    /// Removes one binding equal to `binding`; false if there was none. Default: from `store`.
    fn remove_binding(&mut self, binding: Binding, store: &mut Bindings) -> bool {
        store.remove(&binding)
    }

    /// The destinations of one message, in any order (duplicates allowed: the host removes
    /// them). `bindings` is the list kept by the default `add_binding`/`remove_binding`.
    fn route(&self, msg: MessageView, bindings: &Bindings) -> Vec<DestinationId>;

    /// Routes several messages: element i answers `msgs[i]`. Default: `route` for each.
    fn route_batch(&self, msgs: Vec<MessageView>, bindings: &Bindings) -> Vec<Vec<DestinationId>> {
        msgs.into_iter().map(|m| self.route(m, bindings)).collect()
    }
}

/// The bindings of one exchange, as the default `add_binding`/`remove_binding` keep them: in the
/// order added, a binding added twice is there twice.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    list: Vec<Binding>,
}

impl Bindings {
    /// Appends a binding.
    pub fn add(&mut self, binding: Binding) {
        self.list.push(binding);
    }

    /// Removes one binding equal to `binding` (destination, key and arguments); false if there
    /// was none.
    pub fn remove(&mut self, binding: &Binding) -> bool {
        match self.list.iter().position(|b| b == binding) {
            Some(i) => {
                self.list.remove(i);
                true
            }
            None => false,
        }
    }

    /// The bindings, in the order added.
    pub fn iter(&self) -> std::slice::Iter<'_, Binding> {
        self.list.iter()
    }

    /// The destination of every binding (a destination bound twice comes twice).
    pub fn destinations(&self) -> impl Iterator<Item = DestinationId> + '_ {
        self.list.iter().map(|b| b.destination)
    }

    /// How many bindings there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No binding.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<'a> IntoIterator for &'a Bindings {
    type Item = &'a Binding;
    type IntoIter = std::slice::Iter<'a, Binding>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// The value of the argument or header `name` in a field table.
pub fn lookup<'a>(table: &'a [(String, FieldValue)], name: &str) -> Option<&'a FieldValue> {
    table.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// One exchange: the author's state and the default binding store. Used by
/// [`crate::export_exchange_type!`].
#[doc(hidden)]
#[derive(Default)]
pub struct Instance<T> {
    pub state: T,
    pub bindings: Bindings,
}

/// Exports `$ty` (a type implementing [`ExchangeType`] and `Default`) as the component's
/// `exchange-type` world, keeping one `$ty` per instance (= per exchange), and installs the
/// panic hook ([`crate::panic::install_hook`]). Use it once per crate.
#[macro_export]
macro_rules! export_exchange_type {
    ($ty:ty) => {
        const _: () = {
            use $crate::exchange::{Binding, DestinationId, ExchangeType, FieldTable, Info, Instance, MessageView, RoutingInputs};
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<Instance<$ty>> = ::std::cell::RefCell::new(::std::default::Default::default());
            }
            struct WarrenExchangeType;
            impl $crate::bindings::exchange_type::Guest for WarrenExchangeType {
                fn describe() -> Info {
                    $crate::panic::install_hook();
                    <$ty as ExchangeType>::describe()
                }
                fn validate(arguments: FieldTable) -> Result<(), String> {
                    $crate::panic::install_hook();
                    <$ty as ExchangeType>::validate(arguments)
                }
                fn create_exchange(exchange: String, arguments: FieldTable) -> Result<Option<RoutingInputs>, String> {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| i.borrow_mut().state.create_exchange(exchange, arguments))
                }
                fn delete_exchange() {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| i.borrow_mut().state.delete_exchange())
                }
                fn validate_binding(b: Binding) -> Result<(), String> {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| i.borrow().state.validate_binding(b))
                }
                fn add_binding(b: Binding) -> Result<(), String> {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| {
                        let i = &mut *i.borrow_mut();
                        i.state.add_binding(b, &mut i.bindings)
                    })
                }
                fn remove_binding(b: Binding) -> bool {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| {
                        let i = &mut *i.borrow_mut();
                        i.state.remove_binding(b, &mut i.bindings)
                    })
                }
                fn route(msg: MessageView) -> Vec<DestinationId> {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| {
                        let i = &*i.borrow();
                        i.state.route(msg, &i.bindings)
                    })
                }
                fn route_batch(msgs: Vec<MessageView>) -> Vec<Vec<DestinationId>> {
                    $crate::panic::install_hook();
                    INSTANCE.with(|i| {
                        let i = &*i.borrow();
                        i.state.route_batch(msgs, &i.bindings)
                    })
                }
            }
            $crate::bindings::exchange_type::export_raw!(WarrenExchangeType with_types_in $crate::bindings::exchange_type);
        };
    };
}
