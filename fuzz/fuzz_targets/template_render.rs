//! Fuzz target: see `fuzz/checks/template_render.rs`, which `cargo test` also runs
//! on the committed corpus.

#![no_main]

#[path = "../checks/template_render.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
