//! Hot reload against a real daemon: an in-place edit, an editor's atomic
//! rename, a Kubernetes ConfigMap `..data` symlink swap (file and directory
//! config paths), an invalid change that keeps the old config and counts a
//! failure, `POST /v1/admin/reload`, and `SIGHUP` to the real binary.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::time::Duration;

use crate::admin_support::*;
use crate::support::{http, start_daemon_at};

const WATCH: &str = "reload: { watch: true, debounce: 100ms }";
const WAIT: Duration = Duration::from_secs(15);

fn subs(ids: &[&str]) -> String {
    let mut s = String::from("subscriptions:\n");
    for id in ids {
        s.push_str(&paused_sub(id, "*"));
    }
    s
}

async fn wait_for_subs(base: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(WAIT, &format!("subscriptions {want:?} served"), || {
        let want = want.clone();
        async move { served_subscriptions_at(base).await == want }
    })
    .await;
}

#[tokio::test]
async fn an_edited_file_is_reloaded() {
    let d = start(&subs(&["a"]), WATCH).await;
    let path = config_path(&d);
    std::fs::write(&path, config_text(d.dir.path(), &subs(&["a", "b"]), WATCH)).unwrap();
    wait_for_subs(&d.url(""), &["a", "b"]).await;
    assert!(metric(&d, "hookyard_config_reloads_total{result=\"success\"}").await >= Some(2.0));
    d.stop().await;
}

#[tokio::test]
async fn an_atomic_rename_is_reloaded() {
    let d = start(&subs(&["a"]), WATCH).await;
    let path = config_path(&d);
    let tmp = d.dir.path().join(".hookyard.yaml.tmp");
    std::fs::write(&tmp, config_text(d.dir.path(), &subs(&["a", "c"]), WATCH)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for_subs(&d.url(""), &["a", "c"]).await;
    // Twice: the watch survives the replaced inode.
    std::fs::write(&tmp, config_text(d.dir.path(), &subs(&["d"]), WATCH)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for_subs(&d.url(""), &["d"]).await;
    d.stop().await;
}

/// A ConfigMap volume: `..<timestamp>/hookyard.yaml`, `..data -> ..<ts>`,
/// `hookyard.yaml -> ..data/hookyard.yaml`; an update writes a new folder
/// and renames a new `..data` symlink over the old one.
fn configmap_write(conf: &Path, folder: &str, text: &str) {
    let dir = conf.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hookyard.yaml"), text).unwrap();
    let tmp = conf.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(folder, &tmp).unwrap();
    std::fs::rename(&tmp, conf.join("..data")).unwrap();
    let link = conf.join("hookyard.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/hookyard.yaml", &link).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded() {
    // Pointed at the file symlink, and at the mounted directory.
    for point_at_dir in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        configmap_write(
            &conf,
            "..2026_05_01_10_00_00.1",
            &config_text(dir.path(), &subs(&["a"]), WATCH),
        );
        let path = if point_at_dir {
            conf.clone()
        } else {
            conf.join("hookyard.yaml")
        };
        let d = start_daemon_at(dir, path, Default::default()).await;
        assert_eq!(served_subscriptions(&d).await, ["a"]);
        let text = config_text(d.dir.path(), &subs(&["a", "k8s"]), WATCH);
        configmap_write(&conf, "..2026_05_01_10_05_00.2", &text);
        std::fs::remove_dir_all(conf.join("..2026_05_01_10_00_00.1")).unwrap();
        wait_for_subs(&d.url(""), &["a", "k8s"]).await;
        d.stop().await;
    }
}

#[tokio::test]
async fn an_invalid_change_keeps_the_old_config_and_counts_a_failure() {
    let d = start(&subs(&["a"]), WATCH).await;
    let path = config_path(&d);
    let good = config_text(d.dir.path(), &subs(&["a"]), WATCH);
    let bad = good.replace(
        "subscriptions:\n",
        "subscriptions:\n  - { id: b, url: \"http://x\", events: [\"*\"], colour: red }\n",
    );
    std::fs::write(&path, &bad).unwrap();
    eventually(WAIT, "a failed reload counted", || async {
        metric(&d, "hookyard_config_reloads_total{result=\"failure\"}").await >= Some(1.0)
    })
    .await;
    assert_eq!(served_subscriptions(&d).await, ["a"]);
    assert_eq!(
        metric(&d, "hookyard_config_reloads_total{result=\"success\"}").await,
        Some(1.0)
    );
    // Fixed: served again.
    std::fs::write(&path, config_text(d.dir.path(), &subs(&["a", "b"]), WATCH)).unwrap();
    wait_for_subs(&d.url(""), &["a", "b"]).await;
    d.stop().await;
}

#[tokio::test]
async fn the_admin_reload_endpoint_reloads_or_reports_every_error() {
    let unwatched = "reload: { watch: false }";
    let d = start(&subs(&["a"]), unwatched).await;
    let path = config_path(&d);
    let reload = || async {
        let r = authed(http().post(d.url("/v1/admin/reload")), &token("operator"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), body_json(r).await)
    };
    std::fs::write(
        &path,
        config_text(d.dir.path(), &subs(&["a", "b"]), unwatched),
    )
    .unwrap();
    let (s, body) = reload().await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "reloaded");
    assert_eq!(served_subscriptions(&d).await, ["a", "b"]);

    let good = config_text(d.dir.path(), &subs(&["a"]), unwatched);
    let bad = good.replace(
        "subscriptions:\n",
        "subscriptions:\n  - { id: b, url: \"http://x\", events: [\"*\"], colour: red }\n  - { id: c, url: \"http://x\", events: [\"*\"], retry: { schedule: [soon] } }\n",
    );
    std::fs::write(&path, bad).unwrap();
    let (s, body) = reload().await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    let details = body["error"]["details"].as_array().unwrap();
    assert!(details.len() >= 2, "every error reported: {body}");
    for e in details {
        assert!(
            e["file"].as_str().unwrap().ends_with("hookyard.yaml"),
            "{e}"
        );
        assert!(e["line"].as_u64().unwrap() >= 2, "{e}");
    }
    assert_eq!(served_subscriptions(&d).await, ["a", "b"]);
    assert_eq!(
        metric(&d, "hookyard_config_reloads_total{result=\"failure\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&d, "hookyard_config_reloads_total{result=\"success\"}").await,
        Some(2.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let unwatched = "reload: { watch: false }";
    let body = |ids: &[&str]| format!("server: {{ listen: \"127.0.0.1:{port}\" }}\n{}", subs(ids));
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(&path, config_text(dir.path(), &body(&["a"]), unwatched)).unwrap();
    let mut p = Proc::start(&path, port, &[], dir.path().join("stderr.log")).await;
    assert_eq!(served_subscriptions_at(&p.base).await, ["a"]);
    std::fs::write(
        &path,
        config_text(dir.path(), &body(&["a", "hup"]), unwatched),
    )
    .unwrap();
    p.signal("HUP");
    wait_for_subs(&p.base, &["a", "hup"]).await;
    let status = p.stop().await;
    assert!(status.success(), "{status}: {}", p.logs());
    assert!(p.logs().contains("SIGHUP received"), "{}", p.logs());
}

#[tokio::test]
async fn a_reload_names_the_settings_it_cannot_change() {
    let unwatched = "reload: { watch: false }";
    let body = "history: { retention: 7d }\nidempotency: { window: 24h }\n";
    let d = start(&format!("{body}{}", subs(&["a"])), unwatched).await;
    let changed = "history: { retention: 1d }\nidempotency: { window: 1h }\n";
    std::fs::write(
        config_path(&d),
        config_text(
            d.dir.path(),
            &format!("{changed}{}", subs(&["a", "b"])),
            unwatched,
        ),
    )
    .unwrap();
    let r = authed(http().post(d.url("/v1/admin/reload")), &token("operator"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = body_json(r).await;
    // The reload applies what it can and names what needs a restart.
    assert_eq!(
        answer["needs_restart"],
        serde_json::json!(["history.retention", "idempotency.window"]),
        "{answer}"
    );
    assert_eq!(served_subscriptions(&d).await, ["a", "b"]);
    d.stop().await;
}
