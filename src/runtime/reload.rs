//! Hot reload (SPEC §7): a file watcher, `SIGHUP` and
//! `POST /v1/admin/reload` all end in [`reload`].
//!
//! [`reload`] loads and compiles the whole config set again with
//! [`crate::config::load`] (secret files are read again there). On any
//! error the config serving now keeps serving, every error is logged with
//! its `file:line:col`, and `hookyard_config_reloads_total{result="failure"}`
//! counts it. On success the new config is swapped in (handlers and workers
//! pick it up at their next request or job), the HTTP sender is rebuilt if
//! `egress:` changed, and every changed setting that needs a restart
//! (`config::restart_changes`: listeners, queue, history limits, idempotency window,
//! watcher) is named in a warning.
//!
//! The watcher watches the config path's *directory* (the parent of a file,
//! or the directory itself, recursively), not the file: editors save by
//! writing a temp file and renaming it over the original, `git pull`
//! replaces files, and a Kubernetes ConfigMap swaps its `..data` symlink to
//! a new folder. A watch on the file itself would follow the old inode and
//! miss all three. Events are debounced (`reload.debounce`) so one save or
//! one `git pull` is one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::App;
use crate::config::{self, Config, ConfigError, ConfigErrors, LoadOptions, Pos, restart_changes};

/// What a successful reload reports.
#[derive(Debug, Clone, Default)]
pub struct Reloaded {
    /// Warnings of the new config.
    pub warnings: Vec<ConfigError>,
    /// Changes that take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// The outcome of the last reload: when, whether it applied, and every
/// error with its `file:line:col` when it did not.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: jiff::Timestamp,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Load and compile the config again and swap it in, or keep the old one.
/// Blocking (reads files): [`reload_async`] runs it off the async threads,
/// holding the snapshot's writer lock.
fn reload(app: &App, held: &super::Writer) -> Result<Reloaded, ConfigErrors> {
    let path = app.config_path();
    let now = || jiff::Timestamp::now().as_second();
    let new = match config::load(path, LoadOptions::default()) {
        Ok(c) => c,
        Err(errs) => {
            fail(app, &errs);
            return Err(errs);
        }
    };
    let current = app.snapshot();
    let old = &current.config;
    let mut sender = None;
    if egress_changed(old, &new) {
        match super::sender_for(&new) {
            Ok(s) => sender = Some(s),
            Err(e) => {
                let errs = ConfigErrors {
                    errors: vec![ConfigError {
                        pos: Pos::file_start(path),
                        message: format!("the new egress policy cannot be applied: {e}"),
                    }],
                    warnings: vec![],
                };
                fail(app, &errs);
                return Err(errs);
            }
        }
    }
    // The reload goes on (everything else applies), but say which changes
    // it cannot apply rather than report a success that changed nothing.
    let needs_restart = restart_changes(old, &new);
    for setting in &needs_restart {
        tracing::warn!(
            target: "hookyard::config",
            setting = %setting,
            "{setting} changed, but it is read only at start: the old value stays in effect until hookyard is restarted"
        );
    }
    for w in &new.warnings {
        tracing::warn!(target: "hookyard::config", "{w}");
    }
    for s in current.api_subscriptions() {
        if new.subscription(&s.id).is_some() {
            tracing::warn!(
                target: "hookyard::config",
                "YAML subscription {:?} has the same id as a subscription created through the API; rename one of them",
                s.id
            );
        }
    }
    let warnings = new.warnings.clone();
    tracing::info!(
        target: "hookyard::config",
        triggers = new.triggers.len(),
        workflows = new.workflows.len(),
        subscriptions = new.subscriptions.len(),
        "config reloaded from {}",
        path.display()
    );
    // The writer lock is held (reload_async), so nothing changed the
    // snapshot since `current` was read.
    app.replace(held, |current| current.with_config(new, sender));
    app.set_last_reload(LastReload {
        at: jiff::Timestamp::now(),
        ok: true,
        errors: Vec::new(),
    });
    app.metrics().config_reload(true, now());
    Ok(Reloaded {
        warnings,
        needs_restart,
    })
}

/// Log every error and count the failure; the old config keeps serving.
fn fail(app: &App, errs: &ConfigErrors) {
    app.set_last_reload(LastReload {
        at: jiff::Timestamp::now(),
        ok: false,
        errors: errs.errors.iter().map(ToString::to_string).collect(),
    });
    for e in &errs.errors {
        tracing::error!(target: "hookyard::config", "{e}");
    }
    tracing::error!(
        target: "hookyard::config",
        "config reload failed with {} error(s); the previous config keeps serving",
        errs.errors.len()
    );
    app.metrics()
        .config_reload(false, jiff::Timestamp::now().as_second());
}

/// [`reload`] from async code.
pub async fn reload_async(app: &App) -> Result<Reloaded, ConfigErrors> {
    // One writer at a time (watcher, signal, API and subscription changes
    // may coincide).
    let held = app.writer().await;
    let app = app.clone();
    match tokio::task::spawn_blocking(move || reload(&app, &held)).await {
        Ok(r) => r,
        Err(e) => Err(ConfigErrors {
            errors: vec![ConfigError {
                pos: Pos::file_start(Path::new("-")),
                message: format!("the reload task failed: {e}"),
            }],
            warnings: vec![],
        }),
    }
}

/// Whether the sender must be rebuilt: the egress policy or proxy, or a
/// target's `tls:`/`proxy:` (certificate files are read again on every
/// reload, so a renewed certificate counts).
fn egress_changed(old: &Config, new: &Config) -> bool {
    old.egress.allow != new.egress.allow
        || old.egress.deny != new.egress.deny
        || old.egress.proxy != new.egress.proxy
        || old.transports() != new.transports()
}

/// Start the SIGHUP handler and (when `reload.watch`) the file watcher;
/// mark the watcher armed on `app` once the watch is in place.
pub fn spawn(app: &App, tracker: &TaskTracker, stop: CancellationToken) {
    spawn_sighup(app, tracker, stop.clone());
    let config = app.config();
    if !config.reload.watch {
        app.set_watcher_armed();
        return;
    }
    match Watch::start(app.config_path(), config.reload.debounce) {
        Ok(watch) => {
            app.set_watcher_armed();
            tracker.spawn(watch.run(app.clone(), stop));
        }
        Err(e) => {
            // Not armed: /readyz stays 503 and says why, so a broken watch
            // is noticed instead of silently serving a config that never
            // reloads.
            tracing::error!(
                "cannot watch {} for changes: {e}; set `reload: {{watch: false}}` to run without watching",
                app.config_path().display()
            );
        }
    }
}

fn spawn_sighup(app: &App, tracker: &TaskTracker, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot install the SIGHUP handler: {e}; reload with the API instead");
            return;
        }
    };
    let app = app.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() { return; }
                    tracing::info!("SIGHUP received: reloading the config");
                    let _ = reload_async(&app).await;
                }
            }
        }
    });
}

/// A debounced watch on the config directory.
struct Watch {
    /// Dropping it stops the watch.
    debouncer: notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    events: tokio::sync::mpsc::UnboundedReceiver<DebounceEventResult>,
    root: PathBuf,
}

impl Watch {
    fn start(config_path: &Path, debounce: Duration) -> notify::Result<Watch> {
        let (root, mode) = watch_root(config_path);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| {
            let _ = tx.send(res);
        })?;
        debouncer.watch(&root, mode)?;
        tracing::info!("watching {} for config changes", root.display());
        Ok(Watch {
            debouncer,
            events,
            root,
        })
    }

    async fn run(mut self, app: App, stop: CancellationToken) {
        loop {
            let batch = tokio::select! {
                _ = stop.cancelled() => break,
                b = self.events.recv() => match b { Some(b) => b, None => break },
            };
            match batch {
                Ok(events) => {
                    // Reading the files (as every reload does) is reported
                    // as an access: acting on those would reload forever.
                    let relevant = events
                        .iter()
                        .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
                        .flat_map(|e| e.paths.iter())
                        .any(|p| is_relevant(p, &self.root, app.config_path()));
                    if relevant {
                        tracing::info!("config files changed: reloading");
                        let _ = reload_async(&app).await;
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("config watcher error: {e}");
                    }
                }
            }
        }
        drop(self.debouncer);
    }
}

/// The directory to watch and how: a file's parent (not recursive: the
/// file and a ConfigMap's `..data` live there), or a directory, recursively.
pub fn watch_root(config_path: &Path) -> (PathBuf, RecursiveMode) {
    if config_path.is_dir() {
        (config_path.to_path_buf(), RecursiveMode::Recursive)
    } else {
        let parent = match config_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (parent, RecursiveMode::NonRecursive)
    }
}

/// Whether a change at `changed` can change the config: a YAML file, the
/// config file itself, or a `..`-named entry (a ConfigMap's `..data` swap
/// and its timestamped folders). Other files (an embedded queue's data
/// directory below the config, editor swap files) do not trigger reloads.
pub fn is_relevant(changed: &Path, root: &Path, config_path: &Path) -> bool {
    if changed == config_path {
        return true;
    }
    let ext = changed.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "yaml" || ext == "yml" {
        return true;
    }
    let rel = changed.strip_prefix(root).unwrap_or(changed);
    rel.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with(".."))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relevant_changes() {
        let root = Path::new("/etc/hookyard");
        let cfg = Path::new("/etc/hookyard/hookyard.yaml");
        assert!(is_relevant(cfg, root, cfg));
        assert!(is_relevant(
            Path::new("/etc/hookyard/teams/a.yml"),
            root,
            cfg
        ));
        assert!(is_relevant(Path::new("/etc/hookyard/..data"), root, cfg));
        assert!(is_relevant(
            Path::new("/etc/hookyard/..2026_05_01_10_00_00.123"),
            root,
            cfg
        ));
        assert!(!is_relevant(
            Path::new("/etc/hookyard/data/queue.redb"),
            root,
            cfg
        ));
        assert!(!is_relevant(
            Path::new("/etc/hookyard/.hookyard.yaml.swp"),
            root,
            cfg
        ));
        assert!(!is_relevant(Path::new("/etc/hookyard/4913"), root, cfg));
    }

    #[test]
    fn watch_root_is_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hookyard.yaml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            watch_root(&file),
            (dir.path().to_path_buf(), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_root(dir.path()),
            (dir.path().to_path_buf(), RecursiveMode::Recursive)
        );
        assert_eq!(watch_root(Path::new("hookyard.yaml")).0, PathBuf::from("."));
    }
}
