//! The `hookyard` command line: run | validate | schema | render.

fn main() {
    eprintln!("hookyard: not yet implemented");
    std::process::exit(2);
}
