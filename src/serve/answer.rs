//! The one JSON error body both API surfaces answer with,
//! `{"error": {"code", "message"[, "details"]}}`, and the answers the
//! listener itself gives: a body that timed out (408), a path no route
//! serves (404) and a method a route does not take (405). Inbound errors and
//! the admin API build their bodies here, so a client parses one shape.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `{"error": {"code", "message"}}` (with `details` when given) as `status`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<Value>,
) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = details {
        error["details"] = d;
    }
    (status, Json(json!({ "error": error }))).into_response()
}

/// The error a request body yields once `server.body_timeout` has passed
/// (the listener puts the deadline on every body, see [`super::body`]); the
/// inbound handlers turn it into their 408, and the listener answers
/// [`body_timeout`] for a handler that did not read the body to its end.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not complete within {after:?}")]
pub struct BodyTimedOut {
    /// `server.body_timeout`.
    pub after: Duration,
}

/// What a client whose body timed out is told.
pub fn body_timeout_message(after: &Duration) -> String {
    format!(
        "the request body was not complete within server.body_timeout ({}s): send the \
         whole body without pausing, or raise server.body_timeout",
        after.as_secs()
    )
}

/// 408 `body_timeout`.
pub fn body_timeout(after: Duration) -> Response {
    error_response(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        &body_timeout_message(&after),
        None,
    )
}

/// The answer for a path no route serves (axum's own is an empty 404).
pub async fn no_route(uri: axum::http::Uri) -> Response {
    let shown: String = uri.path().chars().take(200).collect();
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("nothing is served at `{shown}`: check the URL"),
        None,
    )
}

/// The answer for a method a route does not take (axum's own is empty).
pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("method {method} is not accepted at this path"),
        None,
    )
}

/// Add `Retry-After: secs` to an answer.
pub fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}
