//! Provider handshakes, answered by the trigger itself and never enqueued
//! (SPEC §3): Slack's `url_verification`, Meta's `GET hub.challenge`
//! subscription check, Zoom's `endpoint.url_validation`.
//!
//! Slack and Zoom handshakes are ordinary signed POSTs, so they run after
//! the trigger's verification; Meta's GET carries no signature, only the
//! verify token, which is compared (constant-time) with the trigger's
//! handshake secrets.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::InboundError;
use super::map::form_object;
use crate::config::{Handshake, Trigger};
use crate::model::mac::{hex_encode, hmac_sha256};

/// Answer a Meta subscription check (`GET ?hub.mode=subscribe&
/// hub.verify_token=…&hub.challenge=…`): the challenge as plain text when
/// the token matches a handshake secret, else 403.
pub fn meta_get(trigger: &Trigger, query: Option<&str>) -> Result<Response, InboundError> {
    let q = form_object(query.unwrap_or("").as_bytes());
    let text = |k: &str| q.get(k).and_then(Value::as_str).unwrap_or("");
    if text("hub.mode") != "subscribe" {
        return Err(InboundError::HandshakeRefused(
            "expected `hub.mode=subscribe` in the query".into(),
        ));
    }
    let token = text("hub.verify_token").as_bytes();
    if crate::config::secret::position_of(&trigger.handshake_secrets, token).is_none() {
        return Err(InboundError::HandshakeRefused(
            "`hub.verify_token` does not match the trigger's handshake secret".into(),
        ));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text("hub.challenge").to_owned(),
    )
        .into_response())
}

/// The answer to a POSTed handshake, when `body` is one for the trigger's
/// `handshake`; `None` for ordinary events.
pub fn answer_post(trigger: &Trigger, body: &Value) -> Option<Response> {
    match trigger.handshake? {
        Handshake::Slack => {
            if body.get("type")?.as_str()? != "url_verification" {
                return None;
            }
            let challenge = body.get("challenge").cloned().unwrap_or(Value::Null);
            Some((StatusCode::OK, Json(json!({ "challenge": challenge }))).into_response())
        }
        Handshake::Zoom => {
            if body.get("event")?.as_str()? != "endpoint.url_validation" {
                return None;
            }
            let plain = body.get("payload")?.get("plainToken")?.as_str()?;
            let secret = trigger.handshake_secrets.first()?;
            let tag = hmac_sha256(secret.expose(), &[plain.as_bytes()])?;
            Some(
                (
                    StatusCode::OK,
                    Json(json!({ "plainToken": plain, "encryptedToken": hex_encode(&tag) })),
                )
                    .into_response(),
            )
        }
        Handshake::Meta => None,
    }
}
