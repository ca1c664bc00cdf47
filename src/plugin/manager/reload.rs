//! Hot reload of an enabled plugin whose file changed: the new version must load and pass its
//! world's checks; exchanges move onto it with their bindings replayed, an auth backend is
//! swapped; otherwise the old version keeps serving and `list` says why.

use super::*;

impl PluginManager {
    /// Reloads enabled plugin `name` from its file if its content changed. The new version must
    /// load, pass its world's type check and describe the same exchange type; then every exchange
    /// of that type gets a new instance with its bindings replayed. Otherwise the old one stays
    /// (and `list` shows why the new one was refused).
    pub fn reload(&self, name: &str) {
        let auth = self.auth.lock().get(name).cloned();
        if let Some(b) = auth {
            return self.reload_auth(name, &b);
        }
        let Some(broker) = self.broker.lock().upgrade() else { return };
        let (old_hash, origin) = match self.loaded.lock().get(name) {
            Some(l) => (l.hash.clone(), l.origin.clone()),
            None => return,
        };
        let Origin::File(path) = &origin else { return };
        let Ok(bytes) = std::fs::read(path) else { return };
        if hash_of(&bytes) == old_hash {
            return;
        }
        let started = std::time::Instant::now();
        let reject = |why: String| {
            error!(plugin = %name, file = %path.display(), "new version rejected, the old one keeps serving: {why}");
            self.rejected.lock().insert(name.to_string(), format!("new version rejected, the old one keeps serving: {why}"));
        };
        let mut new = match self.load(name, &origin) {
            Ok(l) => l,
            Err(e) => return reject(e),
        };
        let mut loaded = self.loaded.lock();
        let Some(old) = loaded.get_mut(name) else { return };
        match (&mut old.serving, &mut new.serving) {
            (Serving::Exchange(old_f), Serving::Exchange(new_f)) => {
                let ty = old_f.info().name.clone();
                if new_f.info().name != ty {
                    return reject(format!("it provides exchange type '{}' instead of '{ty}'", new_f.info().name));
                }
                let failed = install(&broker, new_f);
                for e in &failed {
                    error!(plugin = %name, "{e}");
                }
            }
            (Serving::Http { listener: old_l, .. }, Serving::Http { handler, listener: new_l }) => {
                // The listener stays open; the next requests go to the new version.
                if let Some(l) = old_l.take() {
                    l.set_handler(handler.clone());
                    *new_l = Some(l);
                }
            }
            _ => return reject(format!("it is now a {} plugin instead of a {}", new.kind, old.kind)),
        }
        new.stats().reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rejected.lock().remove(name);
        info!(plugin = %name, "plugin reloaded in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        loaded.insert(name.to_string(), new);
    }

    /// Hot reload of an auth-backend plugin from the plugins folder: the new file must load as an
    /// auth backend and its `init` accept the configuration; then it answers every login and
    /// check from now on (logged-in users keep their state). Otherwise the old one serves on.
    pub(super) fn reload_auth(&self, name: &str, running: &Arc<WasmAuthBackend>) {
        let Some((_, Origin::File(path))) = resolve(&self.dir, name) else { return };
        let Ok(bytes) = std::fs::read(&path) else { return };
        let hash = hash_of(&bytes);
        if self.auth_hashes.lock().get(name) == Some(&hash) {
            return;
        }
        let settings = self.settings.get(name).cloned().unwrap_or_default();
        let stats = running.stats().clone();
        match self.engine.kind_of(name, &bytes).and_then(|k| {
            if k == PluginKind::AuthBackend {
                self.engine.load_auth_backend(name, &bytes, settings, stats)
            } else {
                Err(crate::plugin::LoadError::new(name, format!("a {k} plugin, not an auth-backend")))
            }
        }) {
            Ok(new) => {
                running.replace_code(new);
                self.auth_hashes.lock().insert(name.to_string(), hash);
                self.rejected.lock().remove(name);
                info!(plugin = %name, "auth backend plugin reloaded");
            }
            Err(e) => {
                error!(plugin = %name, file = %path.display(), "new version rejected, the old one keeps serving: {}", e.message);
                self.rejected
                    .lock()
                    .insert(name.to_string(), format!("new version rejected, the old one keeps serving: {}", e.message));
            }
        }
    }
}
