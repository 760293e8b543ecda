//! Config loading end to end: every broken fixture reports a precise
//! `file:line:col`, all errors of a directory come at once, and the good
//! fixtures exercise multi-document files, directory walking, `${VAR}`
//! interpolation, secrets, defaults and the shared template environment.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hookyard::config::{self, ConfigErrors, LoadOptions};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(rel)
}

/// Load options with exactly these environment variables.
pub fn env(pairs: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        no_env: false,
        env: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn errors(rel: &str) -> ConfigErrors {
    match config::load(&fixture(rel), env(&[])) {
        Ok(_) => panic!("{rel} should not load"),
        Err(e) => e,
    }
}

/// The only error of `rel`: (file name, line, col, message).
fn only_error(rel: &str) -> (String, u32, u32, String) {
    let errs = errors(rel);
    assert_eq!(
        errs.errors.len(),
        1,
        "expected one error in {rel}, got:\n{errs}"
    );
    let e = &errs.errors[0];
    let file = Path::new(e.pos.file.as_ref())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (file, e.pos.line, e.pos.col, e.message.clone())
}

#[test]
fn typo_key_points_at_the_key() {
    let (file, line, col, msg) = only_error("broken/01-typo.yaml");
    assert_eq!((file.as_str(), line, col), ("01-typo.yaml", 4, 5));
    assert!(msg.contains("unknown field `mapingg`"), "{msg}");
}

#[test]
fn bad_jsonpath_points_into_the_path() {
    let (file, line, col, msg) = only_error("broken/02-jsonpath.yaml");
    // `      x: "$.items[?"`: the path starts at column 11, the parser fails at its end.
    assert_eq!((file.as_str(), line, col), ("02-jsonpath.yaml", 5, 20));
    assert!(msg.contains("invalid JSONPath `$.items[?`"), "{msg}");
}

#[test]
fn template_syntax_error_points_at_the_bad_token() {
    let (file, line, col, msg) = only_error("broken/03-template.yaml");
    // The lone `}` closing `{{ contact.name }` is column 32.
    assert_eq!((file.as_str(), line, col), ("03-template.yaml", 5, 32));
    assert!(msg.contains("template syntax error"), "{msg}");
}

#[test]
fn undefined_secret_is_named() {
    let (file, line, col, msg) = only_error("broken/04-secret.yaml");
    assert_eq!((file.as_str(), line, col), ("04-secret.yaml", 5, 45));
    assert!(msg.contains("unknown secret `nope_secret`"), "{msg}");
}

#[test]
fn workflow_naming_a_missing_action() {
    let (file, line, col, msg) = only_error("broken/05-workflow.yaml");
    assert_eq!((file.as_str(), line, col), ("05-workflow.yaml", 5, 17));
    assert!(msg.contains("unknown action `no-such-action`"), "{msg}");
}

#[test]
fn duplicate_id_across_two_files_names_both() {
    let (file, line, col, msg) = only_error("broken/dup");
    assert_eq!((file.as_str(), line, col), ("b.yaml", 5, 9));
    assert!(msg.contains("duplicate trigger id `dup`"), "{msg}");
    assert!(msg.contains("dup/a.yaml:2:9"), "{msg}");
}

#[test]
fn unset_env_var_points_at_the_reference() {
    let (file, line, col, msg) = only_error("broken/08-env.yaml");
    assert_eq!((file.as_str(), line, col), ("08-env.yaml", 4, 26));
    assert!(msg.contains("`HOOKYARD_TEST_UNSET` is not set"), "{msg}");
    // With the variable set, the same file loads.
    let cfg = config::load(
        &fixture("broken/08-env.yaml"),
        env(&[("HOOKYARD_TEST_UNSET", "x")]),
    )
    .unwrap();
    assert_eq!(
        cfg.action("env-action").unwrap().delivery.headers[0]
            .1
            .source,
        "v=x"
    );
}

#[test]
fn invalid_cidr() {
    let (file, line, col, msg) = only_error("broken/09-cidr.yaml");
    assert_eq!((file.as_str(), line, col), ("09-cidr.yaml", 2, 24));
    assert!(msg.contains("invalid CIDR `300.1.2.3/8`"), "{msg}");
}

#[test]
fn a_directory_reports_all_eight_errors_at_once() {
    let errs = errors("broken");
    let got: Vec<(String, u32, u32)> = errs
        .errors
        .iter()
        .map(|e| {
            let f = Path::new(e.pos.file.as_ref())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (f, e.pos.line, e.pos.col)
        })
        .collect();
    let want: Vec<(String, u32, u32)> = [
        ("01-typo.yaml", 4, 5),
        ("02-jsonpath.yaml", 5, 20),
        ("03-template.yaml", 5, 32),
        ("04-secret.yaml", 5, 45),
        ("05-workflow.yaml", 5, 17),
        ("08-env.yaml", 4, 26),
        ("09-cidr.yaml", 2, 24),
        ("b.yaml", 5, 9),
    ]
    .into_iter()
    .map(|(f, l, c)| (f.to_string(), l, c))
    .collect();
    assert_eq!(got, want, "\n{errs}");
    // Display: one `file:line:col: message` per line.
    let text = errs.to_string();
    assert_eq!(text.lines().count(), 8);
    assert!(text.lines().all(|l| l.contains(".yaml:")));
}

#[test]
fn one_bad_trigger_does_not_hide_the_next() {
    let errs = errors("two-bad-triggers.yaml");
    let got: Vec<(u32, u32)> = errs
        .errors
        .iter()
        .map(|e| (e.pos.line, e.pos.col))
        .collect();
    assert_eq!(got, vec![(4, 17), (9, 18)], "\n{errs}");
    assert!(errs.errors[0].message.contains("invalid rate `fast`"));
    assert!(errs.errors[1].message.contains("invalid CIDR `nope`"));
}

fn good() -> config::Config {
    config::load(
        &fixture("good/multidoc.yaml"),
        env(&[("HOOKYARD_TEST_SECRET", "env-value")]),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn multi_document_file_merges_and_interpolates() {
    let cfg = good();
    assert!(cfg.trigger("doc-one").is_some());
    assert!(cfg.trigger_by_path("/hooks/doc-one").is_some());
    let act = cfg.action("act").unwrap();
    // `${HOOKYARD_TEST_HOST:-127.0.0.1}` took its default.
    match &act.url {
        config::TargetUrl::Template {
            template,
            literal_prefix,
        } => {
            assert_eq!(template.source, "http://127.0.0.1:9000/a");
            assert_eq!(literal_prefix, "http://127.0.0.1:9000/a");
        }
        other => panic!("{other:?}"),
    }
    // `$${` wrote a literal `${`.
    let lit = act
        .delivery
        .headers
        .iter()
        .find(|(k, _)| k == "X-Literal")
        .unwrap();
    assert_eq!(lit.1.source, "${NOT_A_VAR}");
    // The raw text is kept for the admin API.
    assert!(
        cfg.sources[0]
            .raw_text
            .contains("${HOOKYARD_TEST_HOST:-127.0.0.1}")
    );
}

#[test]
fn secrets_from_env_and_file_never_print() {
    let cfg = good();
    assert_eq!(cfg.secrets["from_env"].expose(), b"env-value");
    assert_eq!(cfg.secrets["from_file"].expose(), b"s3cret");
    let sub = cfg.subscription("sub").unwrap();
    let signing = sub.delivery.signing.as_ref().unwrap();
    assert_eq!(
        signing
            .secrets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["from_env", "from_file"]
    );
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("env-value") && !dbg.contains("s3cret"));
}

#[test]
fn defaults_inherited_and_inline_steps_named() {
    let cfg = good();
    let wf = cfg.workflow("wf").unwrap();
    assert_eq!(wf.steps.len(), 2);
    assert_eq!(wf.steps[0].action.id, "act");
    assert_eq!(wf.steps[1].action.id, "wf-2");
    assert!(wf.steps[1].inline);
    assert_eq!(
        wf.steps[1].action.delivery.timeout,
        std::time::Duration::from_secs(5)
    );
    let act = cfg.action("act").unwrap();
    assert_eq!(act.delivery.timeout, std::time::Duration::from_secs(10));
    assert_eq!(act.delivery.retry.schedule.len(), 7);
    assert!(act.delivery.headers.iter().any(|(k, _)| k == "X-Team"));
    assert!(wf.matches("one.created", None) && !wf.matches("two.created", None));
    assert_eq!(cfg.queue.lease, std::time::Duration::from_secs(60));
    assert_eq!(cfg.server.max_body, 1024 * 1024);
}

#[test]
fn templates_render_with_the_shared_environment() {
    let cfg = good();
    let ctx = minijinja::Value::from_serialize(serde_json::json!({
        "order": {"total": 150},
        "secrets": {"from_env": "tok"},
    }));
    let wf = cfg.workflow("wf").unwrap();
    assert!(
        wf.condition
            .as_ref()
            .unwrap()
            .is_true(&cfg.templates, &ctx)
            .unwrap()
    );
    let act = cfg.action("act").unwrap();
    let Some(config::Body::Json(body)) = &act.body else {
        panic!("json body")
    };
    assert_eq!(
        body.render(&cfg.templates, &ctx).unwrap(),
        serde_json::json!({"total": 150, "label": "n=150", "fixed": [1, "two"]})
    );
    let tok = act
        .delivery
        .headers
        .iter()
        .find(|(k, _)| k == "X-Token")
        .unwrap();
    assert_eq!(tok.1.render(&cfg.templates, &ctx).unwrap(), "tok");
}

#[test]
fn directory_walk_skips_dot_entries_and_recurses() {
    // `..data/a.yaml` and `.swap.yaml` repeat trigger `in-a`; loading them
    // would be a duplicate-id error. `notes.txt` is not YAML.
    let cfg = config::load(&fixture("good/dir"), env(&[])).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = cfg.triggers.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["in-a", "in-b"]);
    assert!(cfg.trigger_by_path("/hooks/custom-b").is_some());
}

#[test]
fn no_env_skips_variables_and_secrets() {
    let opts = LoadOptions {
        no_env: true,
        env: Some(HashMap::new()),
    };
    let cfg = config::load(&fixture("broken/08-env.yaml"), opts.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.action("env-action").is_some());
    config::load(&fixture("good/multidoc.yaml"), opts).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn schema_file_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/hookyard.schema.json");
    let generated = config::schema::schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/hookyard.schema.json is stale: run `UPDATE_SCHEMA=1 cargo test --test it schema`"
    );
}

#[test]
fn validate_binary_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_hookyard");
    let ok = Command::new(bin)
        .args(["validate", "-c"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/hookyard.yaml"))
        .env("SHOP_HMAC", "x")
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: 1 triggers"));

    let bad = Command::new(bin)
        .args(["validate", "-c"])
        .arg(fixture("broken"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(out.lines().count(), 8, "{out}");
    assert!(
        out.contains("01-typo.yaml:4:5: unknown field `mapingg`"),
        "{out}"
    );

    let schema = Command::new(bin).arg("schema").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&schema.stdout),
        config::schema::schema_json()
    );
}

#[test]
fn quickstart_matches_the_schema_and_typos_do_not() {
    let schema: serde_json::Value = serde_json::from_str(&config::schema::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/hookyard.yaml");
    let doc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let problems: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let typo: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("broken/01-typo.yaml")).unwrap())
            .unwrap();
    assert!(!validator.is_valid(&typo));
}
