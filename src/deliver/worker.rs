//! Delivery workers: lease jobs, render, sign, send, record. (Placeholder
//! until the delivery worker lands: no jobs are consumed.)

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Start the worker pool on `tracker`; workers stop leasing when `stop` is
/// cancelled and finish what they hold.
pub fn spawn(_app: &App, _tracker: &TaskTracker, _stop: CancellationToken) {}
