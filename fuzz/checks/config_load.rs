//! Fuzz check: arbitrary bytes as one YAML config file through the real
//! loader and compiler (`hookyard::config::load_str`, the code behind
//! `hookyard::config::load`): `${VAR}` interpolation, YAML parsing,
//! section deserialization, compilation (units, CIDRs, JSONPaths,
//! templates, schemas) and the error positions of every stage.
//!
//! Any input must give a `Config` or a list of errors, never a panic. Each
//! input is loaded twice: with a fixed environment (as `hookyard run`) and
//! with `no_env` (as `hookyard validate --no-env`).
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/config_load.rs` and by
//! `cargo test` (`tests/it/fuzz_corpus.rs`), which replays the committed
//! corpus so an input that once crashed stays fixed.

use std::collections::HashMap;
use std::path::Path;

use hookyard::config::{LoadOptions, load_str};

/// Variables the seeds (examples/) refer to, so they compile all the way.
const ENV: &[(&str, &str)] = &[
    ("APP_TOKEN", "app-token-value"),
    (
        "BILLING_SIGNING_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    ("CHAT_WEBHOOK_URL", "https://chat.example/hook"),
    ("CRM_WEBHOOK_SECRET", "crm"),
    ("GITHUB_WEBHOOK_SECRET", "gh"),
    ("PARTNER_SIGNING_SECRET", "partner"),
    ("SHOP_HMAC", "shop"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_stripe"),
    ("ZAPIER_HOOK_URL", "https://hooks.example/zap"),
    ("S", "sec"),
];

/// Run one input; any input must return, never panic.
pub fn check(data: &[u8]) {
    // `load` reads files as UTF-8 and refuses anything else up front.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // A path that does not exist: relative secret `file:`s fail to read
    // rather than reaching the fuzzer's own files.
    let path = Path::new("/nonexistent/hookyard-fuzz/hookyard.yaml");
    for opts in [
        LoadOptions {
            no_env: false,
            env: Some(env),
        },
        LoadOptions {
            no_env: true,
            env: Some(HashMap::new()),
        },
    ] {
        match load_str(text, path, opts) {
            // Printing warnings and errors is part of what `validate` does.
            Ok(config) => config.warnings.iter().for_each(|w| drop(w.to_string())),
            Err(errors) => drop(errors.to_string()),
        }
    }
}
