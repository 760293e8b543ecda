//! Hot reload: file watcher, SIGHUP, `POST /v1/admin/reload`. (Placeholder
//! until it lands: the config loaded at start keeps serving.)

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Start watching the config path; marks the watcher armed on `app`.
pub fn spawn(app: &App, _tracker: &TaskTracker, _stop: CancellationToken) {
    app.set_watcher_armed();
}
