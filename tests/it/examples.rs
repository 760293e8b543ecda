//! Every shipped example loads and compiles (as `hookyard run` would, with its
//! environment variables set), and every example file matches the committed
//! JSON Schema, so editors and the daemon agree on the format.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hookyard::config::{self, LoadOptions};

fn example_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("grafana"))
        .collect();
    dirs.sort();
    dirs
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Every `${VAR}` and `env: VAR` an example uses, with a made-up value.
fn env_for(files: &[PathBuf]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("env: ") {
            let name: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            env.insert(name, "example-value".to_owned());
        }
        // `${NAME}` with no default: a public key gets a real Ed25519 key.
        for (i, _) in text.match_indices("${") {
            let name: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if text[i + 2 + name.len()..].starts_with('}') {
                let value = if name.ends_with("PUBLIC_KEY") {
                    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
                    hookyard::model::mac::base64_encode(key.verifying_key().as_bytes())
                } else {
                    "example-value".to_owned()
                };
                env.insert(name, value);
            }
        }
    }
    env
}

#[test]
fn every_example_loads_with_its_environment() {
    let dirs = example_dirs();
    assert!(dirs.len() >= 4, "examples: {dirs:?}");
    for dir in dirs {
        let mut files = vec![];
        yaml_files(&dir, &mut files);
        let opts = LoadOptions {
            no_env: false,
            env: Some(env_for(&files)),
        };
        match config::load(&dir, opts) {
            Ok(cfg) => assert!(
                !cfg.triggers.is_empty() || !cfg.subscriptions.is_empty(),
                "{} defines nothing",
                dir.display()
            ),
            Err(e) => panic!("{} does not load:\n{e}", dir.display()),
        }
        config::load(
            &dir,
            LoadOptions {
                no_env: true,
                env: None,
            },
        )
        .unwrap_or_else(|e| panic!("{} fails validate --no-env:\n{e}", dir.display()));
    }
}

#[test]
fn every_example_file_matches_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(&config::schema::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for dir in example_dirs() {
        let mut files = vec![];
        yaml_files(&dir, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
            for doc in docs {
                let problems: Vec<String> =
                    validator.iter_errors(&doc).map(|e| e.to_string()).collect();
                assert!(problems.is_empty(), "{}: {problems:?}", f.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} documents checked");
}
