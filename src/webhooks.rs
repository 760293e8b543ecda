//! Subscriptions created at runtime through `POST /v1/webhooks` (SPEC §4).
//!
//! They are stored as JSON documents in the queue backend (so they survive
//! restarts and are shared by replicas) and cached in memory in
//! [`crate::app::App`] for the router and the workers. Unlike YAML
//! subscriptions their URL and headers are plain values, never templates
//! (a client must not be able to run template code in the daemon), and they
//! are untrusted targets: the egress policy refuses internal addresses.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::EventPattern;

/// A runtime-created subscription, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSubscription {
    /// Unique across YAML and API subscriptions.
    pub id: String,
    pub url: url::Url,
    /// Event type patterns: exact names, `prefix.*`, or `*`.
    pub events: Vec<String>,
    /// Signing secrets (`whsec_…`, Standard Webhooks), newest first; the
    /// first is generated at creation when none is given.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Literal extra headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Name of the token that created it.
    pub created_by: String,
    pub created_at: Timestamp,
}

impl ApiSubscription {
    /// Whether an event of `event_type` goes to this subscription.
    pub fn matches(&self, event_type: &str) -> bool {
        self.events
            .iter()
            .any(|p| EventPattern::parse(p).matches(event_type))
    }
}
