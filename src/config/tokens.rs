//! API bearer tokens: the one check behind every `/v1` route (the event API
//! and the history/admin API alike), so both answer the same way (SPEC §8:
//! no token or an unknown one is 401, a known token without the route's
//! scope is 403). Token values are compared in constant time and never
//! appear in a message; only the token's name does.

use http::HeaderValue;

use super::raw::Scope;
use super::runtime::{Config, Token};

impl Scope {
    /// The scope as written in the config (`events:write`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::DeliveriesRead => "deliveries:read",
            Scope::DeliveriesWrite => "deliveries:write",
            Scope::Admin => "admin",
        }
    }
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "missing Authorization header; send `Authorization: Bearer <token>` with a token from `tokens:`"
    )]
    Missing,
    #[error("the Authorization header must use the Bearer scheme: `Authorization: Bearer <token>`")]
    NotBearer,
    #[error("unknown API token")]
    Unknown,
    #[error(
        "token `{token}` lacks the scope `{scope}` this route needs; add it to the token's scopes"
    )]
    MissingScope { token: String, scope: &'static str },
}

impl TokenError {
    /// 403 for a missing scope, 401 otherwise.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, TokenError::MissingScope { .. })
    }
}

impl Config {
    /// The token presented in an `Authorization` header value, if it is a
    /// known bearer token holding `scope`. Each API maps a refusal to its own
    /// error body; [`TokenError::is_forbidden`] tells 403 from 401.
    pub fn authorize_bearer(
        &self,
        authorization: Option<&HeaderValue>,
        scope: Scope,
    ) -> Result<&Token, TokenError> {
        // A value that is not visible ASCII cannot name a token.
        let value = authorization
            .ok_or(TokenError::Missing)?
            .to_str()
            .unwrap_or("")
            .trim();
        let presented = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => return Err(TokenError::NotBearer),
        };
        if presented.is_empty() {
            return Err(TokenError::NotBearer);
        }
        let token = self
            .token_for(presented.as_bytes())
            .ok_or(TokenError::Unknown)?;
        if !token.allows(scope) {
            return Err(TokenError::MissingScope {
                token: token.name.clone(),
                scope: scope.name(),
            });
        }
        Ok(token)
    }
}
