//! The console's changes: login, logout, retry, replay, redrive. Each is a
//! form POST; every one but login must carry the session's CSRF token, and
//! each runs the same code as its `/v1` route under the same scope. A
//! refusal is a page (401/403/429), a success a redirect back (303) with a
//! notice, so a reload of the page never repeats the change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::percent;
use super::{Console, Visitor, client, session, visitor};
use crate::admin::history::{redrive_dead_letters, replay_event, retry_delivery};
use crate::config::{Config, Rate, Scope};

/// Login attempts allowed per client address: a burst of 10, then one
/// every 6 s. Every attempt counts, so a guesser gets 10 tries a minute.
const LOGINS: Rate = Rate {
    count: 10,
    per: Duration::from_secs(60),
};

/// Most client addresses the login limiter remembers.
const MAX_LOGIN_ADDRESSES: usize = 10_000;

/// Whom a login attempt counts against: the address, or for IPv6 its /64
/// (one host usually holds a whole /64).
fn login_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The fields of a posted form.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `POST /ui/login`: a known token starts a session.
pub async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    let snapshot = console.app.snapshot();
    let config = &snapshot.config;
    let (ip, tls) = client(config, &headers, &extensions);
    // Past this many addresses the limiter starts afresh rather than grow
    // without bound (a flood of addresses resets it, no address is locked
    // out forever).
    console.logins.forget_if_over(MAX_LOGIN_ADDRESSES);
    if let Err(wait) = console
        .logins
        .check(&login_key(ip), &LOGINS, Instant::now())
    {
        let mut answer = console.html(
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            minijinja::context! {
                problem => format!("Too many login attempts from this address; try again in {} s.", wait.as_secs().max(1)),
            },
        );
        let secs = wait.as_secs().max(1);
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return answer;
    }
    let form = Form::parse(&body);
    let presented = form.get("token").unwrap_or("").trim();
    let token = (!presented.is_empty())
        .then(|| config.token_for(presented.as_bytes()))
        .flatten();
    let Some(token) = token else {
        tracing::info!(client = %ip, "console login refused: unknown token");
        return console.html(
            StatusCode::UNAUTHORIZED,
            "login.html",
            minijinja::context! { problem => "That token is not known. Use a token from the config's `tokens:`." },
        );
    };
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(session::TTL_SECONDS))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let Some(cookie) = session::issue(token, expires) else {
        return console.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Login failed",
            "The session could not be signed.",
        );
    };
    tracing::info!(token = %token.name, client = %ip, "console login");
    let mut answer = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&cookie, tls)) {
        answer.headers_mut().insert(header::SET_COOKIE, v);
    }
    answer
}

/// A change's guard: a session, its CSRF token, and `scope`.
pub(super) fn change_guard<'c>(
    console: &Console,
    config: &'c Config,
    headers: &HeaderMap,
    form: &Form,
    scope: Scope,
) -> Result<Visitor<'c>, Box<Response>> {
    let Some(who) = visitor(config, headers) else {
        return Err(Box::new(console.message(
            StatusCode::UNAUTHORIZED,
            None,
            "Not logged in",
            "Your session ended; log in again.",
        )));
    };
    if !who.session.csrf_matches(form.get("csrf").unwrap_or("")) {
        return Err(Box::new(console.message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Refused",
            "This form is stale or did not come from this console (CSRF token missing or wrong); reload the page and try again.",
        )));
    }
    if !who.allows(scope) {
        return Err(Box::new(console.message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Not allowed",
            &format!(
                "Token `{}` lacks the scope `{}` this needs.",
                who.session.token.name,
                scope.name()
            ),
        )));
    }
    Ok(who)
}

/// `POST /ui/logout`: ends the session in this browser.
pub async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    let snapshot = console.app.snapshot();
    let config = &snapshot.config;
    let form = Form::parse(&body);
    let Some(who) = visitor(config, &headers) else {
        return Redirect::to("/ui/").into_response();
    };
    if !who.session.csrf_matches(form.get("csrf").unwrap_or("")) {
        return console.message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Refused",
            "This form is stale (CSRF token missing or wrong); reload the page and try again.",
        );
    }
    let (_, tls) = client(config, &headers, &extensions);
    let mut answer = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(tls)) {
        answer.headers_mut().insert(header::SET_COOKIE, v);
    }
    answer
}

/// Where to go back to after a change, with its outcome.
fn back(to: &str, outcome: Result<String, String>) -> Response {
    let (key, text) = match outcome {
        Ok(t) => ("done", t),
        Err(t) => ("failed", t),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}{key}={}", percent(&text))).into_response()
}

/// A `back` field: a console path only (never an open redirect).
fn back_path(form: &Form, default: String) -> String {
    form.get("back")
        .filter(|b| b.starts_with("/ui/") && !b.starts_with("//") && !b.contains(['\r', '\n']))
        .map_or(default, str::to_owned)
}

/// `POST /ui/deliveries/{id}/retry` (scope `deliveries:write`).
pub async fn retry(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let snapshot = console.app.snapshot();
    let form = Form::parse(&body);
    let who = match change_guard(
        &console,
        &snapshot.config,
        &headers,
        &form,
        Scope::DeliveriesWrite,
    ) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let outcome = retry_delivery(&console.app, &id, &who.session.token.name)
        .await
        .map(|_| format!("Delivery {id} is queued again."))
        .map_err(|e| e.message);
    back(&back_path(&form, "/ui/dead-letter".to_owned()), outcome)
}

/// `POST /ui/events/{id}/replay` (scope `deliveries:write`), to every target
/// or to the form's `target`.
pub async fn replay(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let snapshot = console.app.snapshot();
    let form = Form::parse(&body);
    let who = match change_guard(
        &console,
        &snapshot.config,
        &headers,
        &form,
        Scope::DeliveriesWrite,
    ) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let target = form.get("target").filter(|t| !t.is_empty());
    let outcome = replay_event(&console.app, &id, target, &who.session.token.name)
        .await
        .map(|answer| {
            let n = answer["deliveries"].as_array().map_or(0, Vec::len);
            format!("Replayed: {n} new deliveries.")
        })
        .map_err(|e| e.message);
    back(&format!("/ui/events/{}", percent(&id)), outcome)
}

/// `POST /ui/dead-letter/redrive` (scope `deliveries:write`): one target's
/// dead letters, or, after a second click, all of them.
pub async fn redrive(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let snapshot = console.app.snapshot();
    let form = Form::parse(&body);
    let who = match change_guard(
        &console,
        &snapshot.config,
        &headers,
        &form,
        Scope::DeliveriesWrite,
    ) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let target = form.get("target").filter(|t| !t.is_empty());
    if target.is_none() && form.get("confirmed") != Some("yes") {
        // "All" takes a second click, on a form that says what it does.
        return Redirect::to("/ui/dead-letter?confirm=all").into_response();
    }
    let outcome = redrive_dead_letters(&console.app, target, &who.session.token.name)
        .await
        .map(|answer| format!("Redriven: {}.", answer["redriven"]))
        .map_err(|e| e.message);
    back("/ui/dead-letter", outcome)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn login_attempts_count_per_address_or_ipv6_64() {
        assert_eq!(login_key("203.0.113.7".parse().unwrap()), "203.0.113.7");
        let a = login_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = login_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
    }

    #[test]
    fn forms_parse_and_back_stays_in_the_console() {
        let f = Form::parse(b"csrf=ab%20c&back=%2Fui%2Fevents%2Fx&target=");
        assert_eq!(f.get("csrf"), Some("ab c"));
        assert_eq!(back_path(&f, "/d".into()), "/ui/events/x");
        for evil in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui/\r\nx: y",
        ] {
            let body = format!("back={}", percent(evil));
            let f = Form::parse(body.as_bytes());
            assert_eq!(back_path(&f, "/d".into()), "/d", "{evil}");
        }
    }
}
