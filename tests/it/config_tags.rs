//! `hookyard validate` warns about merge tags naming no field of their
//! events (SPEC §5), with `file:line:col` and a suggestion, and still exits 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn validate(name: &str) -> Output {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/tags")
        .join(name);
    let run = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["validate", "--no-env", "-c"])
        .arg(dir)
        .output();
    match run {
        Ok(out) => out,
        Err(e) => panic!("cannot run hookyard: {e}"),
    }
}

#[test]
fn config_tags_warns_with_position_and_suggestion() {
    let out = validate("bad");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "tags/bad/hookyard.yaml:28:16: warning: merge tag {{ email }} names no field of \
             order.created events from trigger shop-order (fields: contact.email, \
             contact.full_name, order.total); did you mean contact.email?"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "tags/bad/hookyard.yaml:41:11: warning: expression variable `contact.emial` \
             names no field of contact.updated events (fields: contact.email, contact.name); \
             did you mean contact.email?"
        ),
        "{text}"
    );
    assert_eq!(text.matches("warning:").count(), 2, "{text}");
}

#[test]
fn config_tags_clean_config_has_no_warning() {
    let out = validate("clean");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("warning"), "{text}");
    assert!(
        text.starts_with("ok: 1 triggers") || text.contains("ok: 1 triggers"),
        "{text}"
    );
}
