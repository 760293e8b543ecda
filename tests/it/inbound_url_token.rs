//! A trigger states its authentication (SPEC §11): `verify` is required,
//! `verify: none` declares an open trigger, and `verify: { url_token }`
//! serves a trigger only at `/hooks/{id}/{token}`, answering any other
//! path exactly like an unknown trigger and never showing the token in
//! metrics, history or logs.

#![allow(clippy::unwrap_used)] // tests may unwrap

use crate::support::get_text;
use std::path::Path;

use hookyard::config::{self, LoadOptions};

use crate::admin_support::{Proc, body_json, config_text, get_json, start};
use crate::support::{free_port, http};

const TOKEN: &str = "tok-3f9a1c7e5b";

fn load(text: &str) -> Result<config::Config, config::ConfigErrors> {
    let opts = LoadOptions {
        no_env: false,
        env: Some([("URL_TOKEN".to_owned(), TOKEN.to_owned())].into()),
    };
    config::load_str(text, Path::new("c.yaml"), opts)
}

fn only_error(text: &str) -> (u32, u32, String) {
    let errs = match load(text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(errs.errors.len(), 1, "{errs}");
    let e = &errs.errors[0];
    (e.pos.line, e.pos.col, e.message.clone())
}

#[test]
fn a_trigger_without_verify_is_an_error_saying_what_to_write() {
    let (line, col, msg) = only_error("triggers:\n  - id: open\n    event: t.e\n");
    assert_eq!((line, col), (2, 5), "{msg}");
    assert!(msg.contains("trigger `open` needs `verify`"), "{msg}");
    assert!(msg.contains("verify: none"), "{msg}");
    // Spelled out, it loads, with no check at all.
    let cfg = load("triggers:\n  - id: open\n    event: t.e\n    verify: none\n").unwrap();
    let verify = &cfg.trigger("open").unwrap().verify;
    assert!(verify.signature.is_none() && verify.bearer.is_none() && verify.url_token.is_none());
}

#[test]
fn verify_must_be_none_or_list_a_check() {
    let (line, col, msg) = only_error("triggers:\n  - id: t\n    event: t.e\n    verify: off\n");
    assert_eq!((line, col), (4, 13), "{msg}");
    assert!(msg.contains("verify: none"), "{msg}");
    let (line, col, msg) = only_error("triggers:\n  - id: t\n    event: t.e\n    verify: {}\n");
    assert_eq!((line, col), (4, 13), "{msg}");
    assert!(msg.contains("lists no check"), "{msg}");
}

#[test]
fn a_url_token_must_be_url_safe_and_own_its_paths() {
    let opts = LoadOptions {
        no_env: false,
        env: Some([("URL_TOKEN".to_owned(), "has/slash".to_owned())].into()),
    };
    let text = "secrets: { tok: { env: URL_TOKEN } }\n\
        triggers:\n  - { id: t, event: t.e, verify: { url_token: tok } }\n";
    let errs = config::load_str(text, Path::new("c.yaml"), opts).unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert_eq!(
        (errs.errors[0].pos.line, errs.errors[0].pos.col),
        (3, 47),
        "{errs}"
    );
    assert!(errs.errors[0].message.contains("may only hold"), "{errs}");
    assert!(!errs.to_string().contains("has/slash"), "{errs}");
    // A path under a url_token trigger's path would be ambiguous.
    let text = "secrets: { tok: { env: URL_TOKEN } }\n\
        triggers:\n  - { id: t, event: t.e, verify: { url_token: tok } }\n  \
        - { id: u, event: t.e, verify: none, path: /hooks/t/x }\n";
    let errs = load(text).unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert!(
        errs.errors[0].message.contains("lies under `/hooks/t`"),
        "{errs}"
    );
}

#[test]
fn the_lookup_says_whether_the_token_matched() {
    use hookyard::config::TokenCheck;
    let text = "secrets: { tok: { env: URL_TOKEN } }\n\
        triggers:\n  - { id: t, event: t.e, verify: { url_token: tok } }\n  \
        - { id: o, event: t.e, verify: none }\n";
    let cfg = load(text).unwrap();
    let check = |path: &str| {
        cfg.trigger_by_path(path)
            .map(|m| (m.trigger.id.clone(), m.token))
    };
    assert_eq!(
        check(&format!("/hooks/t/{TOKEN}")),
        Some(("t".into(), TokenCheck::Matched))
    );
    assert_eq!(
        check("/hooks/t/other"),
        Some(("t".into(), TokenCheck::Wrong))
    );
    assert_eq!(check("/hooks/t"), Some(("t".into(), TokenCheck::Wrong)));
    assert_eq!(check("/hooks/t/"), Some(("t".into(), TokenCheck::Wrong)));
    assert_eq!(check(&format!("/hooks/t/{TOKEN}/x")), None);
    assert_eq!(
        check("/hooks/o"),
        Some(("o".into(), TokenCheck::NotRequired))
    );
    assert_eq!(check(&format!("/hooks/o/{TOKEN}")), None);
}

/// The daemon's config: a url_token trigger at its id and one with its
/// own path, and an open trigger. Its own YAML document (the test support
/// appends a `secrets:` of API tokens).
fn daemon_yaml(token_file: &Path) -> String {
    format!(
        "secrets: {{ tok: {{ file: \"{}\" }} }}\n\
         triggers:\n  - {{ id: tok, event: t.e, verify: {{ url_token: tok }} }}\n  \
         - {{ id: own, event: t.e, path: /hooks/custom/in, verify: {{ url_token: tok }} }}\n  \
         - {{ id: open, event: t.e, verify: none }}\n---\n",
        token_file.display()
    )
}

async fn post(url: String) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .body("{\"n\":1}")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), body_json(r).await)
}

#[tokio::test]
async fn a_url_token_trigger_is_served_only_at_its_token() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("url-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let d = start(&daemon_yaml(&token_file), "reload: { watch: false }").await;

    let (status, body) = post(d.url(&format!("/hooks/tok/{TOKEN}"))).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(d.url(&format!("/hooks/custom/in/{TOKEN}"))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        post(d.url("/hooks/open")).await.0,
        202,
        "verify: none accepts"
    );

    // Every other path: the unknown-trigger 404, body and all.
    let (_, unknown) = post(d.url("/hooks/nope")).await;
    assert_eq!(unknown["error"]["code"], "unknown_trigger");
    for path in [
        "/hooks/tok".to_owned(),
        "/hooks/tok/".to_owned(),
        "/hooks/tok/tok-3f9a1c7e5c".to_owned(),
        format!("/hooks/tok/{TOKEN}/extra"),
        format!("/hooks/tok/{}", &TOKEN[..TOKEN.len() - 1]),
        "/hooks/custom/in".to_owned(),
        format!("/hooks/own/{TOKEN}"),
    ] {
        let (status, body) = post(d.url(&path)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unknown_trigger", "{path}: {body}");
    }

    // Metrics: the trigger's id, the misses under `_unknown`, no token.
    let metrics = get_text(d.url("/metrics")).await;
    assert!(
        metrics.contains("hookyard_inbound_requests_total{trigger=\"tok\",status=\"202\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookyard_inbound_requests_total{trigger=\"_unknown\",status=\"404\"} 8"),
        "{metrics}"
    );
    assert!(!metrics.contains(TOKEN), "the token is in the metrics");

    // History: the source is the trigger, never the URL.
    let (status, events) = get_json(&d, "/v1/events").await;
    assert_eq!(status, 200, "{events}");
    let sources: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"trigger:tok"), "{events}");
    assert!(sources.contains(&"trigger:own"), "{events}");
    assert!(
        !events.to_string().contains(TOKEN),
        "the token is in history"
    );
    d.stop().await;
}

#[tokio::test]
async fn logs_show_the_path_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("url-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let port = free_port();
    let body = format!(
        "{}server: {{ listen: \"127.0.0.1:{port}\" }}\n",
        daemon_yaml(&token_file)
    );
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(
        &path,
        config_text(dir.path(), &body, "reload: { watch: false }"),
    )
    .unwrap();
    let mut p = Proc::start(
        &path,
        port,
        &[("RUST_LOG", "hookyard=debug")],
        dir.path().join("stderr.log"),
    )
    .await;
    // Accepted, then refused after the lookup (a body that is not JSON).
    let url = format!("{}/hooks/tok/{TOKEN}", p.base);
    assert_eq!(post(url.clone()).await.0, 202);
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    p.stop().await;
    let logs = p.logs();
    assert!(logs.contains("/hooks/tok/…"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token is in the logs:\n{logs}");
}
