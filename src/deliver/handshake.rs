//! Subscription verification handshake (`verify: true`, SPEC §4).
//!
//! Before the first delivery to such a subscription the worker POSTs
//! `{"type":"webhook.verification","data":{"confirmation_token":"<random>"}}`,
//! signed like a delivery. A 2xx whose body contains the token (plain text
//! or `{"confirmation_token": "..."}`) verifies the subscription; anything
//! else is retried on the subscription's retry schedule (after the last
//! step, every last-step interval: deliveries keep waiting, never lost).
//!
//! State lives in the queue backend under `verify:<subscription id>` so it
//! survives restarts and is shared by replicas:
//! `{"state": "pending_verification" | "verified", "attempts": n,
//!   "next_at": RFC 3339, "last_error": "..."}`. `GET /v1/webhooks/{id}`
//! reads it from there. While pending, the worker defers the
//! subscription's jobs (no attempt used).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use serde_json::json;

use crate::config::{OutboundAuth, Subscription, TargetUrl};
use crate::deliver::oauth2::Tokens;
use crate::deliver::sign;
use crate::model::{Handshake, Verification};
use crate::queue::QueueError;
use crate::runtime::{App, Snapshot};
use crate::send::{OutboundRequest, Trust};

/// Whether deliveries to a subscription may go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Pending verification: try again at this time.
    Wait(Timestamp),
}

/// Handshake bookkeeping of one replica.
#[derive(Default)]
pub struct Handshakes {
    /// Subscriptions seen verified (saves a read per delivery).
    verified: Mutex<HashSet<String>>,
    /// Subscriptions with a handshake in flight on this replica.
    busy: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
}

/// Did the endpoint echo the token?
pub fn confirms(status: u16, body: &[u8], token: &str) -> bool {
    (200..300).contains(&status) && String::from_utf8_lossy(body).contains(token)
}

impl Handshakes {
    /// Check (and if due, run) the handshake of `sub`.
    pub async fn gate(
        &self,
        app: &App,
        snapshot: &Snapshot,
        sub: &Subscription,
        tokens: &Tokens,
    ) -> Result<Gate, QueueError> {
        if lock(&self.verified).contains(&sub.id) {
            return Ok(Gate::Open);
        }
        let key = Handshake::key(&sub.id);
        let state = Handshake::from_stored(app.queue().state(&key).await?);
        if state.verified() {
            lock(&self.verified).insert(sub.id.clone());
            return Ok(Gate::Open);
        }
        let now = Timestamp::now();
        if let Some(next) = state.next_at {
            if next > now {
                return Ok(Gate::Wait(next));
            }
        }
        if !lock(&self.busy).insert(sub.id.clone()) {
            return Ok(Gate::Wait(later(now, Duration::from_millis(500))));
        }
        let result = self.run(snapshot, sub, &state, tokens).await;
        lock(&self.busy).remove(&sub.id);
        let (verified, error) = match result {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        };
        let attempts = state.attempts + 1;
        if verified {
            let done = Handshake {
                state: Verification::Verified,
                attempts,
                verified_at: Some(now),
                ..Handshake::default()
            };
            app.queue().put_state(&key, &done.to_value()).await?;
            lock(&self.verified).insert(sub.id.clone());
            tracing::info!(subscription = %sub.id, "subscription verified");
            return Ok(Gate::Open);
        }
        let schedule = &sub.delivery.retry.schedule;
        let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let wait = schedule
            .get(index)
            .or(schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let next = later(Timestamp::now(), wait);
        let error = error.unwrap_or_default();
        tracing::warn!(subscription = %sub.id, attempts, "verification handshake failed: {error}");
        let pending = Handshake {
            state: Verification::PendingVerification,
            attempts,
            next_at: Some(next),
            last_error: Some(error),
            verified_at: None,
        };
        app.queue().put_state(&key, &pending.to_value()).await?;
        Ok(Gate::Wait(next))
    }

    /// One handshake request; `Err` says why it did not verify.
    async fn run(
        &self,
        snapshot: &Snapshot,
        sub: &Subscription,
        state: &Handshake,
        tokens: &Tokens,
    ) -> Result<(), String> {
        let confirmation = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let id = format!("verify_{}", ulid::Ulid::new());
        let body = Bytes::from(
            json!({"type": "webhook.verification", "data": {"confirmation_token": confirmation}})
                .to_string(),
        );
        let url = match &sub.url {
            TargetUrl::Secret(s) => s.expose_str().unwrap_or_default().to_owned(),
            // Merge tags need an event; a handshake has none, so they
            // render with an empty context.
            TargetUrl::Template { template, .. } => template
                .render(&snapshot.config.templates, minijinja::context! {})
                .map_err(|e| e.to_string())?,
        };
        let url = url::Url::parse(&url).map_err(|e| format!("invalid URL: {e}"))?;
        let attempt = u32::try_from(state.attempts + 1).unwrap_or(1);
        let mut headers: Vec<(String, String)> =
            sign::delivery_headers(&id, "webhook.verification", &id, attempt)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        headers.push(("Content-Type".into(), "application/json".into()));
        super::auth::apply(sub.delivery.auth.as_ref(), &mut headers);
        let mut token = None;
        if let Some(OutboundAuth::OAuth2(grant)) = &sub.delivery.auth {
            let t = tokens
                .get(
                    grant,
                    &snapshot.sender,
                    sub.delivery.transport.as_deref(),
                    sub.delivery.timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
            super::auth::set(&mut headers, t.bearer());
            token = Some((grant, t));
        }
        if let Some(s) = &sub.delivery.signing {
            let signed =
                sign::sign(&s.keys, &id, Timestamp::now(), &body).map_err(|e| e.to_string())?;
            headers.extend(signed.into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
        let req = OutboundRequest {
            method: reqwest::Method::POST,
            url,
            headers,
            body,
        };
        let limit = usize::try_from(snapshot.config.history.response_body_limit).unwrap_or(4096);
        match snapshot
            .sender
            .send(
                req,
                Trust::Config,
                sub.delivery.transport.as_deref(),
                sub.delivery.timeout,
                limit,
            )
            .await
        {
            Ok(r) if confirms(r.status, &r.body, &confirmation) => Ok(()),
            Ok(r) if r.status == 401 => {
                // The next handshake fetches a new token.
                if let Some((grant, t)) = token {
                    tokens.reject(grant, &t).await;
                }
                Err("HTTP 401 Unauthorized".to_owned())
            }
            Ok(r) => Err(format!(
                "HTTP {} without the confirmation token in the body",
                r.status
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_needs_2xx_and_token() {
        assert!(confirms(200, b"tok123", "tok123"));
        assert!(confirms(
            204,
            br#"{"confirmation_token":"tok123"}"#,
            "tok123"
        ));
        assert!(!confirms(200, b"nope", "tok123"));
        assert!(!confirms(500, b"tok123", "tok123"));
    }
}
