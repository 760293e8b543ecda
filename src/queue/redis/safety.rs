//! Redis settings that lose data are refused (SPEC §11, "Unsafe Redis is
//! refused").
//!
//! Two server settings make hookyard lose data without any error:
//! - a `maxmemory-policy` other than `noeviction`: under memory pressure
//!   Redis evicts keys (idempotency keys, queued jobs, history, even the
//!   stream) instead of refusing writes, so acknowledged events vanish and
//!   duplicates get through;
//! - a server older than 7.0: the scripts use 7.0 commands (`SET … NX GET`),
//!   and a script that fails part-way keeps the writes it made before, so a
//!   coalesced ingest batch would be half stored.
//!
//! [`check`] is the pure decision (version string and policy in, unsafe
//! settings out); [`RedisQueue::recheck_safety`] reads both from the server
//! (`INFO server`, `CONFIG GET maxmemory-policy`). The queue checks at open
//! (`redis.rs`: an unsafe server fails the open, so `hookyard run` exits 1
//! and never becomes ready) and the daemon's housekeeping checks again every
//! few seconds. That is how "after every reconnect" is kept (also to a
//! new master after a Sentinel failover, `source.rs`): the connection
//! reconnects by itself and tells nobody, so a
//! reconnect can only be noticed by asking, and asking for the two
//! settings costs Redis no more than asking whether we reconnected; it
//! also catches a `CONFIG SET` made while we stay connected.
//!
//! Found unsafe after start, without `queue.allow_eviction`: ingestion is
//! refused at once (503, readiness 503, an error in the log), and the
//! daemon then stops and exits 1 as at open (SPEC §11; housekeeping in
//! `daemon.rs`): deliveries in flight get the shutdown grace, queued work
//! stays in Redis, and a supervisor's restart fails at open, naming the
//! setting, until someone fixes it. With `queue.allow_eviction: true`
//! every finding is a warning and the `hookyard_queue_unsafe{reason}`
//! gauge, and nothing is refused.
//!
//! Where `CONFIG GET` is refused (managed Redis renames or forbids CONFIG),
//! the policy cannot be known: one warning, and the version alone decides
//! (likewise for an `INFO` forbidden by an ACL).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::{ErrorKind, ServerErrorKind, Value};

use super::{RedisQueue, Result, unavailable};
use crate::queue::QueueError;

/// The Redis major version the scripts need.
const MIN_MAJOR: u32 = 7;

/// A setting of the server that can lose data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    /// `redis_version` older than 7.0, or unreadable (the value as given).
    Version(String),
    /// `maxmemory-policy` other than `noeviction` (the value as given).
    EvictionPolicy(String),
}

impl Unsafe {
    /// The `reason` label of `hookyard_queue_unsafe` (one of
    /// `crate::metrics::QUEUE_UNSAFE_REASONS`).
    pub fn reason(&self) -> &'static str {
        match self {
            Unsafe::Version(_) => "redis_version",
            Unsafe::EvictionPolicy(_) => "eviction_policy",
        }
    }

    /// What is wrong and what to do about it.
    pub fn message(&self) -> String {
        match self {
            Unsafe::Version(v) => format!(
                "Redis redis_version is {v:?}; hookyard needs Redis 7.0 or newer (its scripts use 7.0 \
                 commands, and a script failing part-way would store part of an ingested batch): \
                 upgrade Redis (`queue.allow_eviction: true` runs anyway, at the risk of \
                 half-stored batches)"
            ),
            Unsafe::EvictionPolicy(p) => format!(
                "Redis maxmemory-policy is {p}; hookyard needs noeviction (any other policy lets \
                 Redis silently drop queued jobs, idempotency keys and history under memory \
                 pressure): run `CONFIG SET maxmemory-policy noeviction` on the server and set it \
                 in redis.conf, or set `queue.allow_eviction: true` to run anyway"
            ),
        }
    }
}

/// The unsafe settings of a server that reports `version` (`redis_version`
/// of `INFO server`) and `policy` (`CONFIG GET maxmemory-policy`); either
/// is `None` when the server refuses the command and it cannot be known.
/// Empty: safe.
pub fn check(version: Option<&str>, policy: Option<&str>) -> Vec<Unsafe> {
    let mut found = Vec::new();
    if let Some(v) = version {
        if !version_ok(v) {
            found.push(Unsafe::Version(v.to_string()));
        }
    }
    if let Some(p) = policy {
        if !p.trim().eq_ignore_ascii_case("noeviction") {
            found.push(Unsafe::EvictionPolicy(p.to_string()));
        }
    }
    found
}

/// "7.0.15" → true, "6.2.14" → false; unreadable → false.
fn version_ok(version: &str) -> bool {
    version
        .trim()
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= MIN_MAJOR)
}

/// `redis_version` from the text of `INFO server` ("" when absent).
fn info_version(info: &str) -> &str {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
        .unwrap_or_default()
}

/// One message for all the unsafe settings found.
fn describe(found: &[Unsafe]) -> String {
    let messages: Vec<String> = found.iter().map(Unsafe::message).collect();
    messages.join("; also, ")
}

/// What the queue's clones share about the server's settings.
pub(super) struct Safety {
    /// `queue.allow_eviction`: run on an unsafe server, with a warning.
    allow: bool,
    /// Set while ingestion is refused (an unsafe setting appeared after
    /// start, without `allow`). Read by every ingestion, hence an atomic
    /// in front of `found`.
    refusing: AtomicBool,
    /// The unsafe settings found by the last check.
    found: Mutex<Vec<Unsafe>>,
    /// INFO / CONFIG GET was refused and that was logged (once is enough).
    info_refused_logged: AtomicBool,
    config_refused_logged: AtomicBool,
}

impl Safety {
    pub(super) fn new(allow: bool) -> Safety {
        Safety {
            allow,
            refusing: AtomicBool::new(false),
            found: Mutex::new(Vec::new()),
            info_refused_logged: AtomicBool::new(false),
            config_refused_logged: AtomicBool::new(false),
        }
    }

    fn found(&self) -> std::sync::MutexGuard<'_, Vec<Unsafe>> {
        // A poisoned lock only means a panic elsewhere mid-update; the list
        // is still the last one written.
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error ingestion answers while it is refused.
    pub(super) fn refusal(&self) -> Option<QueueError> {
        if !self.refusing.load(Ordering::Relaxed) {
            return None;
        }
        Some(QueueError::Unsafe(format!(
            "ingestion is refused until Redis is safe again: {}",
            describe(&self.found())
        )))
    }
}

impl RedisQueue {
    /// Read the server's version and eviction policy again and act on a
    /// change (see the module header); the daemon's housekeeping calls this
    /// every few seconds. `Unavailable` when Redis does not answer (the
    /// last finding then stands).
    pub async fn recheck_safety(&self) -> Result<()> {
        // On a cluster, also where the partitions are now (`nodes.rs`).
        self.inner
            .nodes
            .refresh(&self.inner.source, &self.inner.parts)
            .await;
        self.check_safety(false).await
    }

    /// `at_open`: an unsafe server without `allow_eviction` is an error
    /// (the open fails). Later, it turns ingestion off until the setting is
    /// safe again.
    pub(super) async fn check_safety(&self, at_open: bool) -> Result<()> {
        let found = self.read_settings().await?;
        let safety = &self.inner.safety;
        if at_open && !found.is_empty() && !safety.allow {
            return Err(QueueError::Unsafe(describe(&found)));
        }
        let mut last = safety.found();
        if *last == found && !at_open {
            return Ok(());
        }
        for f in &found {
            if safety.allow {
                tracing::warn!(
                    reason = f.reason(),
                    "running on an unsafe Redis because `queue.allow_eviction` is true: {}",
                    f.message()
                );
            } else {
                tracing::error!(reason = f.reason(), "{}", f.message());
            }
        }
        let refuse = !safety.allow && !found.is_empty();
        if refuse && !safety.refusing.load(Ordering::Relaxed) {
            tracing::error!(
                "Redis changed under the daemon: new events are refused (503) and readiness is 503 \
                 until the setting is safe again; queued jobs are still delivered"
            );
        } else if !refuse && safety.refusing.load(Ordering::Relaxed) {
            tracing::info!("Redis settings are safe again: ingestion resumes");
        }
        *last = found;
        safety.refusing.store(refuse, Ordering::Relaxed);
        Ok(())
    }

    /// The `reason` labels of the unsafe settings found by the last check.
    pub fn unsafe_reasons(&self) -> Vec<&'static str> {
        self.inner
            .safety
            .found()
            .iter()
            .map(Unsafe::reason)
            .collect()
    }

    /// `Err` while ingestion is refused (see the module header).
    pub(super) fn refusal(&self) -> Result<()> {
        match self.inner.safety.refusal() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `INFO server` and `CONFIG GET maxmemory-policy`, checked. On a
    /// cluster both go to every node, and each node's answer is checked.
    async fn read_settings(&self) -> Result<Vec<Unsafe>> {
        let safety = &self.inner.safety;
        let source = &self.inner.source;
        let info = refused_as_none(
            source
                .every_master(redis::cmd("INFO").arg("server"))
                .await
                .and_then(refused_by_any),
            &safety.info_refused_logged,
            "INFO server",
            "version (7.0 or newer is needed)",
        )?;
        let policy = refused_as_none(
            source
                .every_master(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
                .await
                .and_then(refused_by_any),
            &safety.config_refused_logged,
            "CONFIG GET maxmemory-policy",
            "maxmemory-policy (noeviction is needed, or queued jobs and idempotency keys may be \
             evicted under memory pressure)",
        )?;
        let infos: Vec<Option<String>> = match info {
            None => vec![None],
            Some(all) => all
                .into_iter()
                .map(|v| redis::from_redis_value::<String>(v).ok())
                .collect(),
        };
        let policies: Vec<Option<String>> = match policy {
            None => vec![None],
            Some(all) => all.into_iter().map(config_value).collect(),
        };
        // Every master is checked: one that loses data loses its
        // partitions' events.
        let mut found = Vec::new();
        for info in &infos {
            for policy in &policies {
                for f in check(info.as_deref().map(info_version), policy.as_deref()) {
                    if !found.contains(&f) {
                        found.push(f);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The answers of every master, or the first refusal among them as an
/// error (so a renamed command on one node reads as refused).
fn refused_by_any(all: Vec<Value>) -> redis::RedisResult<Vec<Value>> {
    for v in &all {
        if let Value::ServerError(e) = v {
            return Err(e.clone().into());
        }
    }
    Ok(all)
}

/// A command's answer; `None` when the server refused it (renamed or
/// forbidden, as managed Redis does with CONFIG), with one warning per
/// process. Anything else that fails is Redis being away.
fn refused_as_none<T>(
    answer: std::result::Result<T, redis::RedisError>,
    logged: &AtomicBool,
    command: &str,
    what: &str,
) -> Result<Option<T>> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_refusal(e.kind()) => {
            if !logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "Redis refused `{command}` ({e}): hookyard cannot check its {what}; make \
                     sure of it yourself"
                );
            }
            Ok(None)
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// Whether an error means the command itself is refused (renamed away,
/// unknown to a managed Redis, or denied by an ACL), as opposed to the
/// server being busy for a moment (LOADING, TRYAGAIN, MASTERDOWN…): only
/// a refusal may end the check, a passing state must not clear a finding.
fn is_refusal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::NoPerm)
            | ErrorKind::Extension
    )
}

/// The value of a one-parameter `CONFIG GET` answer: `[name, value]` in
/// RESP2, `{name: value}` in RESP3. `None` when the parameter is unknown.
fn config_value(v: Value) -> Option<String> {
    let value = match v {
        Value::Array(mut items) if items.len() == 2 => items.pop(),
        Value::Map(mut pairs) if pairs.len() == 1 => pairs.pop().map(|(_, v)| v),
        _ => None,
    }?;
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_7_0_pass() {
        for v in ["7.0.0", "7.0.15", "7.2.4", "8.0.1", "255.255.255"] {
            assert_eq!(check(Some(v), Some("noeviction")), [], "{v}");
        }
    }

    #[test]
    fn older_or_unreadable_versions_are_refused() {
        for v in ["6.2.14", "6.0.0", "5.0.7", "", "unknown", ".7"] {
            assert_eq!(
                check(Some(v), Some("noeviction")),
                [Unsafe::Version(v.to_string())],
                "{v:?}"
            );
        }
    }

    #[test]
    fn only_noeviction_passes() {
        assert_eq!(check(Some("7.2.4"), Some("noeviction")), []);
        assert_eq!(check(Some("7.2.4"), Some("NoEviction")), []);
        for p in [
            "allkeys-lru",
            "volatile-lru",
            "allkeys-lfu",
            "volatile-lfu",
            "allkeys-random",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert_eq!(
                check(Some("7.2.4"), Some(p)),
                [Unsafe::EvictionPolicy(p.to_string())],
                "{p}"
            );
        }
    }

    #[test]
    fn unknown_policy_is_left_to_the_version() {
        assert_eq!(check(Some("7.0.0"), None), []);
        assert_eq!(
            check(Some("6.2.14"), None),
            [Unsafe::Version("6.2.14".into())]
        );
    }

    #[test]
    fn nothing_known_nothing_refused() {
        assert_eq!(check(None, None), []);
        assert_eq!(
            check(None, Some("volatile-lru")),
            [Unsafe::EvictionPolicy("volatile-lru".into())]
        );
    }

    #[test]
    fn both_found_together() {
        let found = check(Some("6.2.14"), Some("allkeys-lru"));
        let reasons: Vec<&str> = found.iter().map(Unsafe::reason).collect();
        assert_eq!(reasons, ["redis_version", "eviction_policy"]);
        for reason in reasons {
            assert!(crate::metrics::QUEUE_UNSAFE_REASONS.contains(&reason));
        }
        let text = describe(&found);
        assert!(
            text.contains("6.2.14") && text.contains("allkeys-lru"),
            "{text}"
        );
    }

    #[test]
    fn messages_name_the_setting_its_value_and_the_way_out() {
        let m = Unsafe::EvictionPolicy("allkeys-lru".into()).message();
        for part in [
            "maxmemory-policy is allkeys-lru",
            "noeviction",
            "CONFIG SET maxmemory-policy noeviction",
            "queue.allow_eviction: true",
        ] {
            assert!(m.contains(part), "{part}: {m}");
        }
        let m = Unsafe::Version("6.2.14".into()).message();
        assert!(
            m.contains("\"6.2.14\"") && m.contains("7.0 or newer"),
            "{m}"
        );
    }

    #[test]
    fn version_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(info_version(info), "7.0.15");
        assert_eq!(info_version("# Server\r\n"), "");
    }

    #[test]
    fn config_get_answers_in_both_protocols() {
        let name = || Value::BulkString(b"maxmemory-policy".to_vec());
        let value = || Value::BulkString(b"allkeys-lru".to_vec());
        assert_eq!(
            config_value(Value::Array(vec![name(), value()])).as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(
            config_value(Value::Map(vec![(name(), value())])).as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(config_value(Value::Array(vec![])), None);
    }

    #[test]
    fn only_a_refused_command_ends_the_check() {
        use redis::{ErrorKind, ServerErrorKind};
        assert!(is_refusal(ErrorKind::Server(
            ServerErrorKind::ResponseError
        )));
        assert!(is_refusal(ErrorKind::Server(ServerErrorKind::NoPerm)));
        assert!(is_refusal(ErrorKind::Extension));
        for busy in [
            ServerErrorKind::BusyLoading,
            ServerErrorKind::TryAgain,
            ServerErrorKind::MasterDown,
            ServerErrorKind::ReadOnly,
            ServerErrorKind::ClusterDown,
        ] {
            assert!(!is_refusal(ErrorKind::Server(busy)), "{busy:?}");
        }
        assert!(!is_refusal(ErrorKind::Io));
    }
}
