//! `GET|POST /v1/webhooks`, `GET|DELETE /v1/webhooks/{id}` (SPEC §4, §8).
//!
//! YAML subscriptions are listed beside the API-created ones and are
//! read-only here (deleting one is a 409 that says to edit the config).
//! Views never show secret values: a YAML URL held in a secret shows the
//! secret's name, a templated YAML URL shows only its literal origin (the
//! path may hold `${VAR}` values), and API subscriptions show header names
//! with credential values redacted. The signing secret of an API
//! subscription is returned once, in the answer to its creation.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::{ApiError, authorize};
use super::webhook_request::{CreateRequest, WebhookError, validate_create};
use crate::config::{EventPattern, Scope, Subscription, TargetUrl};
use crate::model::{ApiSubscription, Handshake, Verification};
use crate::queue::Target;
use crate::runtime::App;
use crate::runtime::subscriptions::change_and_reload;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", get(show).delete(remove))
}

fn pattern_text(p: &EventPattern) -> String {
    match p {
        EventPattern::All => "*".to_owned(),
        EventPattern::Prefix(p) => format!("{p}*"),
        EventPattern::Exact(e) => e.clone(),
    }
}

/// A YAML subscription as the API shows it.
pub fn yaml_view(s: &Subscription) -> Value {
    let url = match &s.url {
        TargetUrl::Secret(secret) => json!({ "secret": secret.name }),
        TargetUrl::Template { template, .. } => {
            match crate::send::literal_origin(&template.source) {
                Ok(origin) => json!(origin.origin().ascii_serialization()),
                Err(_) => Value::Null,
            }
        }
    };
    json!({
        "id": s.id,
        "source": "yaml",
        "url": url,
        "events": s.events.iter().map(pattern_text).collect::<Vec<_>>(),
        "verify": s.verify,
        "paused": s.delivery.paused,
        "target": Target::Subscription { id: s.id.clone() }.label(),
    })
}

/// An API subscription as the API shows it (no signing secret).
pub fn api_view(s: &ApiSubscription) -> Value {
    let headers: serde_json::Map<String, Value> = crate::send::redact_headers(&s.headers, &[])
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "id": s.id,
        "source": "api",
        "url": s.url.as_str(),
        "events": s.events,
        "headers": headers,
        "verify": false,
        "created_by": s.created_by,
        "created_at": s.created_at,
        "target": Target::Subscription { id: s.id.clone() }.label(),
    })
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let snapshot = app.snapshot();
    authorize(&snapshot.config, &headers, Scope::WebhooksRead)?;
    let mut out: Vec<Value> = snapshot
        .config
        .subscriptions
        .iter()
        .map(|s| yaml_view(s))
        .collect();
    out.extend(snapshot.api_subscriptions().map(api_view));
    Ok(Json(json!({ "webhooks": out })))
}

async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snapshot = app.snapshot();
    authorize(&snapshot.config, &headers, Scope::WebhooksRead)?;
    let (mut view, required) = if let Some(s) = snapshot.config.subscription(&id) {
        (yaml_view(s), s.verify)
    } else if let Some(t) = snapshot.api_subscription(&id) {
        (api_view(&t.subscription), false)
    } else {
        return Err(ApiError::not_found(format!("subscription {id:?}")));
    };
    let handshake = if required {
        let stored = app
            .queue()
            .state(&Handshake::key(&id))
            .await
            .map_err(ApiError::queue)?;
        Handshake::from_stored(stored)
    } else {
        Handshake::default()
    };
    view["verification"] = json!(handshake.verification(required));
    Ok(Json(json!({ "webhook": view })))
}

async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let caller = authorize(config, &headers, Scope::WebhooksWrite)?;
    let Json(req) = body.map_err(|e| {
        ApiError::invalid(format!(
            "bad request body: {}; expected {{\"url\", \"events\": [...], \"id\"?, \"secret\"?, \"headers\"?}}",
            e.body_text()
        ))
    })?;
    let sub = validate_create(
        req,
        |id| config.subscription(id).is_some() || snapshot.api_subscription(id).is_some(),
        snapshot.sender.policy(),
        &caller.token,
        jiff::Timestamp::now(),
    )
    .map_err(|e| match e {
        WebhookError::IdTaken(_) => ApiError::conflict(e.to_string()),
        WebhookError::Invalid(m) => ApiError::invalid(m),
        WebhookError::Egress(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "egress_refused", m)
        }
    })?;
    let doc = serde_json::to_value(&sub)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let id = sub.id.clone();
    let stored = change_and_reload(&app, async |q| q.put_subscription(&id, &doc).await)
        .await
        .map_err(ApiError::queue)?;
    if !stored {
        return Err(ApiError::conflict(
            WebhookError::IdTaken(sub.id.clone()).to_string(),
        ));
    }
    tracing::info!(subscription = %sub.id, token = %caller.token, "subscription created through the API");
    let mut view = api_view(&sub);
    view["verification"] = json!(Verification::NotRequired);
    let secret = sub.secrets.first().cloned();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "webhook": view, "secret": secret })),
    )
        .into_response())
}

async fn remove(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let config = app.config();
    let caller = authorize(&config, &headers, Scope::WebhooksWrite)?;
    if config.subscription(&id).is_some() {
        return Err(ApiError::conflict(format!(
            "subscription {id:?} is defined in the YAML config and is read-only through the API; \
             remove it from the config files instead"
        )));
    }
    let deleted = change_and_reload(&app, async |q| q.delete_subscription(&id).await)
        .await
        .map_err(ApiError::queue)?;
    if !deleted {
        return Err(ApiError::not_found(format!("subscription {id:?}")));
    }
    app.metrics()
        .forget_target(&Target::Subscription { id: id.clone() }.label());
    tracing::info!(subscription = %id, token = %caller.token, "subscription deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
