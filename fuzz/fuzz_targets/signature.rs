//! Fuzz target: see `fuzz/checks/signature.rs`, which `cargo test` also runs
//! on the committed corpus.

#![no_main]

#[path = "../checks/signature.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
