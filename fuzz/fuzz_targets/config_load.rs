//! Fuzz target: see `fuzz/checks/config_load.rs`, which `cargo test` also runs
//! on the committed corpus.

#![no_main]

#[path = "../checks/config_load.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
