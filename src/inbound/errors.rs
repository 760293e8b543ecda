//! The inbound error type and its HTTP answer.
//!
//! Every failure of `/hooks/*` and `/v1/events` becomes one [`InboundError`],
//! answered as `{"error": {"code": "...", "message": "..."}}` with the status
//! SPEC §3 fixes (404 unknown trigger, 401 signature/credentials, 403 IP or
//! scope, 408 body too slow (§11), 413 body, 422 input, 429 rate limit, 503
//! queue, or 429 for a trigger with `on_unavailable: 429`, §14). Messages say what the sender or operator should do and never
//! contain a secret.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::verify::VerifyError;
use crate::config::{OnUnavailable, TokenError};
use crate::queue::QueueError;
use crate::serve::answer::{error_response, with_retry_after};

/// Why an inbound request was refused. Nothing was enqueued.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// No trigger serves this path.
    #[error("no trigger is configured at `{0}`: check the URL against the trigger's id or `path`")]
    UnknownTrigger(String),
    /// The method is not served here.
    #[error("method {0} is not accepted here: send a POST")]
    MethodNotAllowed(String),
    /// Signature, IP, bearer or basic check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The event API needs a bearer token, and this one is missing or unknown.
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but lacks the scope.
    #[error("{0}")]
    Forbidden(String),
    /// The body exceeds `server.max_body`.
    #[error("request body is larger than server.max_body ({limit} bytes)")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An event API batch holds more than [`super::api::MAX_BATCH`] events.
    #[error("a batch holds at most {max} events, this one has {got}: split it")]
    BatchTooLarge {
        /// The limit.
        max: usize,
        /// Events sent.
        got: usize,
    },
    /// The body could not be read or parsed.
    #[error("{0}")]
    BadBody(String),
    /// The body was not complete within `server.body_timeout`.
    #[error("{}", crate::serve::answer::body_timeout_message(.after))]
    BodyTimeout {
        /// `server.body_timeout`.
        after: Duration,
    },
    /// The event type could not be determined (`otherwise: reject`).
    #[error("{0}")]
    UnknownEventType(String),
    /// `event_catalog: strict` and the type is not declared.
    #[error(
        "event type `{0}` is not declared in event_types and event_catalog is strict: declare it, \
         or map the request to a declared type"
    )]
    UndeclaredType(String),
    /// A mapping failed (required field missing, conversion impossible).
    #[error("{0}")]
    Mapping(String),
    /// The mapped data does not match the event type's JSON Schema.
    #[error("data does not match the schema of event type `{event_type}`: {message}")]
    Schema {
        /// The event type.
        event_type: String,
        /// The validator's message, with the failing location.
        message: String,
    },
    /// The per-trigger rate limit is exhausted.
    #[error("rate limit of this trigger exceeded: retry after {retry_after_secs}s")]
    RateLimited {
        /// Whole seconds until a request would pass (at least 1).
        retry_after_secs: u64,
    },
    /// A provider handshake was refused (wrong verify token).
    #[error("{0}")]
    HandshakeRefused(String),
    /// The queue did not accept the write; nothing was stored. Answered
    /// with the trigger's `on_unavailable` status.
    #[error("the queue is unavailable, nothing was stored: retry shortly")]
    QueueUnavailable(OnUnavailable),
    /// The queue refuses new events: its Redis was found set to lose data
    /// after start (SPEC §11). The details (server settings) are in the
    /// daemon's log, not in an answer to the internet.
    #[error(
        "the queue refuses new events while its Redis is set to lose data (see the daemon's log); nothing was stored: retry later"
    )]
    QueueUnsafe(OnUnavailable),
    /// The event was stored, but not copied to `queue.replicas_ack`
    /// Redis replicas in time (SPEC §16). Answered as "queue unavailable"
    /// with the trigger's `on_unavailable` status; the event stays queued,
    /// so the sender's retry is answered as a duplicate where it carries
    /// the same idempotency key or event id.
    #[error(
        "the event was stored but not yet copied to enough queue replicas: retry shortly (a retry with the same idempotency key or event id is answered as a duplicate)"
    )]
    QueueNotReplicated(OnUnavailable),
}

impl InboundError {
    /// The answer to an event the queue did not take (logged here, since
    /// the answer carries no backend details).
    pub fn from_queue(err: QueueError) -> InboundError {
        tracing::warn!(error = %err, "queue refused an event");
        match err {
            QueueError::Unsafe(_) => InboundError::QueueUnsafe(OnUnavailable::default()),
            QueueError::NotReplicated(_) => {
                InboundError::QueueNotReplicated(OnUnavailable::default())
            }
            _ => InboundError::QueueUnavailable(OnUnavailable::default()),
        }
    }

    /// This error as a trigger with `on_unavailable` answers it: queue
    /// errors take that status, others are unchanged.
    pub fn answered_as(self, on: OnUnavailable) -> InboundError {
        match self {
            InboundError::QueueUnavailable(_) => InboundError::QueueUnavailable(on),
            InboundError::QueueUnsafe(_) => InboundError::QueueUnsafe(on),
            InboundError::QueueNotReplicated(_) => InboundError::QueueNotReplicated(on),
            other => other,
        }
    }
}

impl InboundError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            InboundError::UnknownTrigger(_) => StatusCode::NOT_FOUND,
            InboundError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            InboundError::Verify(e) => e.status(),
            InboundError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            InboundError::Forbidden(_) | InboundError::HandshakeRefused(_) => StatusCode::FORBIDDEN,
            InboundError::BodyTooLarge { .. } | InboundError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            InboundError::BadBody(_)
            | InboundError::UnknownEventType(_)
            | InboundError::UndeclaredType(_)
            | InboundError::Mapping(_)
            | InboundError::Schema { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            InboundError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            InboundError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            InboundError::QueueUnavailable(on)
            | InboundError::QueueUnsafe(on)
            | InboundError::QueueNotReplicated(on) => match on {
                OnUnavailable::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                OnUnavailable::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            },
        }
    }

    /// Stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            InboundError::UnknownTrigger(_) => "unknown_trigger",
            InboundError::MethodNotAllowed(_) => "method_not_allowed",
            InboundError::Verify(e) => e.code(),
            InboundError::Unauthorized(_) => "unauthorized",
            InboundError::Forbidden(_) => "forbidden",
            InboundError::BodyTooLarge { .. } => "body_too_large",
            InboundError::BatchTooLarge { .. } => "batch_too_large",
            InboundError::BadBody(_) => "invalid_body",
            InboundError::BodyTimeout { .. } => "body_timeout",
            InboundError::UnknownEventType(_) => "unknown_event_type",
            InboundError::UndeclaredType(_) => "undeclared_event_type",
            InboundError::Mapping(_) => "mapping_failed",
            InboundError::Schema { .. } => "schema_validation_failed",
            InboundError::RateLimited { .. } => "rate_limited",
            InboundError::HandshakeRefused(_) => "handshake_refused",
            InboundError::QueueUnavailable(_) | InboundError::QueueNotReplicated(_) => {
                "queue_unavailable"
            }
            InboundError::QueueUnsafe(_) => "queue_unsafe",
        }
    }
}

impl From<TokenError> for InboundError {
    /// 403 for a missing scope, 401 otherwise (as on every `/v1` route).
    fn from(e: TokenError) -> InboundError {
        if e.is_forbidden() {
            InboundError::Forbidden(e.to_string())
        } else {
            InboundError::Unauthorized(e.to_string())
        }
    }
}

/// Round a wait up to whole seconds for `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for InboundError {
    fn into_response(self) -> Response {
        let response = error_response(self.status(), self.code(), &self.to_string(), None);
        let retry_after = match &self {
            InboundError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            InboundError::QueueUnavailable(_) | InboundError::QueueNotReplicated(_) => Some(1),
            // An operator has to act first; a sender retrying every second
            // gains nothing.
            InboundError::QueueUnsafe(_) => Some(30),
            _ => None,
        };
        match retry_after {
            Some(secs) => with_retry_after(response, secs),
            None => response,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_follow_the_spec() {
        let cases = [
            (
                InboundError::UnknownTrigger("/hooks/x".into()),
                404,
                "unknown_trigger",
            ),
            (
                InboundError::BodyTooLarge { limit: 10 },
                413,
                "body_too_large",
            ),
            (InboundError::Mapping("x".into()), 422, "mapping_failed"),
            (
                InboundError::RateLimited {
                    retry_after_secs: 2,
                },
                429,
                "rate_limited",
            ),
            (
                InboundError::QueueUnavailable(OnUnavailable::default()),
                503,
                "queue_unavailable",
            ),
            (
                InboundError::QueueUnsafe(OnUnavailable::default()),
                503,
                "queue_unsafe",
            ),
            (
                InboundError::BodyTimeout {
                    after: Duration::from_secs(30),
                },
                408,
                "body_timeout",
            ),
            (
                InboundError::Verify(VerifyError::NoSecret),
                401,
                "invalid_signature",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn rate_limited_and_queue_errors_carry_retry_after() {
        let r = InboundError::RateLimited {
            retry_after_secs: 4,
        }
        .into_response();
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "4");
        let r = InboundError::QueueUnavailable(OnUnavailable::default()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
    }

    #[test]
    fn on_unavailable_429_changes_only_queue_errors() {
        let to_429 = OnUnavailable::TooManyRequests;
        let r = InboundError::QueueUnavailable(OnUnavailable::default())
            .answered_as(to_429)
            .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        let unsafe_queue = InboundError::QueueUnsafe(OnUnavailable::default()).answered_as(to_429);
        assert_eq!(unsafe_queue.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(unsafe_queue.code(), "queue_unsafe");
        let mapping = InboundError::Mapping("x".into()).answered_as(to_429);
        assert_eq!(mapping.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
