//! Plugin kinds: the world of `wit/` a component implements. A plugin declares its kind by the
//! world it is built against; the host reads it from the component's exports.

use super::{LoadError, PluginEngine};

/// One world of the `warren:plugin` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    ExchangeType,
    AuthBackend,
    HttpHandler,
}

impl PluginKind {
    /// The world's name, as in `wit/` and in `warren-plugins list`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::ExchangeType => "exchange-type",
            PluginKind::AuthBackend => "auth-backend",
            PluginKind::HttpHandler => "http-handler",
        }
    }

    /// The export only this world has.
    fn marker_export(self) -> &'static str {
        match self {
            PluginKind::ExchangeType => "route",
            PluginKind::AuthBackend => "login",
            PluginKind::HttpHandler => "handle",
        }
    }

    pub const ALL: [PluginKind; 3] = [PluginKind::ExchangeType, PluginKind::AuthBackend, PluginKind::HttpHandler];
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PluginEngine {
    /// The kind of component `wasm` (compiled through the cache): the world whose distinguishing
    /// export it has. The full type check against that world happens when it is loaded.
    pub fn kind_of(&self, plugin: &str, wasm: &[u8]) -> Result<PluginKind, LoadError> {
        let (component, _) = self.compile(plugin, wasm)?;
        let ty = component.component_type();
        let engine = &self.inner.engine;
        PluginKind::ALL.into_iter().find(|k| ty.get_export(engine, k.marker_export()).is_some()).ok_or_else(|| {
            let exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
            LoadError::new(
                plugin,
                format!(
                    "implements no world of warren:plugin@0.1.0 (exchange-type, auth-backend, http-handler); its exports: [{}]",
                    exports.join(", ")
                ),
            )
        })
    }
}
