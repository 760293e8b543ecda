//! The snapshot: everything a request or a job needs, immutable, built by
//! one of the runtime's writers and swapped in whole (SPEC §12).
//!
//! - the compiled config, which holds every trigger's compiled verify
//!   rules and resolved secrets, and every target's retry schedule and
//!   signing keys;
//! - the subscriptions created through the API, each with its delivery
//!   options compiled once (a 30 s timeout, the default retry schedule,
//!   Standard Webhooks signing with its own secrets);
//! - the HTTP sender, built for the config's egress policy.
//!
//! A handler or worker loads one snapshot and uses it to the end, so a
//! reload or a subscription change in the middle of a request or a job is
//! seen by the next one, never half by this one.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    Config, DeliveryOptions, Ordering, RetryPolicy, Secret, Signing, SigningScheme,
};
use crate::model::{ApiSubscription, EventPattern};
use crate::send::Sender;

/// An API-created subscription with its event patterns and delivery
/// options compiled.
#[derive(Debug)]
pub struct ApiTarget {
    pub subscription: ApiSubscription,
    pub patterns: Vec<EventPattern>,
    pub delivery: DeliveryOptions,
}

/// How long an attempt to an API subscription may take.
const API_TIMEOUT: Duration = Duration::from_secs(30);

impl ApiTarget {
    pub fn new(subscription: ApiSubscription) -> ApiTarget {
        let secrets: Vec<Secret> = subscription
            .secrets
            .iter()
            .map(|s| Secret::new(format!("{} signing secret", subscription.id), s.as_bytes()))
            .collect();
        let signing =
            (!secrets.is_empty()).then(|| Signing::new(SigningScheme::StandardWebhooks, secrets));
        ApiTarget {
            patterns: subscription
                .events
                .iter()
                .map(|p| EventPattern::parse(p))
                .collect(),
            delivery: DeliveryOptions {
                timeout: API_TIMEOUT,
                retry: RetryPolicy::default(),
                signing,
                headers: Vec::new(),
                // Never: an API token must not send a config secret.
                auth: None,
                transport: None,
                rate_limit: None,
                max_in_flight: None,
                ordering: Ordering::Parallel,
                paused: false,
            },
            subscription,
        }
    }
}

/// One immutable view of the daemon's state.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// API-created subscriptions, sorted by id.
    pub subscriptions: Arc<[Arc<ApiTarget>]>,
    pub sender: Arc<Sender>,
}

impl Snapshot {
    /// The API subscription `id`, if this snapshot has it.
    pub fn api_subscription(&self, id: &str) -> Option<&Arc<ApiTarget>> {
        self.subscriptions
            .binary_search_by(|t| t.subscription.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.subscriptions[i])
    }

    /// The API subscriptions as stored.
    pub fn api_subscriptions(&self) -> impl Iterator<Item = &ApiSubscription> {
        self.subscriptions.iter().map(|t| &t.subscription)
    }

    /// Each API subscription's id and event patterns, as the router reads
    /// them.
    pub fn api_routes(&self) -> impl Iterator<Item = (&str, &[EventPattern])> {
        self.subscriptions
            .iter()
            .map(|t| (t.subscription.id.as_str(), &t.patterns[..]))
    }

    /// This snapshot with another config (and sender, when given).
    pub fn with_config(&self, config: Config, sender: Option<Sender>) -> Snapshot {
        Snapshot {
            config: Arc::new(config),
            subscriptions: Arc::clone(&self.subscriptions),
            sender: sender.map_or_else(|| Arc::clone(&self.sender), Arc::new),
        }
    }

    /// This snapshot with another set of API subscriptions.
    pub fn with_subscriptions(&self, mut subs: Vec<ApiSubscription>) -> Snapshot {
        subs.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            config: Arc::clone(&self.config),
            subscriptions: subs
                .into_iter()
                .map(|s| Arc::new(ApiTarget::new(s)))
                .collect(),
            sender: Arc::clone(&self.sender),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sub(id: &str) -> ApiSubscription {
        ApiSubscription {
            id: id.to_owned(),
            url: "https://example.com/in".parse().unwrap(),
            events: vec!["*".to_owned()],
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()],
            headers: vec![],
            created_by: "t".to_owned(),
            created_at: "2026-05-01T12:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn api_subscriptions_are_found_by_id_with_their_options_compiled() {
        let opts = crate::config::LoadOptions {
            no_env: false,
            env: Some(Default::default()),
        };
        let yaml = "server: { listen: \"127.0.0.1:0\" }\n";
        let config = crate::config::load_str(yaml, std::path::Path::new("c.yaml"), opts).unwrap();
        let snap = Snapshot {
            config: Arc::new(config),
            subscriptions: Arc::from(Vec::new()),
            sender: Arc::new(Sender::new(Default::default()).unwrap()),
        };
        let snap = snap.with_subscriptions(vec![sub("b"), sub("a"), sub("c")]);
        let ids: Vec<_> = snap.api_subscriptions().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let b = snap.api_subscription("b").unwrap();
        assert_eq!(b.delivery.timeout, Duration::from_secs(30));
        assert_eq!(b.delivery.retry, RetryPolicy::default());
        let keys = &b.delivery.signing.as_ref().unwrap().keys;
        assert_eq!(keys.scheme, crate::model::signing::Scheme::StandardWebhooks);
        assert!(keys.check().is_ok());
        assert!(snap.api_subscription("d").is_none());
    }
}
