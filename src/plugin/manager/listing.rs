//! `warren-plugins list`: every plugin (built-ins, shipped, the plugins folder) with its state,
//! kind, description, and with `-v` the exchanges of its type and its counters.

use super::*;

impl PluginManager {
    /// Every plugin for `warren-plugins list`: the built-ins, the shipped plugins, then the
    /// plugins folder. Plugins not running are loaded on the side (compiled through the cache,
    /// never registered) to show their kind and description, or why they cannot load. With
    /// `verbose`, for running plugins, the exchanges of its type and its counters.
    pub(super) fn entries(&self, broker: &Arc<Broker>, verbose: bool) -> Vec<PluginEntry> {
        let enabled: BTreeSet<String> =
            read_enabled(&self.enabled_file).unwrap_or_default().iter().map(|n| canonical(n)).collect();
        let details = |t: &WasmExchangeType| {
            use std::sync::atomic::Ordering::Relaxed;
            let st = t.stats();
            PluginDetails {
                exchanges: exchanges_of_type(broker, &t.info().name).into_iter().map(|(v, x)| format!("'{v}':'{x}'")).collect(),
                traps: st.traps.load(Relaxed),
                timeouts: st.timeouts.load(Relaxed),
                out_of_memory: st.out_of_memory.load(Relaxed),
                rebuilds: st.rebuilds.load(Relaxed),
                reloads: st.reloads.load(Relaxed),
            }
        };
        let version = env!("CARGO_PKG_VERSION");
        let mut out = Vec::new();
        for b in &self.builtins {
            out.push(PluginEntry {
                name: b.plugin().to_string(),
                aliases: Vec::new(),
                version: version.to_string(),
                kind: PluginKind::ExchangeType.to_string(),
                description: format!("{} (built-in)", b.info().description),
                state: PluginState::BuiltIn,
                error: None,
                details: verbose.then(|| details(b)),
            });
        }
        for (name, origin) in catalog(&self.dir) {
            let aliases = match &origin {
                Ok(Origin::Shipped(s)) => s.aliases.iter().map(|a| a.to_string()).collect(),
                _ => Vec::new(),
            };
            if let Some(b) = self.auth.lock().get(&name) {
                use std::sync::atomic::Ordering::Relaxed;
                let st = b.stats();
                out.push(PluginEntry {
                    version: match &origin {
                        Ok(Origin::File(p)) => std::fs::read(p).map(|b| hash_of(&b)).unwrap_or_default(),
                        _ => version.to_string(),
                    },
                    kind: PluginKind::AuthBackend.to_string(),
                    description: format!("{} (in [auth] backends)", b.description()),
                    state: PluginState::Running,
                    error: self.rejected.lock().get(&name).cloned(),
                    details: verbose.then(|| PluginDetails {
                        exchanges: Vec::new(),
                        traps: st.traps.load(Relaxed),
                        timeouts: st.timeouts.load(Relaxed),
                        out_of_memory: st.out_of_memory.load(Relaxed),
                        rebuilds: st.rebuilds.load(Relaxed),
                        reloads: st.reloads.load(Relaxed),
                    }),
                    name,
                    aliases,
                });
                continue;
            }
            let running = self.loaded.lock().get(&name).map(|l| (l.hash.clone(), l.kind, l.exchange().cloned(), l.description()));
            let entry = match running {
                Some((hash, kind, factory, description)) => PluginEntry {
                    version: if matches!(origin, Ok(Origin::Shipped(_))) { version.to_string() } else { hash },
                    kind: kind.to_string(),
                    description,
                    state: PluginState::Running,
                    error: self.rejected.lock().get(&name).cloned(),
                    details: factory.filter(|_| verbose).map(|f| details(&f)),
                    name,
                    aliases,
                },
                None => {
                    let state = if enabled.contains(&name) { PluginState::EnabledNotRunning } else { PluginState::Available };
                    let catalog_origin = origin.clone();
                    let catalog_version = match &catalog_origin {
                        Ok(Origin::File(p)) => std::fs::read(p).map(|b| hash_of(&b)).unwrap_or_default(),
                        _ => version.to_string(),
                    };
                    let probe = origin.and_then(|o| {
                        let v = match &o {
                            Origin::Shipped(_) => version.to_string(),
                            Origin::File(_) => o.bytes().map(|b| hash_of(&b)).unwrap_or_default(),
                        };
                        self.load(&name, &o).map(|l| (v, l))
                    });
                    // An auth backend not named in [auth] backends: its description, and a hint.
                    let auth_probe = match &probe {
                        Err(e) if e.contains("an auth-backend plugin") => catalog_origin.as_ref().ok().and_then(|o| {
                            let bytes = o.bytes().ok()?;
                            self.engine.describe_auth_backend(&name, &bytes).ok()
                        }),
                        _ => None,
                    };
                    if let Some(description) = auth_probe {
                        out.push(PluginEntry {
                            version: catalog_version.clone(),
                            kind: PluginKind::AuthBackend.to_string(),
                            description: format!("{description} (name it in [auth] backends to use it)"),
                            state,
                            error: None,
                            details: None,
                            name,
                            aliases,
                        });
                        continue;
                    }
                    match probe {
                        Ok((v, l)) => PluginEntry {
                            version: v,
                            kind: l.kind.to_string(),
                            description: l.description(),
                            state,
                            error: None,
                            details: None,
                            name,
                            aliases,
                        },
                        Err(e) => PluginEntry {
                            version: String::new(),
                            kind: String::new(),
                            description: String::new(),
                            state,
                            error: Some(e),
                            details: None,
                            name,
                            aliases,
                        },
                    }
                }
            };
            out.push(entry);
        }
        out
    }
}
