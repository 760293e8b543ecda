//! `/v1/admin/*` (scope `admin`): `POST /v1/admin/reload` and
//! `GET /v1/admin/config`.
//!
//! The config view returns each loaded file's text as written, before
//! `${VAR}` interpolation, so environment values appear as their `${VAR}`
//! reference and secrets only by name (values are never written inline:
//! they come from `secrets:` env vars or files), plus a summary of what is
//! loaded.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::{ApiError, authorize};
use crate::config::{ConfigError, Scope};
use crate::runtime::{App, Snapshot};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/config", get(config))
}

fn error_json(e: &ConfigError) -> Value {
    json!({
        "file": &*e.pos.file,
        "line": e.pos.line,
        "column": e.pos.col,
        "message": e.message,
        "text": e.to_string(),
    })
}

/// 200 with warnings and restart-needing changes, or 422 with every error.
async fn reload(State(app): State<App>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&app.config(), &headers, Scope::Admin)?;
    tracing::info!(token = %caller.token, "config reload requested through the API");
    match crate::runtime::reload::reload_async(&app).await {
        Ok(done) => Ok(Json(json!({
            "status": "reloaded",
            "warnings": done.warnings.iter().map(error_json).collect::<Vec<_>>(),
            "needs_restart": done.needs_restart,
        }))),
        Err(errs) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!(
                "the config has {} error(s); the previous config keeps serving",
                errs.errors.len()
            ),
        )
        .with_details(json!(
            errs.errors.iter().map(error_json).collect::<Vec<_>>()
        ))),
    }
}

async fn config(State(app): State<App>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let snapshot = app.snapshot();
    authorize(&snapshot.config, &headers, Scope::Admin)?;
    Ok(Json(config_view(&app, &snapshot)))
}

/// The config as `GET /v1/admin/config` shows it: the files as written
/// (secrets by name and `${VAR}` reference, never values) and a summary.
/// Shared by the API and the console.
pub fn config_view(app: &App, snapshot: &Snapshot) -> Value {
    let c = &snapshot.config;
    let files: Vec<Value> = c
        .sources
        .iter()
        .map(|f| {
            // Files as written, but never a password written inline in a URL.
            let text = crate::send::redact::userinfo(&f.raw_text);
            json!({"path": f.path.display().to_string(), "text": text})
        })
        .collect();
    let mut secrets: Vec<&str> = c.secrets.keys().map(String::as_str).collect();
    secrets.sort_unstable();
    let tokens: Vec<Value> = c
        .tokens
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "secret": t.secret.name,
                "scopes": t.scopes.iter().map(|s| s.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "path": app.config_path().display().to_string(),
        "files": files,
        "summary": {
            "triggers": c.triggers.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            "actions": c.actions.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            "workflows": c.workflows.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            "subscriptions": c.subscriptions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            "api_subscriptions": snapshot.subscriptions.len(),
            "event_types": c.event_types.len(),
            "secrets": secrets,
            "tokens": tokens,
            "queue": format!("{:?}", c.queue.backend).to_lowercase(),
            "reload": {"watch": c.reload.watch, "debounce_ms": c.reload.debounce.as_millis() as u64},
        },
    })
}
