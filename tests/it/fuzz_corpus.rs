//! The fuzz corpora replayed by `cargo test`: every committed input of
//! `fuzz/corpus/<target>/` (and any crash kept in `fuzz/artifacts/<target>/`)
//! goes through the same check the fuzz target runs, so an input that once
//! crashed hookyard stays fixed without a nightly toolchain or cargo-fuzz.

use std::path::Path;

#[path = "../../fuzz/checks/config_load.rs"]
mod config_load;
#[path = "../../fuzz/checks/inbound_map.rs"]
mod inbound_map;
#[path = "../../fuzz/checks/signature.rs"]
mod signature;
#[path = "../../fuzz/checks/template_render.rs"]
mod template_render;

/// Run `check` on every file kept for `target`; returns how many ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let Ok(data) = std::fs::read(&file) else {
                continue;
            };
            // A panic names the input, so it can be reproduced with
            // `cargo fuzz run <target> <file>`.
            eprintln!("replaying {}", file.display());
            check(&data);
            ran += 1;
        }
    }
    ran
}

#[test]
fn config_load_corpus_replays() {
    assert!(replay("config_load", config_load::check) >= 10);
}

#[test]
fn inbound_map_corpus_replays() {
    assert!(replay("inbound_map", inbound_map::check) >= 5);
}

#[test]
fn signature_corpus_replays() {
    assert!(replay("signature", signature::check) >= 5);
}

#[test]
fn template_render_corpus_replays() {
    assert!(replay("template_render", template_render::check) >= 5);
}
