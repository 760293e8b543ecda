//! The console (SPEC §13): HTML pages under `/ui/` on the API listener,
//! rendered by the daemon itself from templates compiled into the binary.
//! Nothing is fetched at run time and no page needs JavaScript: every change
//! is a plain `<form method=post>` carrying the session's CSRF token.
//!
//! - [`session`]: login with an API token → a signed cookie (no session
//!   table, so every replica accepts it); the CSRF token; expiry.
//! - [`pages`]: the pages (overview, events, an event with its attempts,
//!   dead letter, config), each reading one snapshot; [`triggers`]: each
//!   trigger, its captured samples and "try a mapping".
//! - [`actions`]: login, logout, retry, replay and redrive. Each change runs
//!   the same code as its `/v1` route ([`crate::admin::history`]), under the
//!   same scope; a control the session's token may not use is not shown,
//!   and its POST is 403.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ipnet::IpNet;
use minijinja::Environment;

use crate::config::{Config, Scope};
use crate::model::rate_limits::RateLimits;
use crate::runtime::App;

mod actions;
mod pages;
pub mod session;
mod triggers;

/// State of the console's handlers.
pub struct Console {
    app: App,
    templates: Environment<'static>,
    /// Login attempts per client address.
    logins: RateLimits,
}

/// The templates, compiled into the binary.
const TEMPLATES: [(&str, &str); 10] = [
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("events.html", include_str!("templates/events.html")),
    ("event.html", include_str!("templates/event.html")),
    (
        "dead_letter.html",
        include_str!("templates/dead_letter.html"),
    ),
    ("config.html", include_str!("templates/config.html")),
    ("triggers.html", include_str!("templates/triggers.html")),
    ("trigger.html", include_str!("templates/trigger.html")),
];

const STYLESHEET: &str = include_str!("templates/console.css");

/// The console's routes (merged into the API listener's router).
pub fn routes(app: &App) -> Router {
    let mut templates = Environment::new();
    // Ids (event ids are chosen by clients) as one URL path segment: every
    // byte but letters and digits encoded, `/` and `.` included.
    templates.add_filter("pathseg", |s: String| pages::percent(&s));
    for (name, source) in TEMPLATES {
        // The templates are part of the binary and covered by tests; one
        // that does not parse is a build mistake, reported at first use.
        if let Err(e) = templates.add_template(name, source) {
            tracing::error!("console template {name} does not parse: {e}");
        }
    }
    let state = Arc::new(Console {
        app: app.clone(),
        templates,
        logins: RateLimits::new(),
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/events", get(pages::events))
        .route("/ui/events/{id}", get(pages::event))
        .route("/ui/events/{id}/replay", post(actions::replay))
        .route("/ui/deliveries/{id}/retry", post(actions::retry))
        .route("/ui/dead-letter", get(pages::dead_letter))
        .route("/ui/dead-letter/redrive", post(actions::redrive))
        .route("/ui/config", get(pages::config))
        .route("/ui/triggers", get(triggers::list))
        .route("/ui/triggers/{id}", get(triggers::show))
        .route("/ui/triggers/{id}/try", post(triggers::try_mapping))
        .route("/ui/static/console.css", get(stylesheet))
        .with_state(state)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

impl Console {
    /// Render template `name` with `ctx` as an HTML answer.
    fn html(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        let body = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx));
        match body {
            Ok(body) => with_page_headers((status, body).into_response()),
            Err(e) => {
                tracing::error!("console page {name} failed to render: {e}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered (details are in the daemon's log)",
                )
            }
        }
    }

    /// A page that only says something (errors, refusals).
    fn message(
        &self,
        status: StatusCode,
        who: Option<&Visitor<'_>>,
        heading: &str,
        text: &str,
    ) -> Response {
        let ctx = minijinja::context! {
            heading => heading,
            message => text,
            ..who.map(Visitor::context).unwrap_or_else(|| minijinja::context! {})
        };
        self.html(status, "message.html", ctx)
    }
}

/// The headers every console page carries: HTML, never cached, never
/// framed, and no script or style from anywhere but the daemon.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    with_page_headers((status, text).into_response())
}

/// A logged-in visitor: the session and what its token may do.
pub struct Visitor<'c> {
    session: session::Session<'c>,
}

impl Visitor<'_> {
    fn allows(&self, scope: Scope) -> bool {
        self.session.token.allows(scope)
    }

    /// What every page's layout needs.
    fn context(&self) -> minijinja::Value {
        minijinja::context! {
            session => self.session.token.name,
            csrf => self.session.csrf,
            can_write => self.allows(Scope::DeliveriesWrite),
            can_admin => self.allows(Scope::Admin),
        }
    }
}

/// The visitor a request's session cookie stands for, under `config`.
fn visitor<'c>(config: &'c Config, headers: &HeaderMap) -> Option<Visitor<'c>> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)?;
    let session = session::check(config, cookie, jiff::Timestamp::now())?;
    Some(Visitor { session })
}

/// The peer, or the address a trusted proxy forwarded for.
fn client(config: &Config, headers: &HeaderMap, extensions: &Extensions) -> (IpAddr, bool) {
    // Without connect info (tests driving the router directly) the peer is
    // unknown: 0.0.0.0, which no trusted proxy list contains.
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip().to_canonical());
    let trusted = &config.server.trusted_proxies;
    let ip = crate::inbound::verify::Unverified::new(headers, &[], peer).client_ip(trusted);
    (ip, over_tls(headers, peer, trusted))
}

/// Whether the browser reached us over TLS: only a trusted proxy may say so
/// (`X-Forwarded-Proto: https`).
fn over_tls(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&peer))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn only_a_trusted_proxy_says_the_browser_used_tls() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(over_tls(&h, proxy, &trusted));
        assert!(!over_tls(&h, "203.0.113.9".parse().unwrap(), &trusted));
        assert!(!over_tls(&HeaderMap::new(), proxy, &trusted));
    }
}
