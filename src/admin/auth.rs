//! Bearer tokens and scopes for `/v1/*`, and the JSON error every API
//! route answers with.
//!
//! SPEC §8: no token or an unknown one is 401, a known token without the
//! route's scope is 403. Tokens come from the config current at the time of
//! the request, so a reload that removes a token revokes it at once. Token
//! values are compared in constant time ([`crate::config::Secret::matches`])
//! and never logged; only the token's name is.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::{Config, Scope, TokenError};

/// An API error: `{"error": {"code", "message"}}` with an HTTP status.
/// `details` (e.g. every config error of a failed reload) is added under
/// `error.details` when present.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} not found", what.into()),
        )
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A queue backend error. The details go to the log only (a backend
    /// message may name hosts or paths); the client gets the kind.
    pub fn queue(e: crate::queue::QueueError) -> ApiError {
        use crate::queue::QueueError;
        tracing::warn!("API request failed on the queue backend: {e}");
        match e {
            QueueError::NotFound(what) => ApiError::not_found(what),
            QueueError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                "the queue backend is unavailable; try again shortly (details are in the daemon's log)",
            ),
            QueueError::NotReplicated(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                "the write was stored but not yet copied to enough queue replicas; try again shortly (details are in the daemon's log)",
            ),
            QueueError::Unsafe(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unsafe",
                "the queue refuses new events while its Redis is set to lose data (details are in the daemon's log)",
            ),
            QueueError::Corrupt(_) | QueueError::LeaseLost => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the queue backend answered unexpectedly (details are in the daemon's log)",
            ),
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = crate::serve::answer::error_response(
            self.status,
            self.code,
            &self.message,
            self.details,
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Who called: the name of the token presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: String,
}

/// Check `Authorization: Bearer <token>` against the config's tokens and
/// require `scope`: 401 without a (known) token, 403 without the scope.
pub fn authorize(config: &Config, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    let token = config.authorize_bearer(headers.get(header::AUTHORIZATION), scope)?;
    Ok(Caller {
        token: token.name.clone(),
    })
}

impl From<TokenError> for ApiError {
    /// 403 for a missing scope, 401 otherwise.
    fn from(e: TokenError) -> ApiError {
        if e.is_forbidden() {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
        } else {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "secrets: { r: { env: R } }\ntokens: [ { name: reader, secret: r, scopes: [deliveries:read] } ]\n",
        )
        .unwrap();
        let env = [("R".to_owned(), "s3cret-value".to_owned())].into();
        crate::config::load(
            &path,
            LoadOptions {
                no_env: false,
                env: Some(env),
            },
        )
        .unwrap()
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn tokens_and_scopes() {
        let c = config();
        let ok = authorize(&c, &headers("Bearer s3cret-value"), Scope::DeliveriesRead);
        assert_eq!(ok.unwrap().token, "reader");
        let lower = authorize(&c, &headers("bearer s3cret-value"), Scope::DeliveriesRead);
        assert!(lower.is_ok());
        let forbidden = authorize(&c, &headers("Bearer s3cret-value"), Scope::Admin).unwrap_err();
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
        assert!(forbidden.message.contains("admin"));
        for bad in [
            "Bearer s3cret-valu",
            "Bearer ",
            "Basic s3cret-value",
            "s3cret-value",
        ] {
            let e = authorize(&c, &headers(bad), Scope::DeliveriesRead).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert!(!e.message.contains("s3cret"), "{}", e.message);
        }
        let missing = authorize(&c, &HeaderMap::new(), Scope::DeliveriesRead).unwrap_err();
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        let resp = missing.into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
