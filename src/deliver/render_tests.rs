//! Known-answer tests of delivery rendering, on configs loaded from YAML.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use super::*;
use crate::config::{self, Config, LoadOptions};

fn load(yaml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let env = HashMap::from([("ZAP".to_owned(), "a/b".to_owned())]);
    match config::load(
        &path,
        LoadOptions {
            no_env: false,
            env: Some(env),
        },
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn event(data: serde_json::Value) -> Event {
    Event {
        id: "01EVENT".into(),
        event_type: "order.created".into(),
        timestamp: "2026-01-02T03:04:05Z".parse().unwrap(),
        source: "api:app".into(),
        data,
    }
}

const ACTIONS: &str = r#"
secrets: { zap: { env: ZAP } }
actions:
  - id: a
    url: "https://h.example/users/{{ user }}/x?k={{ q }}"
    query: { src: "{{ src }}" }
    headers: { X-Name: "{{ name }}", X-Fixed: "{{ missing.deep | default('d') }}" }
    body:
      json: { total: "{{ order.total }}", name: "Hi {{ name }}", gone: "{{ nope }}", id: "{{ event.id }}" }
  - id: b
    url: "https://h.example/{{ secrets.zap }}/{{ x }}"
  - id: s
    strict: true
    url: "https://h.example/"
    body: { json: { v: "{{ contact.email }}" } }
  - id: f
    method: PUT
    url: "https://h.example/"
    body: { form: { a: "{{ name }}", b: "x&y" } }
  - id: raw
    url: "https://h.example/"
    body: { raw: { template: "n={{ name }}", content_type: text/csv } }
"#;

#[test]
fn action_renders_url_headers_and_typed_json() {
    let c = load(ACTIONS);
    let envs = Envs::new(&c.templates);
    let ev = event(serde_json::json!({
        "user": "../a b/?#", "q": "1&2", "src": "s p", "name": "Ann",
        "order": {"total": 12.5}
    }));
    let ctx = context(&ev, &BTreeMap::new(), &c.secrets);
    let r = action(
        &envs,
        c.action("a").unwrap(),
        &LazyContext::ready(ctx.clone()),
    )
    .unwrap();
    assert_eq!(
        r.url.as_str(),
        "https://h.example/users/..%2Fa%20b%2F%3F%23/x?k=1%262&src=s+p"
    );
    assert_eq!(r.method, reqwest::Method::POST);
    assert!(r.headers.contains(&("X-Name".into(), "Ann".into())));
    assert!(r.headers.contains(&("X-Fixed".into(), "d".into())));
    assert!(
        r.headers
            .contains(&("Content-Type".into(), "application/json".into()))
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"total": 12.5, "name": "Hi Ann", "gone": null, "id": "01EVENT"})
    );
    assert!(r.missing, "`nope` is missing");
}

#[test]
fn secrets_pass_unencoded_and_dots_are_refused() {
    let c = load(ACTIONS);
    let envs = Envs::new(&c.templates);
    let b = c.action("b").unwrap();
    let ctx = context(
        &event(serde_json::json!({"x": "y/z"})),
        &BTreeMap::new(),
        &c.secrets,
    );
    let r = action(&envs, b, &LazyContext::ready(ctx.clone())).unwrap();
    assert_eq!(r.url.as_str(), "https://h.example/a/b/y%2Fz");
    assert_eq!(
        crate::send::redact::text(&r.url_display, &[b"a/b"]),
        "https://h.example/[redacted]/y%2Fz"
    );
    assert!(!r.missing);
    let ctx = context(
        &event(serde_json::json!({"x": ".."})),
        &BTreeMap::new(),
        &c.secrets,
    );
    assert!(matches!(
        action(&envs, b, &LazyContext::ready(ctx.clone())),
        Err(RenderError::Template { .. })
    ));
}

#[test]
fn strict_action_fails_on_missing_field() {
    let c = load(ACTIONS);
    let envs = Envs::new(&c.templates);
    let s = c.action("s").unwrap();
    let ctx = context(&event(serde_json::json!({})), &BTreeMap::new(), &c.secrets);
    assert!(matches!(
        action(&envs, s, &LazyContext::ready(ctx.clone())),
        Err(RenderError::Missing(_))
    ));
    let ctx = context(
        &event(serde_json::json!({"contact": {"email": "a@b"}})),
        &BTreeMap::new(),
        &c.secrets,
    );
    let r = action(&envs, s, &LazyContext::ready(ctx.clone())).unwrap();
    assert_eq!(&r.body[..], br#"{"v":"a@b"}"#);
}

#[test]
fn form_and_raw_bodies() {
    let c = load(ACTIONS);
    let envs = Envs::new(&c.templates);
    let ctx = context(
        &event(serde_json::json!({"name": "A B"})),
        &BTreeMap::new(),
        &c.secrets,
    );
    let f = action(
        &envs,
        c.action("f").unwrap(),
        &LazyContext::ready(ctx.clone()),
    )
    .unwrap();
    assert_eq!(f.method, reqwest::Method::PUT);
    assert_eq!(&f.body[..], b"a=A+B&b=x%26y");
    assert!(f.headers.contains(&(
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into()
    )));
    let raw = action(
        &envs,
        c.action("raw").unwrap(),
        &LazyContext::ready(ctx.clone()),
    )
    .unwrap();
    assert_eq!(&raw.body[..], b"n=A B");
    assert!(
        raw.headers
            .contains(&("Content-Type".into(), "text/csv".into()))
    );
}

#[test]
fn header_injection_and_host_change_are_refused() {
    let c = load(
        r#"
actions:
  - id: h
    url: "https://h.example/{{ p }}"
    headers: { X-V: "{{ v }}" }
  - id: host
    url: "https://h.example{{ p }}"
"#,
    );
    let envs = Envs::new(&c.templates);
    let ctx = context(
        &event(serde_json::json!({"v": "a\r\nX-Evil: 1", "p": "ok"})),
        &BTreeMap::new(),
        &c.secrets,
    );
    assert!(matches!(
        action(
            &envs,
            c.action("h").unwrap(),
            &LazyContext::ready(ctx.clone())
        ),
        Err(RenderError::Unsafe(UnsafeRequest::HeaderValue(_)))
    ));
    let ctx = context(
        &event(serde_json::json!({"p": ".evil.com/x"})),
        &BTreeMap::new(),
        &c.secrets,
    );
    assert!(
        action(
            &envs,
            c.action("host").unwrap(),
            &LazyContext::ready(ctx.clone())
        )
        .is_err()
    );
}

#[test]
fn context_has_steps_event_and_data() {
    let mut steps = BTreeMap::new();
    steps.insert(
        "zap-1".to_owned(),
        StepResponse {
            status: 201,
            headers: BTreeMap::new(),
            body: serde_json::json!({"id": 7}),
        },
    );
    let ctx = context(&event(serde_json::json!({"a": 1})), &steps, &HashMap::new());
    let env = Environment::new();
    let out = env
        .render_str(
            "{{ a }} {{ event.type }} {{ event.timestamp }} {{ steps['zap-1'].response.body.id }}",
            &ctx,
        )
        .unwrap();
    assert_eq!(out, "1 order.created 2026-01-02T03:04:05Z 7");
}

#[test]
fn envelope_shape() {
    let e = event(serde_json::json!({"a": 1}));
    let v: serde_json::Value = serde_json::from_slice(&envelope(&e)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"id": "01EVENT", "type": "order.created",
            "timestamp": "2026-01-02T03:04:05Z", "source": "api:app", "data": {"a": 1}})
    );
}

#[test]
fn expression_capture_matches_config_eval() {
    // Pins VALUE_VAR to config::templates' expression wrapper.
    let c = load(
        "actions:\n  - id: e\n    url: \"https://h.example/\"\n    body: { json: { t: \"{{ n * 2 }}\" } }\n",
    );
    let envs = Envs::new(&c.templates);
    let ctx = context(
        &event(serde_json::json!({"n": 4})),
        &BTreeMap::new(),
        &c.secrets,
    );
    let r = action(
        &envs,
        c.action("e").unwrap(),
        &LazyContext::ready(ctx.clone()),
    )
    .unwrap();
    assert_eq!(&r.body[..], br#"{"t":8}"#);
}

#[test]
fn plain_text_templates_render_as_the_engine_would() {
    // The shortcut for text without tags must give what minijinja gives.
    let c = load(
        r#"
actions:
  - id: p
    url: "https://h.example/a%20b?x=1&y=}"
    headers: { X-Plain: "a } b %} c", X-Brace: "{ not a tag }" }
"#,
    );
    let envs = Envs::new(&c.templates);
    let ctx = context(&event(serde_json::json!({})), &BTreeMap::new(), &c.secrets);
    let action = c.action("p").unwrap();
    let lazy = LazyContext::ready(ctx.clone());
    let mut r = Renderer::new(&envs, &lazy, true);
    for (_, t) in &action.delivery.headers {
        let engine = envs
            .strict
            .get_template(&t.name)
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert_eq!(r.template(t).unwrap(), engine);
    }
    let (url, display) = r.url(&action.url).unwrap();
    assert_eq!(url.as_str(), "https://h.example/a%20b?x=1&y=}");
    assert_eq!(display, url.as_str());
}

#[test]
fn the_context_is_built_only_when_a_template_needs_it() {
    let c = load(
        r#"
subscriptions:
  - { id: plain, url: "https://h.example/in", events: ["*"], headers: { X-Team: crm } }
  - { id: tagged, url: "https://h.example/in", events: ["*"], headers: { X-Order: "{{ n }}" } }
"#,
    );
    let envs = Envs::new(&c.templates);
    let ev = event(serde_json::json!({"n": 7}));
    let built = std::cell::Cell::new(0);
    let build = || {
        built.set(built.get() + 1);
        context(&ev, &BTreeMap::new(), &c.secrets)
    };

    let ctx = LazyContext::new(&build);
    subscription(&envs, c.subscription("plain").unwrap(), &ev, &ctx).unwrap();
    assert_eq!(built.get(), 0, "plain text needs no context");

    let ctx = LazyContext::new(&build);
    let r = subscription(&envs, c.subscription("tagged").unwrap(), &ev, &ctx).unwrap();
    assert!(r.headers.contains(&("X-Order".to_owned(), "7".to_owned())));
    assert_eq!(built.get(), 1, "built once for the template that needs it");
}
