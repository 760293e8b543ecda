//! The JSON Schema of the config format, generated from the raw types.
//! `hookyard schema` prints it; `schema/hookyard.schema.json` must equal it
//! (a test checks; regenerate with `UPDATE_SCHEMA=1 cargo test --test it schema`).

use super::raw::RawConfig;

/// The schema as pretty JSON with a trailing newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
