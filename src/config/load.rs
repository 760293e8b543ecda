//! Loading: find the files, interpolate `${VAR}`, parse every YAML
//! document into a [`Node`] tree, and split the merged documents into raw
//! sections and items, each deserialized on its own (see `node.rs`).
//!
//! Merge rules: list sections (`triggers`, `actions`, `workflows`,
//! `subscriptions`, `tokens`, `event_types`) concatenate across documents
//! and files in load order; `secrets` merge by name; every other section
//! (`server`, `queue`, …) may be written once only, and a second one is an
//! error naming both places. Top-level keys starting with `x-` are ignored
//! (a place to keep YAML anchors).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::error::{Diagnostics, Pos};
use super::interp::{self, Lookup};
use super::node::{Kind, Node, Sp, deserialize_node};
use super::raw::*;
use super::runtime::SourceFile;

/// A deserialized section or item with where it starts.
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// The value.
    pub value: T,
    /// Position of its first node.
    pub pos: Pos,
}

/// Everything read from the files, before compilation.
#[derive(Debug, Default)]
pub struct RawSet {
    pub server: Option<Item<RawServer>>,
    pub defaults: Option<Item<RawDefaults>>,
    pub queue: Option<Item<RawQueue>>,
    pub history: Option<Item<RawHistory>>,
    pub idempotency: Option<Item<RawIdempotency>>,
    pub render: Option<Item<RawRender>>,
    pub reload: Option<Item<RawReload>>,
    pub egress: Option<Item<RawEgress>>,
    pub telemetry: Option<Item<super::telemetry::RawTelemetry>>,
    pub event_catalog: Option<Item<EventCatalog>>,
    /// Secret name (with position) → definition, and the declaring file's directory.
    pub secrets: Vec<(Sp<String>, RawSecret, PathBuf)>,
    pub tokens: Vec<Item<RawToken>>,
    pub event_types: Vec<Item<RawEventType>>,
    pub triggers: Vec<Item<RawTrigger>>,
    pub actions: Vec<Item<RawAction>>,
    pub workflows: Vec<Item<RawWorkflow>>,
    pub subscriptions: Vec<Item<RawSubscription>>,
    /// Loaded files, text before interpolation.
    pub sources: Vec<SourceFile>,
    /// Original text of each file by display name (to place errors inside values).
    pub texts: HashMap<Arc<str>, Arc<str>>,
}

const TOP_KEYS: &[&str] = &[
    "server",
    "defaults",
    "queue",
    "history",
    "idempotency",
    "render",
    "reload",
    "secrets",
    "tokens",
    "event_types",
    "event_catalog",
    "triggers",
    "actions",
    "workflows",
    "subscriptions",
    "egress",
    "telemetry",
];

/// The YAML files below `path` (or `path` itself), in load order.
pub fn find_files(path: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => walk(path, 0, &mut out, diags),
        Ok(_) => out.push(path.to_path_buf()),
        Err(e) => diags.error(
            &Pos::file_start(path),
            format!("cannot read the config path: {e} (give a YAML file or a directory with -c)"),
        ),
    }
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    // Symlinks are followed; the depth bound stops symlink loops.
    if depth > 16 {
        diags.error(
            &Pos::file_start(dir),
            "directories nested too deep (a symlink loop?)",
        );
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.error(&Pos::file_start(dir), format!("cannot read directory: {e}"));
            return;
        }
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, depth + 1, out, diags),
            Ok(_) => {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ext == "yaml" || ext == "yml" {
                    out.push(p);
                }
            }
            Err(e) => diags.error(&Pos::file_start(&p), format!("cannot read: {e}")),
        }
    }
}

/// Read, interpolate and parse every file into `set`.
pub fn load_files(
    files: &[PathBuf],
    lookup: &Lookup<'_>,
    set: &mut RawSet,
    diags: &mut Diagnostics,
) {
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(raw_text) => load_text(path, raw_text, lookup, set, diags),
            Err(e) => diags.error(&Pos::file_start(path), format!("cannot read file: {e}")),
        }
    }
}

/// Interpolate and parse the text of one file into `set`. `path` names the
/// file in errors, and its directory is where relative secret files are.
pub fn load_text(
    path: &Path,
    raw_text: String,
    lookup: &Lookup<'_>,
    set: &mut RawSet,
    diags: &mut Diagnostics,
) {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let (text, colmap, errors) = interp::interpolate(&raw_text, lookup);
    for (line, col, msg) in errors {
        diags.error(&Pos::new(&name, line, col), msg);
    }
    set.texts
        .insert(Arc::clone(&name), Arc::from(raw_text.as_str()));
    set.sources.push(SourceFile {
        path: path.to_path_buf(),
        raw_text,
    });
    let docs: Vec<Node> = match super::node::parse_documents(&text) {
        Ok(d) => d,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            let col = colmap.original(line, col);
            diags.error(&Pos::new(&name, line, col), yaml_message(&e));
            return;
        }
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for mut doc in docs {
        doc.restore_float_text(&text);
        doc.map_positions(&|line, col| colmap.original(line, col));
        split_document(&doc, &name, &dir, set, diags);
    }
}

/// serde-saphyr's message without its location suffix and snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // Advice meant for programmers using the library, not for config authors.
    match first.find(", set DuplicateKeyPolicy") {
        Some(i) => format!("{}; each key may appear once per map", &first[..i]),
        None => first.to_owned(),
    }
}

fn split_document(
    doc: &Node,
    file: &Arc<str>,
    dir: &Path,
    set: &mut RawSet,
    diags: &mut Diagnostics,
) {
    let pairs = match &doc.kind {
        Kind::Map(p) => p,
        Kind::Null => return,
        _ => {
            diags.error(
                &doc.pos(file),
                "a config document must be a map of top-level keys (triggers:, actions:, …)",
            );
            return;
        }
    };
    for (k, v) in pairs {
        let Some(key) = k.as_str() else {
            diags.error(&k.pos(file), "top-level keys must be strings");
            continue;
        };
        let kp = k.pos(file);
        match key {
            "server" => single(&mut set.server, key, v, &kp, file, diags),
            "defaults" => single(&mut set.defaults, key, v, &kp, file, diags),
            "queue" => single(&mut set.queue, key, v, &kp, file, diags),
            "history" => single(&mut set.history, key, v, &kp, file, diags),
            "idempotency" => single(&mut set.idempotency, key, v, &kp, file, diags),
            "render" => single(&mut set.render, key, v, &kp, file, diags),
            "reload" => single(&mut set.reload, key, v, &kp, file, diags),
            "egress" => single(&mut set.egress, key, v, &kp, file, diags),
            "telemetry" => single(&mut set.telemetry, key, v, &kp, file, diags),
            "event_catalog" => single(&mut set.event_catalog, key, v, &kp, file, diags),
            "tokens" => list(&mut set.tokens, key, v, file, diags),
            "event_types" => list(&mut set.event_types, key, v, file, diags),
            "triggers" => list(&mut set.triggers, key, v, file, diags),
            "actions" => list(&mut set.actions, key, v, file, diags),
            "workflows" => list(&mut set.workflows, key, v, file, diags),
            "subscriptions" => list(&mut set.subscriptions, key, v, file, diags),
            "secrets" => secrets(set, v, file, dir, diags),
            k if k.starts_with("x-") => {}
            other => diags.error(
                &kp,
                format!(
                    "unknown top-level key `{other}`, expected one of {} (or an `x-` key)",
                    TOP_KEYS.join(", ")
                ),
            ),
        }
    }
}

fn single<T: DeserializeOwned>(
    slot: &mut Option<Item<T>>,
    key: &str,
    v: &Node,
    kp: &Pos,
    file: &Arc<str>,
    diags: &mut Diagnostics,
) {
    if let Some(first) = slot {
        diags.error(
            kp,
            format!(
                "`{key}` is defined twice (first at {}); write it once",
                first.pos
            ),
        );
        return;
    }
    match deserialize_node::<T>(v, file) {
        Ok(value) => {
            *slot = Some(Item {
                value,
                pos: kp.clone(),
            })
        }
        Err((pos, msg)) => diags.error(&pos, msg),
    }
}

fn list<T: DeserializeOwned>(
    out: &mut Vec<Item<T>>,
    key: &str,
    v: &Node,
    file: &Arc<str>,
    diags: &mut Diagnostics,
) {
    let items = match &v.kind {
        Kind::Seq(items) => items,
        Kind::Null => return,
        _ => {
            diags.error(
                &v.pos(file),
                format!("`{key}` must be a list (`- id: …` items)"),
            );
            return;
        }
    };
    for n in items {
        match deserialize_node::<T>(n, file) {
            Ok(value) => out.push(Item {
                value,
                pos: n.pos(file),
            }),
            Err((pos, msg)) => diags.error(&pos, msg),
        }
    }
}

fn secrets(set: &mut RawSet, v: &Node, file: &Arc<str>, dir: &Path, diags: &mut Diagnostics) {
    let pairs = match &v.kind {
        Kind::Map(p) => p,
        Kind::Null => return,
        _ => {
            diags.error(
                &v.pos(file),
                "`secrets` must be a map: NAME: { env: VAR } or { file: PATH }",
            );
            return;
        }
    };
    for (k, val) in pairs {
        let Some(name) = k.as_str() else {
            diags.error(&k.pos(file), "secret names must be strings");
            continue;
        };
        match deserialize_node::<RawSecret>(val, file) {
            Ok(raw) => set.secrets.push((
                Sp {
                    value: name.to_owned(),
                    pos: k.pos(file),
                },
                raw,
                dir.to_path_buf(),
            )),
            Err((pos, msg)) => diags.error(&pos, msg),
        }
    }
}
