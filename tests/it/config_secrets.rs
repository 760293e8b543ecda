//! Secrets are never empty (SPEC §11): an `env:` variable set to "" or a
//! `file:` empty once one trailing newline is cut is an error with its
//! position, when `hookyard run` starts, in `hookyard validate`, and on
//! reload (where the old config keeps serving). A body "signed" with the
//! empty key is never accepted.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookyard::config::{self, LoadOptions};

use crate::config::env;
use hookyard::model::mac::{hex_encode, hmac_sha256};

use crate::admin_support::{authed, body_json, start, token};
use crate::support::http;

/// A trigger verifying `hmac-sha256` with secret `s`, defined by `source`
/// (`{ env: X }` or `{ file: PATH }`) on line 1, column 19.
fn yaml(source: &str) -> String {
    format!(
        "secrets: {{ s: {source} }}\n\
         triggers:\n  - id: t\n    event: t.e\n    \
         verify: {{ signature: {{ preset: hmac-sha256, secret: s }} }}\n"
    )
}

/// The only error of loading `text` from `<dir>/c.yaml`: (line, col, message).
fn only_error(dir: &Path, text: &str, opts: LoadOptions) -> (u32, u32, String) {
    let path = dir.join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let errs = match config::load(&path, opts) {
        Ok(_) => panic!("a config with an empty secret loaded:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(errs.errors.len(), 1, "{errs}");
    let e = &errs.errors[0];
    (e.pos.line, e.pos.col, e.message.clone())
}

#[test]
fn an_env_var_set_to_empty_is_an_error_at_its_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (line, col, msg) = only_error(dir.path(), &yaml("{ env: X }"), env(&[("X", "")]));
    // `secrets: { s: { env: X } }`: the variable name is at column 22.
    assert_eq!((line, col), (1, 22), "{msg}");
    assert!(msg.contains("`X`") && msg.contains("empty"), "{msg}");
    // The same file with a value loads.
    let path = dir.path().join("c.yaml");
    let cfg = config::load(&path, env(&[("X", "k")])).unwrap();
    assert_eq!(cfg.secrets["s"].expose(), b"k");
}

#[test]
fn an_empty_secret_file_is_an_error_after_one_newline_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    for empty in ["", "\n", "\r\n"] {
        std::fs::write(dir.path().join("key"), empty).unwrap();
        let (line, col, msg) = only_error(dir.path(), &yaml("{ file: key }"), env(&[]));
        assert_eq!((line, col), (1, 23), "{empty:?}: {msg}");
        assert!(msg.contains("is empty"), "{msg}");
    }
    // One newline is cut, not two: "\n\n" is a one-byte secret.
    for (text, value) in [("k\n", &b"k"[..]), ("\n\n", b"\n")] {
        std::fs::write(dir.path().join("key"), text).unwrap();
        let path = dir.path().join("c.yaml");
        let cfg = config::load(&path, env(&[])).unwrap();
        assert_eq!(cfg.secrets["s"].expose(), value);
    }
}

fn hookyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookyard"))
}

#[test]
fn validate_exits_1_naming_the_empty_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml("{ env: HOOKYARD_TEST_EMPTY }")).unwrap();
    let out = hookyard()
        .args(["validate", "-c"])
        .arg(&path)
        .env("HOOKYARD_TEST_EMPTY", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("c.yaml:1:22:"), "{stdout}");
    assert!(stdout.contains("HOOKYARD_TEST_EMPTY"), "{stdout}");
    // `--no-env` reads no secret, so it has nothing to refuse.
    let no_env = hookyard()
        .args(["validate", "--no-env", "-c"])
        .arg(&path)
        .env("HOOKYARD_TEST_EMPTY", "")
        .output()
        .unwrap();
    assert_eq!(no_env.status.code(), Some(0));
}

#[test]
fn run_does_not_start_with_an_empty_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let port = crate::support::free_port();
    let text = format!(
        "{}server: {{ listen: \"127.0.0.1:{port}\" }}\nqueue: {{ backend: embedded, path: \"{}\" }}\n",
        yaml("{ env: HOOKYARD_TEST_EMPTY }"),
        dir.path().join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    let mut child = hookyard()
        .args(["run", "-c"])
        .arg(&path)
        .env("HOOKYARD_TEST_EMPTY", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hookyard run started with an empty secret");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("c.yaml:1:22"), "{stderr}");
}

fn signed(key: &[u8], body: &str) -> String {
    hex_encode(&hmac_sha256(key, &[body.as_bytes()]).unwrap())
}

#[tokio::test]
async fn a_reload_emptying_a_secret_file_is_refused_and_the_old_key_serves() {
    let unwatched = "reload: { watch: false }";
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hmac");
    std::fs::write(&key, "old-key\n").unwrap();
    // Its own YAML document: the test support appends a `secrets:` of tokens.
    let body = format!(
        "{}---\n",
        yaml(&format!("{{ file: \"{}\" }}", key.display()))
    );
    let d = start(&body, unwatched).await;
    let post = |sig: String| {
        let url = d.url("/hooks/t");
        async move {
            http()
                .post(url)
                .header("X-Hmac-Signature", sig)
                .body("{\"n\":1}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(signed(b"old-key", "{\"n\":1}")).await, 202);

    std::fs::write(&key, "\n").unwrap();
    let r = authed(http().post(d.url("/v1/admin/reload")), &token("operator"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let answer = body_json(r).await;
    assert_eq!(status, 422, "{answer}");
    let error = &answer["error"]["details"][0];
    assert!(
        error["message"].as_str().unwrap().contains("is empty"),
        "{answer}"
    );
    // At the position of the `file:` value.
    assert_eq!(
        (&error["line"], &error["column"]),
        (&1.into(), &23.into()),
        "{answer}"
    );
    // The old key keeps serving; the empty key never verifies.
    assert_eq!(post(signed(b"old-key", "{\"n\":1}")).await, 202);
    assert_eq!(post(signed(b"", "{\"n\":1}")).await, 401);
    d.stop().await;
}
