//! Who gets which events: event type patterns (`name`, `prefix.*`, `*`),
//! shared by YAML workflows and subscriptions, and the subscriptions created
//! at runtime through `POST /v1/webhooks`, as stored.
//!
//! API subscriptions are stored as JSON documents in the queue backend (they
//! survive restarts and every replica reads them). Unlike YAML subscriptions
//! their URL and headers are plain values, never templates: a client must not
//! be able to run template code in the daemon.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// An event type pattern: `name`, `prefix.*`, `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventPattern {
    /// Every type.
    All,
    /// Types starting with this (the `prefix.` including the dot).
    Prefix(String),
    /// This type.
    Exact(String),
}

impl EventPattern {
    /// Parse `*`, `a.*`, `a.b`.
    pub fn parse(s: &str) -> EventPattern {
        if s == "*" {
            EventPattern::All
        } else if let Some(p) = s.strip_suffix('*') {
            EventPattern::Prefix(p.to_owned())
        } else {
            EventPattern::Exact(s.to_owned())
        }
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::All => true,
            EventPattern::Prefix(p) => event_type.starts_with(p.as_str()),
            EventPattern::Exact(e) => e == event_type,
        }
    }
}

/// A runtime-created subscription, as stored. `Debug` shows how many
/// secrets it has and its header names, never their values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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

impl std::fmt::Debug for ApiSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ApiSubscription")
            .field("id", &self.id)
            .field("url", &self.url.origin().ascii_serialization())
            .field("events", &self.events)
            .field("secrets", &self.secrets.len())
            .field("headers", &header_names)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl ApiSubscription {
    /// Whether an event of `event_type` goes to this subscription.
    pub fn matches(&self, event_type: &str) -> bool {
        self.events
            .iter()
            .any(|p| EventPattern::parse(p).matches(event_type))
    }
}

/// Verification state of a subscription (SPEC §4), as `GET /v1/webhooks/{id}`
/// shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    NotRequired,
    #[default]
    PendingVerification,
    Verified,
}

/// A subscription's verification handshake as stored in the queue backend
/// under [`Handshake::key`], shared by replicas and kept across restarts:
/// the one shape the worker writes and both the worker and the API read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    pub state: Verification,
    /// Handshake requests made so far.
    #[serde(default)]
    pub attempts: u64,
    /// While pending: no new handshake before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
    /// Why the last handshake did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Handshake {
    /// The queue state key of subscription `id`'s handshake.
    pub fn key(id: &str) -> String {
        format!("verify:{id}")
    }

    /// The stored state, read field by field: a field that does not decode
    /// is left at its default rather than losing the others. Nothing stored
    /// is a handshake not yet made (pending, no attempts). Documents written
    /// before the shape was fixed (`"verified"`, `{"verified": true}`) still
    /// read as verified.
    pub fn from_stored(stored: Option<serde_json::Value>) -> Handshake {
        use serde_json::Value;
        let Some(v) = stored else {
            return Handshake::default();
        };
        let time = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok())
        };
        let verified = match &v {
            Value::String(s) => s == "verified",
            Value::Object(m) => {
                m.get("state").and_then(Value::as_str) == Some("verified")
                    || m.get("verified").and_then(Value::as_bool) == Some(true)
            }
            _ => false,
        };
        Handshake {
            state: if verified {
                Verification::Verified
            } else {
                Verification::PendingVerification
            },
            attempts: v.get("attempts").and_then(Value::as_u64).unwrap_or(0),
            next_at: time("next_at"),
            verified_at: time("verified_at"),
            last_error: v
                .get("last_error")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    /// The stored form.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn verified(&self) -> bool {
        self.state == Verification::Verified
    }

    /// What the API shows for a subscription that does (`required`) or does
    /// not need the handshake.
    pub fn verification(&self, required: bool) -> Verification {
        match (required, self.verified()) {
            (false, _) => Verification::NotRequired,
            (true, true) => Verification::Verified,
            (true, false) => Verification::PendingVerification,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_handshake_state_round_trips_and_reads_what_the_worker_wrote() {
        assert_eq!(
            Handshake::from_stored(None).verification(false),
            Verification::NotRequired
        );
        assert_eq!(
            Handshake::from_stored(None).verification(true),
            Verification::PendingVerification
        );
        let written =
            json!({"state": "verified", "attempts": 2, "verified_at": "2026-05-01T12:00:00Z"});
        let h = Handshake::from_stored(Some(written.clone()));
        assert_eq!(h.verification(true), Verification::Verified);
        assert_eq!(h.attempts, 2);
        assert_eq!(h.to_value(), written);
        let pending = json!({"state": "pending_verification", "attempts": 1,
                             "next_at": "2026-05-01T12:00:00Z", "last_error": "502"});
        let h = Handshake::from_stored(Some(pending));
        assert_eq!(h.verification(true), Verification::PendingVerification);
        assert_eq!(h.last_error.as_deref(), Some("502"));
        // Something else under the key is a handshake not yet made.
        let h = Handshake::from_stored(Some(json!("garbage")));
        assert_eq!(h, Handshake::default());
        // Shapes written before this one still read as verified.
        for old in [json!("verified"), json!({"verified": true})] {
            let h = Handshake::from_stored(Some(old));
            assert_eq!(h.verification(true), Verification::Verified);
        }
        // A bad field loses only itself.
        let h = Handshake::from_stored(Some(json!({"state": "pending_verification",
                                                   "attempts": 3, "next_at": "soon"})));
        assert_eq!((h.attempts, h.next_at), (3, None));
        assert_eq!(Handshake::key("s1"), "verify:s1");
    }
}
