//! The source follows its layers (SPEC §12, README "Architecture"): no
//! import cycle between top-level modules, `config` pure (it imports only
//! the shared vocabulary) and `model` at the bottom (it imports nothing from
//! the crate). Read from the source text, so a new `use crate::…` that breaks
//! a layer fails here, with the files that do it.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → (module it imports → files that import it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module names that follow `crate::` in `text`, comments excluded.
fn imported(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(&src, f))
        .filter(|m| !matches!(m.as_str(), "lib" | "main"))
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let from = top_module(&src, file);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in imported(&text) {
            if to != from && modules.contains(&to) {
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(shown);
            }
        }
        graph.entry(from).or_default();
    }
    graph
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(graph: &Graph, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flat_map(|m| m.keys()) {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let graph = graph();
    assert!(graph.len() >= 10, "modules not found: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} in {:?}", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            panic!("import cycle {}:\n{}", cycle.join(" -> "), edges.join("\n"));
        }
    }
}

#[test]
fn config_is_pure_and_model_is_the_bottom() {
    let graph = graph();
    let config: Vec<&String> = graph["config"].keys().collect();
    assert_eq!(config, ["model"], "config imports {:?}", graph["config"]);
    assert!(
        graph["model"].is_empty(),
        "model imports {:?}",
        graph["model"]
    );
}

#[test]
fn the_import_reader_sees_uses_and_skips_comments() {
    let text = "use crate::queue::Queue;\n// see crate::daemon\nlet x = crate::model::envelope::event(e);\n";
    let found: Vec<String> = imported(text).into_iter().collect();
    assert_eq!(found, ["model", "queue"]);
}

#[test]
fn a_cycle_is_found() {
    let mut graph = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.to_owned())
            .or_default()
            .entry(b.to_owned())
            .or_default()
            .insert(format!("{a}.rs"));
    };
    edge(&mut graph, "inbound", "runtime");
    edge(&mut graph, "runtime", "config");
    assert_eq!(cycle_through(&graph, "inbound"), None);
    edge(&mut graph, "config", "inbound");
    let cycle = cycle_through(&graph, "inbound").unwrap();
    assert_eq!(cycle, ["inbound", "runtime", "config", "inbound"]);
}
