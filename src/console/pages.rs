//! The console's pages. Each reads one snapshot, checks the visitor's
//! session and scope, asks the queue (never a scan of all history: lists
//! are pages of the same cursor queries `/v1` serves) and renders a
//! template. Values shown are the API's: attempts were redacted when they
//! were recorded, and the config shows secrets by name only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Console, Visitor, visitor};
use crate::admin::history::{ListParams, history_query};
use crate::config::{Config, Scope, Verify};
use crate::model::DeliveryState;
use crate::queue::HistoryQuery;

/// Dead letters shown per page of `/ui/dead-letter`.
const DEAD_LETTER_PAGE: usize = 50;

/// A page's guard: the visitor, or the answer for one who may not see it
/// (the login form at `/ui/`, a redirect there elsewhere, 403 without the
/// scope).
pub(super) fn guard<'c>(
    console: &Console,
    config: &'c Config,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Visitor<'c>, Box<Response>> {
    let Some(who) = visitor(config, headers) else {
        return Err(Box::new(Redirect::to("/ui/").into_response()));
    };
    if !who.allows(scope) {
        return Err(Box::new(console.message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Not allowed",
            &format!(
                "Token `{}` lacks the scope `{}` this page needs.",
                who.session.token.name,
                scope.name()
            ),
        )));
    }
    Ok(who)
}

/// Messages a page shows after a change (`?done=` from the redirect).
#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<String>,
    failed: Option<String>,
}

/// `/ui/`: the login form without a session, the overview with one: the
/// numbers of `GET /v1/stats`, from the same function
/// ([`crate::admin::overview::overview`]).
pub async fn overview(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let snapshot = console.app.snapshot();
    let config = &snapshot.config;
    let Some(who) = visitor(config, &headers) else {
        return console.html(StatusCode::OK, "login.html", minijinja::context! {});
    };
    if !who.allows(Scope::DeliveriesRead) {
        return console.message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Nothing to show",
            &format!(
                "Token `{}` lacks the scope `deliveries:read` the console's pages need.",
                who.session.token.name
            ),
        );
    }
    let view = match crate::admin::overview::overview(&console.app, &snapshot).await {
        Ok(v) => v,
        Err(e) => return queue_problem(&console, &who, e),
    };
    let targets: Vec<Value> = view
        .targets
        .iter()
        .map(|t| {
            json!({
                "label": t.target, "configured": t.configured, "pending": t.pending,
                "in_flight": t.in_flight, "dead_letter": t.dead_letter, "attempts": t.attempts,
                "success_rate": t.success_rate.map(percent_text),
                "p95": t.p95_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| {
                    if t.attempts > 0 { "over 60 s".to_owned() } else { String::new() }
                }),
                "circuit": t.circuit, "paused": t.paused,
            })
        })
        .collect();
    let triggers: Vec<Value> = view
        .triggers
        .iter()
        .map(|t| {
            let verify = config
                .triggers
                .iter()
                .find(|c| c.id == t.trigger)
                .map(|c| verify_summary(&c.verify))
                .unwrap_or_default();
            let rejections: Vec<String> = t
                .rejections
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect();
            json!({
                "id": t.trigger, "configured": t.configured, "path": t.path, "verify": verify,
                "requests": t.requests, "rejected": t.rejected, "rejections": rejections,
            })
        })
        .collect();
    let q = &view.queue;
    let ctx = minijinja::context! {
        page => "overview",
        stats => json!({
            "ready": q.ready, "delayed": q.delayed, "in_flight": q.in_flight,
            "dead_letter": q.dead_letter,
            "oldest": format!("{:.0} s", q.oldest_age_seconds),
        }),
        window => view.window_minutes,
        targets => targets,
        triggers => triggers,
        ..who.context()
    };
    console.html(StatusCode::OK, "overview.html", ctx)
}

/// A success rate (0..=1) as the page shows it.
fn percent_text(rate: f64) -> String {
    let pct = rate * 100.0;
    if pct > 99.9 && pct < 100.0 {
        // Never round a failure away.
        "99.9%".to_owned()
    } else {
        format!("{pct:.1}%")
    }
}

/// A trigger's checks in words (never a secret).
pub(super) fn verify_summary(v: &Verify) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &v.signature {
        parts.push(format!("signature ({:?})", s.preset).to_lowercase());
    }
    if v.bearer.is_some() {
        parts.push("bearer token".to_owned());
    }
    if v.basic.is_some() {
        parts.push("basic auth".to_owned());
    }
    if !v.ip_allow.is_empty() {
        parts.push(format!("IP allow list ({} networks)", v.ip_allow.len()));
    }
    if v.url_token.is_some() {
        parts.push("URL token".to_owned());
    }
    if parts.is_empty() {
        "none (open)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The events page's query string.
#[derive(Debug, Default, Deserialize)]
pub struct EventFilters {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    state: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
}

impl EventFilters {
    /// The filters as a query string (for the next page's link).
    fn query_string(&self, cursor: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("type", &self.event_type),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
            ("state", &self.state),
            ("target", &self.target),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                q.append_pair(k, v);
            }
        }
        q.append_pair("cursor", cursor);
        q.finish()
    }
}

/// `/ui/events`: filter by id, type, time, delivery state and target; paged.
pub async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(f): Query<EventFilters>,
) -> Response {
    let snapshot = console.app.snapshot();
    let who = match guard(&console, &snapshot.config, &headers, Scope::DeliveriesRead) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    if let Some(id) = f.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let to = format!("/ui/events/{}", percent(id));
        return Redirect::to(&to).into_response();
    }
    let params = ListParams {
        event_type: f.event_type.clone(),
        source: f.source.clone(),
        since: f.since.clone(),
        until: f.until.clone(),
        state: f.state.clone(),
        target: f.target.clone(),
        limit: Some(50),
        cursor: f.cursor.clone(),
    };
    let filters = json!({
        "id": "", "type": f.event_type.clone().unwrap_or_default(),
        "source": f.source.clone().unwrap_or_default(),
        "since": f.since.clone().unwrap_or_default(), "until": f.until.clone().unwrap_or_default(),
        "state": f.state.clone().unwrap_or_default(), "target": f.target.clone().unwrap_or_default(),
    });
    let query: HistoryQuery = match history_query(params, Timestamp::now()) {
        Ok(q) => q,
        Err(e) => {
            let ctx = minijinja::context! {
                page => "events", filters => filters, events => Vec::<Value>::new(),
                problem => e.message, ..who.context()
            };
            return console.html(StatusCode::UNPROCESSABLE_ENTITY, "events.html", ctx);
        }
    };
    let page = match events_page(&console, &query).await {
        Ok(p) => p,
        Err(e) => return queue_problem(&console, &who, e),
    };
    let next = page.next_cursor.map(|c| f.query_string(&c));
    let ctx = minijinja::context! {
        page => "events",
        filters => filters,
        events => page.items,
        next => next,
        ..who.context()
    };
    console.html(StatusCode::OK, "events.html", ctx)
}

/// A page of events. Filtered by a delivery's state or target, it is the
/// events of a page of such deliveries (the queue pages deliveries by
/// those, and dead letters from their own set), then the event filters.
async fn events_page(
    console: &Console,
    query: &HistoryQuery,
) -> Result<crate::queue::Page<crate::model::Event>, crate::queue::QueueError> {
    let queue = console.app.queue();
    if query.state.is_none() && query.target.is_none() {
        return queue.events(query).await;
    }
    let deliveries = queue.deliveries(query).await?;
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in &deliveries.items {
        if !seen.insert(d.event_id.clone()) {
            continue;
        }
        if let Some(event) = queue.event_only(&d.event_id).await? {
            if query.admits(&event) {
                events.push(event);
            }
        }
    }
    Ok(crate::queue::Page {
        items: events,
        next_cursor: deliveries.next_cursor,
    })
}

/// `/ui/events/{id}`: the payload and every delivery's attempts.
pub async fn event(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let snapshot = console.app.snapshot();
    let who = match guard(&console, &snapshot.config, &headers, Scope::DeliveriesRead) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let (event, deliveries) = match console.app.queue().event(&id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return console.message(
                StatusCode::NOT_FOUND,
                Some(&who),
                "Not found",
                &format!("There is no event {id:?} in history (it may have been pruned)."),
            );
        }
        Err(e) => return queue_problem(&console, &who, e),
    };
    let payload = serde_json::to_string_pretty(&event.data).unwrap_or_default();
    let ctx = minijinja::context! {
        page => "events",
        event => event,
        payload => payload,
        deliveries => deliveries,
        notice => notice.done,
        problem => notice.failed,
        ..who.context()
    };
    console.html(StatusCode::OK, "event.html", ctx)
}

/// `/ui/dead-letter`: dead-lettered deliveries by target, with reasons.
pub async fn dead_letter(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(notice): Query<DeadLetterQuery>,
) -> Response {
    let snapshot = console.app.snapshot();
    let who = match guard(&console, &snapshot.config, &headers, Scope::DeliveriesRead) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let query = HistoryQuery {
        state: Some(DeliveryState::DeadLetter),
        limit: DEAD_LETTER_PAGE,
        cursor: notice.cursor.clone().filter(|c| !c.is_empty()),
        ..Default::default()
    };
    let page = match console.app.queue().deliveries(&query).await {
        Ok(p) => p,
        Err(e) => return queue_problem(&console, &who, e),
    };
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for d in page.items {
        let target = d.target.clone();
        // Only what the page shows (a record carries every attempt's
        // request and response).
        let row = json!({"id": d.id, "event_id": d.event_id, "reason": d.reason,
                         "attempts": d.attempts.len()});
        groups.entry(target).or_default().push(row);
    }
    let more = page.next_cursor.is_some();
    let next = page.next_cursor.map(|c| format!("cursor={}", percent(&c)));
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(target, deliveries)| json!({"target": target, "deliveries": deliveries, "more": more}))
        .collect();
    let ctx = minijinja::context! {
        page => "dead-letter",
        groups => groups,
        confirm_all => notice.confirm.as_deref() == Some("all"),
        next => next,
        notice => notice.done,
        problem => notice.failed,
        ..who.context()
    };
    console.html(StatusCode::OK, "dead_letter.html", ctx)
}

/// `/ui/dead-letter`'s query: a notice, or the second step of "redrive all".
#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterQuery {
    cursor: Option<String>,
    done: Option<String>,
    failed: Option<String>,
    confirm: Option<String>,
}

/// `/ui/config` (scope `admin`): the files as written and the last reload.
pub async fn config(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let snapshot = console.app.snapshot();
    let who = match guard(&console, &snapshot.config, &headers, Scope::Admin) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let view = crate::admin::control::config_view(&console.app, &snapshot);
    let reload = console
        .app
        .last_reload()
        .map(|r| json!({"at": r.at.to_string(), "ok": r.ok, "errors": r.errors}));
    let ctx = minijinja::context! {
        page => "config",
        view => view,
        reload => reload,
        ..who.context()
    };
    console.html(StatusCode::OK, "config.html", ctx)
}

fn queue_problem(console: &Console, who: &Visitor<'_>, e: crate::queue::QueueError) -> Response {
    tracing::warn!("console page failed on the queue backend: {e}");
    console.message(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(who),
        "Queue unavailable",
        "The queue backend did not answer; try again shortly (details are in the daemon's log).",
    )
}

/// Bytes encoded in one path segment or query value: all but letters,
/// digits and `-_~` (so `/` and `.` can never form another path).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `text` as one path segment.
pub fn percent(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::percent_text;

    #[test]
    fn success_rates_show_one_decimal_and_never_round_a_failure_away() {
        assert_eq!(percent_text(0.375), "37.5%");
        assert_eq!(percent_text(1.0), "100.0%");
        assert_eq!(percent_text(0.0), "0.0%");
        assert_eq!(percent_text(0.99995), "99.9%");
    }
}
