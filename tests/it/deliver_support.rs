//! Harness for delivery tests: an `App` built by hand (config from YAML,
//! embedded queue in a temp dir) with the worker pool running, and jobs
//! enqueued directly (no router needed).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hookyard::config::{self, LoadOptions};
use hookyard::deliver::limits::CircuitSettings;
use hookyard::deliver::worker::{self, Settings};
use hookyard::metrics::Metrics;
use hookyard::queue::{DeliveryRecord, DeliveryState, Event, NewJob, Queue, StoreSettings, Target};
use hookyard::runtime::App;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Harness {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub stop: CancellationToken,
    pub tracker: TaskTracker,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn load(dir: &std::path::Path, yaml: &str, env: &HashMap<String, String>) -> config::Config {
    let path = dir.join("hookyard.yaml");
    let mut text = yaml.to_owned();
    if !text.lines().any(|l| l.starts_with("reload:")) {
        text.push_str("\nreload: { watch: false }\n");
    }
    std::fs::write(&path, text).unwrap();
    match config::load(
        &path,
        LoadOptions {
            no_env: false,
            env: Some(env.clone()),
        },
    ) {
        Ok(c) => c,
        Err(e) => panic!("test config does not load:\n{e}"),
    }
}

/// Start the workers on `yaml` (with `env` for secrets), circuit breaker
/// opening after 3 failures for 500ms.
pub async fn harness_env(yaml: &str, env: HashMap<String, String>) -> Harness {
    harness_on(yaml, env, None, None).await
}

/// As [`harness`], with the queue store's lease set to `store_lease`
/// instead of `queue.lease`. Config refuses a target timeout at or above
/// the lease, so a test of renewal during a request uses a store lease
/// shorter than the request while the workers renew on `queue.lease`.
pub async fn harness_with_store_lease(yaml: &str, store_lease: Duration) -> Harness {
    harness_on(yaml, HashMap::new(), None, Some(store_lease)).await
}

/// As [`harness`], on Redis at 127.0.0.1:6379 under `prefix`.
pub async fn harness_redis(yaml: &str, prefix: &str) -> Harness {
    harness_on(yaml, HashMap::new(), Some(prefix), None).await
}

async fn harness_on(
    yaml: &str,
    env: HashMap<String, String>,
    redis: Option<&str>,
    store_lease: Option<Duration>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(dir.path(), yaml, &env);
    let settings = StoreSettings {
        lease: store_lease.unwrap_or(cfg.queue.lease),
        history_retention: Duration::from_secs(3600),
        history_max_events: 10_000,
        idempotency_window: Duration::from_secs(3600),
        consumer_name: "test".into(),
    };
    let queue = match redis {
        Some(prefix) => Queue::open_redis("redis://127.0.0.1:6379/0", prefix, settings)
            .await
            .unwrap(),
        None => Queue::open_embedded(&dir.path().join("data"), settings)
            .await
            .unwrap(),
    };
    let sender = hookyard::runtime::sender_for(&cfg).unwrap();
    let app = App::new(
        cfg,
        dir.path().join("hookyard.yaml"),
        queue,
        Metrics::new(),
        sender,
        CancellationToken::new(),
        None,
    );
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    worker::spawn_with(
        &app,
        &tracker,
        stop.clone(),
        Settings {
            circuit: CircuitSettings {
                threshold: 3,
                open_for: Duration::from_millis(500),
            },
            ..Settings::default()
        },
    );
    Harness {
        app,
        dir,
        stop,
        tracker,
    }
}

pub async fn harness(yaml: &str) -> Harness {
    harness_env(yaml, HashMap::new()).await
}

pub fn event(ty: &str, data: serde_json::Value) -> Event {
    Event {
        id: ulid::Ulid::new().to_string(),
        event_type: ty.into(),
        timestamp: jiff::Timestamp::now(),
        source: "api:test".into(),
        data,
    }
}

pub fn sub(id: &str) -> Target {
    Target::Subscription { id: id.into() }
}

pub fn step(workflow: &str, action: &str) -> Target {
    Target::WorkflowStep {
        workflow: workflow.into(),
        step: 0,
        action: action.into(),
    }
}

impl Harness {
    /// Ingest `event` with one job per target; returns the delivery ids.
    pub async fn ingest(&self, event: &Event, targets: Vec<Target>) -> Vec<String> {
        self.ingest_ordered(event, targets, false).await
    }

    /// As [`Harness::ingest`]; `fifo` sets each job's ordering key to its
    /// target label, as the router does for `ordering: fifo` targets.
    pub async fn ingest_ordered(
        &self,
        event: &Event,
        targets: Vec<Target>,
        fifo: bool,
    ) -> Vec<String> {
        let jobs: Vec<NewJob> = targets
            .into_iter()
            .map(|target| NewJob {
                delivery_id: ulid::Ulid::new().to_string(),
                event_id: event.id.clone(),
                ordering_key: fifo.then(|| target.label()),
                target,
                steps: BTreeMap::new(),
                not_before: None,
                traceparent: None,
                fifo_later: false,
            })
            .collect();
        let ids = jobs.iter().map(|j| j.delivery_id.clone()).collect();
        self.app.queue().ingest(event, None, jobs).await.unwrap();
        ids
    }

    /// Wait until the delivery reaches `state`.
    pub async fn wait_state(
        &self,
        id: &str,
        state: DeliveryState,
        timeout: Duration,
    ) -> DeliveryRecord {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rec = self.app.queue().delivery(id).await.unwrap();
            if let Some(r) = &rec {
                if r.state == state {
                    return r.clone();
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("delivery {id} did not reach {state:?} within {timeout:?}: {rec:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// All deliveries of an event.
    pub async fn deliveries(&self, event_id: &str) -> Vec<DeliveryRecord> {
        self.app.queue().event(event_id).await.unwrap().unwrap().1
    }

    pub fn metrics(&self) -> String {
        self.app.metrics().encode()
    }
}
