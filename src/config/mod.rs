//! Configuration: YAML files → checked, compiled runtime [`Config`].
//!
//! Pipeline (each stage collects every error with `file:line:col`):
//! 1. `load.rs`: find the files (a file, or a directory walked recursively
//!    in sorted order, `.`-entries skipped, symlinks followed), interpolate
//!    `${VAR}` (`interp.rs`), parse every YAML document into a position-aware
//!    node tree and deserialize each section and list item on its own
//!    (`node.rs` explains the two passes) into the raw types (`raw.rs`,
//!    `raw_items.rs`; these also generate the JSON Schema, `schema.rs`).
//! 2. `compile.rs` (+ `compile_items.rs`, `compile_trigger.rs`): resolve
//!    secrets and references, parse durations/sizes/rates (`units.rs`),
//!    CIDRs, JSONPaths, templates and expressions (`templates.rs`, one
//!    shared minijinja environment), apply defaults → `runtime.rs` types.
//!
//! Entry point: [`load`].

use std::collections::HashMap;
use std::path::Path;

pub mod compile;
mod compile_items;
mod compile_trigger;
pub mod error;
pub mod interp;
mod leaf;
pub mod load;
pub mod node;
pub mod raw;
pub mod raw_items;
pub mod reload;
pub mod runtime;
mod runtime_trigger;
pub mod schema;
pub mod secret;
pub mod spanned;
mod tags;
pub mod templates;
pub mod tokens;
pub mod units;

pub use error::{ConfigError, ConfigErrors, Pos};
pub use raw::{EventCatalog, Ordering, QueueBackend, Scope, SigningScheme};
pub use raw_items::{
    Encoding, Handshake, Method, Otherwise, SignaturePreset, ValueType, WorkflowMode,
};
pub use runtime::*;
pub use secret::Secret;
pub use templates::{Expr, JsonTemplate, Template, Templates};
pub use units::Rate;

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Do not resolve `${VAR}` references and secrets (`validate --no-env`):
    /// `${VAR:-default}` takes its default, other references stay as text
    /// and the checks of values holding them are skipped; secrets are empty.
    pub no_env: bool,
    /// Variables to use instead of the process environment (tests).
    pub env: Option<HashMap<String, String>>,
}

/// Load, check and compile the config at `path` (a file or a directory).
/// On failure every error is returned, each with `file:line:col`.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    let lookup = |name: &str| -> Option<String> {
        match &opts.env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    };
    let interp_lookup = if opts.no_env {
        interp::Lookup::NoEnv
    } else {
        interp::Lookup::Env(&lookup)
    };
    let mut diags = error::Diagnostics::default();
    let files = load::find_files(path, &mut diags);
    if files.is_empty() && diags.errors.is_empty() {
        diags.error(&Pos::file_start(path), "no *.yaml or *.yml files found");
    }
    let mut set = load::RawSet::default();
    load::load_files(&files, &interp_lookup, &mut set, &mut diags);
    match compile::compile(set, &mut diags, opts.no_env, &lookup) {
        Some(config) => Ok(config),
        None => Err(ConfigErrors::from_diagnostics(diags)),
    }
}
