//! The admin API over HTTP against a real daemon: every `/v1` route's scope
//! (no token 401, unknown 401, wrong scope 403), webhooks created, listed,
//! kept across a restart and deleted, and the config view showing `${VAR}`
//! references and secret names, never values.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_support::*;
use crate::support::{http, start_daemon_at};

/// Every route of the history and admin API with the scope it needs.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/v1/events", "deliveries:read"),
    (
        "GET",
        "/v1/events/01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "deliveries:read",
    ),
    ("GET", "/v1/deliveries", "deliveries:read"),
    (
        "GET",
        "/v1/deliveries/01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "deliveries:read",
    ),
    (
        "POST",
        "/v1/deliveries/01HZZZZZZZZZZZZZZZZZZZZZZZ/retry",
        "deliveries:write",
    ),
    (
        "POST",
        "/v1/events/01HZZZZZZZZZZZZZZZZZZZZZZZ/replay",
        "deliveries:write",
    ),
    ("POST", "/v1/dead-letter/redrive", "deliveries:write"),
    ("GET", "/v1/webhooks", "webhooks:read"),
    ("GET", "/v1/webhooks/nope", "webhooks:read"),
    ("POST", "/v1/webhooks", "webhooks:write"),
    ("DELETE", "/v1/webhooks/nope", "webhooks:write"),
    ("POST", "/v1/admin/reload", "admin"),
    ("GET", "/v1/admin/config", "admin"),
];

async fn call(
    d: &crate::support::TestDaemon,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value, Option<String>) {
    let client = http();
    let mut req = match method {
        "GET" => client.get(d.url(path)),
        "POST" => with_json(client.post(d.url(path)), &json!({})),
        _ => client.delete(d.url(path)),
    };
    if let Some(b) = bearer {
        req = authed(req, b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, body_json(r).await, www)
}

#[tokio::test]
async fn every_route_enforces_its_scope() {
    let d = start("", "reload: { watch: false }").await;
    for &(method, path, scope) in ROUTES {
        let (s, body, www) = call(&d, method, path, None).await;
        assert_eq!(s, 401, "{method} {path} without a token: {body}");
        assert_eq!(
            body["error"]["code"], "unauthorized",
            "{method} {path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
        assert_eq!(www.as_deref(), Some("Bearer"));

        let (s, body, _) = call(&d, method, path, Some("tok-nobody-000000")).await;
        assert_eq!(s, 401, "{method} {path} with an unknown token: {body}");

        // events:write is never enough for these routes.
        let (s, body, _) = call(&d, method, path, Some(&token("events_writer"))).await;
        assert_eq!(s, 403, "{method} {path} with the wrong scope: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(scope),
            "{body}"
        );

        let (s, body, _) = call(&d, method, path, Some(&token_for_scope(scope))).await;
        assert!(
            s != 401 && s != 403,
            "{method} {path} with scope {scope} got {s}: {body}"
        );
        if !(200..300).contains(&s) {
            assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn webhooks_are_created_listed_kept_across_restarts_and_deleted() {
    let body = "egress: { allow: [\"127.0.0.0/8\"] }\nsubscriptions:\n  - { id: billing, url: \"https://billing.internal/hooks/in\", events: [\"payment.*\"], verify: true, paused: true }\n";
    let mut d = start(body, "reload: { watch: false }").await;
    let client = http();
    let writer = token("hooks_writer");
    let post = |v: Value| {
        let client = client.clone();
        let url = d.url("/v1/webhooks");
        let writer = writer.clone();
        async move {
            let r = with_json(authed(client.post(url), &writer), &v)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), body_json(r).await)
        }
    };

    let (s, list) = get_json(&d, "/v1/webhooks").await;
    assert_eq!(s, 200);
    assert_eq!(list["webhooks"][0]["id"], "billing");
    assert_eq!(list["webhooks"][0]["source"], "yaml");
    assert_eq!(list["webhooks"][0]["url"], "https://billing.internal");
    let (_, one) = get_json(&d, "/v1/webhooks/billing").await;
    assert_eq!(one["webhook"]["verification"], "pending_verification");

    // Refusals: id taken by YAML, internal IP literal, bad scheme, no events.
    let (s, e) = post(json!({"id": "billing", "url": "https://x.example/", "events": ["a"]})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    let (s, e) = post(json!({"url": "http://10.0.0.5/in", "events": ["a"]})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("egress_refused")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("private"),
        "{e}"
    );
    let (s, _) = post(json!({"url": "ftp://x.example/", "events": ["a"]})).await;
    assert_eq!(s, 422);
    let (s, _) = post(json!({"url": "https://x.example/", "events": []})).await;
    assert_eq!(s, 422);
    let (s, _) = post(json!({"url": "https://x.example/", "events": ["a"], "colour": "red"})).await;
    assert_eq!(s, 422);

    // Created: generated id and secret, creator recorded.
    let (s, created) = post(json!({
        "url": "http://127.0.0.1:9/in",
        "events": ["order.*"],
        "headers": {"X-Team": "shop", "Authorization": "Bearer very-private-value"}
    }))
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sub_"), "{id}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["webhook"]["created_by"], "hooks_writer");
    let (s, _) = post(json!({"id": "mine", "url": "https://x.example/", "events": ["*"]})).await;
    assert_eq!(s, 201);
    let (s, _) = post(json!({"id": "mine", "url": "https://y.example/", "events": ["*"]})).await;
    assert_eq!(s, 409);

    let listed = authed(client.get(d.url("/v1/webhooks")), &token("hooks_reader"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(&id) && listed.contains("\"api\""),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "secret listed: {listed}");
    assert!(
        !listed.contains("very-private-value"),
        "credential header listed: {listed}"
    );
    let (_, one) = get_json(&d, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(one["webhook"]["verification"], "not_required");
    assert_eq!(one["webhook"]["headers"]["X-Team"], "shop");

    // YAML subscriptions are read-only through the API.
    let r = authed(client.delete(d.url("/v1/webhooks/billing")), &writer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = body_json(r).await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("YAML"),
        "{e}"
    );

    // Restart on the same files: API subscriptions come back from the queue.
    d.shutdown.cancel();
    if let Some(h) = d.handle.take() {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    let path = dir.path().join("hookyard.yaml");
    let d = start_daemon_at(dir, path, Default::default()).await;
    let (_, list) = get_json(&d, "/v1/webhooks").await;
    let ids: Vec<&str> = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&"mine"),
        "{list}"
    );

    let del = |p: String| authed(client.delete(d.url(&p)), &writer).send();
    assert_eq!(
        del(format!("/v1/webhooks/{id}")).await.unwrap().status(),
        204
    );
    assert_eq!(get_json(&d, &format!("/v1/webhooks/{id}")).await.0, 404);
    assert_eq!(
        del(format!("/v1/webhooks/{id}")).await.unwrap().status(),
        404
    );
    d.stop().await;
}

#[tokio::test]
async fn config_view_shows_references_and_secret_names_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookyard.yaml");
    let body = "subscriptions:\n  - { id: crm, url: \"https://${HOOKYARD_T_CRM_HOST}/in\", events: [\"*\"], paused: true }\n";
    std::fs::write(
        &path,
        config_text(dir.path(), body, "reload: { watch: false }"),
    )
    .unwrap();
    let env = [(
        "HOOKYARD_T_CRM_HOST".to_owned(),
        "crm-host-5b1e.example".to_owned(),
    )]
    .into();
    let d = start_daemon_at(dir, path, env).await;
    let r = authed(http().get(d.url("/v1/admin/config")), &token("operator"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("${HOOKYARD_T_CRM_HOST}"), "{text}");
    assert!(!text.contains("crm-host-5b1e"), "env value shown: {text}");
    for (name, _) in TOKENS {
        assert!(!text.contains(&token(name)), "token value of {name} shown");
        assert!(
            text.contains(&format!("tok_{name}")),
            "secret name {name} missing"
        );
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["summary"]["subscriptions"], json!(["crm"]));
    assert!(
        v["files"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("hookyard.yaml")
    );
    d.stop().await;
}
