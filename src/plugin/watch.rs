//! Hot reload: the notify watcher of the plugins folder.

use super::manager::PluginManager;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

impl PluginManager {
    /// Watches the plugins folder; changes to enabled plugins' files are reloaded after 250 ms of
    /// quiet (writers should write a temp file and rename it).
    pub(super) fn watch(self: &Arc<Self>) {
        use notify::{EventKind, RecursiveMode, Watcher};
        if std::fs::create_dir_all(self.dir()).is_err() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = match notify::recommended_watcher(tx) {
            Ok(w) => w,
            Err(e) => return warn!("cannot watch {}: {e}; plugins will not hot-reload", self.dir().display()),
        };
        if let Err(e) = watcher.watch(self.dir(), RecursiveMode::NonRecursive) {
            return warn!("cannot watch {}: {e}; plugins will not hot-reload", self.dir().display());
        }
        self.keep_watcher(watcher);
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                // Names of .wasm files written, created or renamed into place by an event. Other
                // events (reads of the folder or of files, e.g. by `warren-plugins list`) are
                // ignored, and must not extend the quiet period either.
                let names = |ev: notify::Event, into: &mut BTreeSet<String>| -> bool {
                    let relevant = matches!(
                        ev.kind,
                        EventKind::Create(_)
                            | EventKind::Modify(_)
                            | EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write))
                    );
                    let mut any = false;
                    if relevant {
                        for p in ev.paths {
                            if p.extension().is_some_and(|e| e == "wasm")
                                && let Some(n) = p.file_stem().and_then(|s| s.to_str())
                            {
                                into.insert(n.to_string());
                                any = true;
                            }
                        }
                    }
                    any
                };
                let quiet = Duration::from_millis(250);
                loop {
                    let mut touched = BTreeSet::new();
                    // Wait for a relevant event.
                    loop {
                        match rx.recv() {
                            Ok(Ok(ev)) => {
                                if names(ev, &mut touched) {
                                    break;
                                }
                            }
                            Ok(Err(_)) => {}
                            Err(_) => return,
                        }
                    }
                    // Debounce: 250 ms without relevant events, at most 1 s in all.
                    let hard = std::time::Instant::now() + Duration::from_secs(1);
                    let mut soft = std::time::Instant::now() + quiet;
                    loop {
                        let now = std::time::Instant::now();
                        let until = soft.min(hard);
                        if now >= until {
                            break;
                        }
                        match rx.recv_timeout(until - now) {
                            Ok(Ok(ev)) => {
                                if names(ev, &mut touched) {
                                    soft = std::time::Instant::now() + quiet;
                                }
                            }
                            Ok(Err(_)) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let Some(m) = me.upgrade() else { return };
                    for n in touched {
                        m.reload(&n);
                    }
                }
            })
            .expect("spawn plugin watcher");
    }
}
