//! `hookyard-bench`: the whole-daemon benchmark tool of SPEC §10, the load
//! generator, receiver and ceiling server the scripts in bench/* build and
//! run. A workspace member of its own (bench/hookyard-bench), not shipped:
//! `cargo install --path .` and the Docker image carry only `hookyard`.
//!
//! Three pieces, each a subcommand, all loopback-only:
//! - `load`: POST load generator over keep-alive connections (closed loop
//!   or fixed rate), reporting req/s, status codes and latency percentiles.
//! - `ceiling`: the reference server a gateway is compared with: bare 202,
//!   or one Redis XADD per request (the "ingest ceiling").
//! - `receiver`: a delivery endpoint that measures ingest-to-delivery
//!   latency from the envelope's `timestamp`.
//!
//! Figures are only meaningful from a release build
//! (`cargo build --release -p hookyard-bench`) and as ratios against the
//! ceilings measured in the same run, on the same machine.

use clap::{Parser, Subcommand};

mod ceiling;
mod histogram;
mod load;
mod receiver;
mod request;

#[derive(Parser)]
#[command(
    name = "hookyard-bench",
    version,
    about = "Load generator, ceiling server and delivery receiver for hookyard benchmarks (loopback only)",
    after_help = "\
Typical runs (release build; compare ratios measured in the same run):
  ingest ceiling:   hookyard-bench ceiling --listen 127.0.0.1:9001 --redis redis://127.0.0.1:6379
                    hookyard-bench load --url http://127.0.0.1:9001/ --connections 64 --duration 10s
  bare HTTP:        hookyard-bench ceiling --listen 127.0.0.1:9002   (then the same load)
  delivery ceiling: hookyard-bench receiver --listen 127.0.0.1:9003
                    hookyard-bench load --client reqwest --url http://127.0.0.1:9003/ --connections 64 --duration 10s
                    (no separate subcommand: reqwest with 64 requests in flight IS the ceiling)
  hookyard ingest:  hookyard-bench load --url http://127.0.0.1:8080/v1/events -H 'Authorization: Bearer TOKEN'
  end to end:       point a subscription at the receiver, load /v1/events with --rate 2000/s,
                    then curl http://127.0.0.1:9003/stats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send POSTs on keep-alive connections and report req/s and latency.
    Load(Box<load::LoadArgs>),
    /// Answer 202 to every POST (optionally after one Redis XADD).
    Ceiling(ceiling::CeilingArgs),
    /// Receive deliveries and measure ingest-to-delivery latency.
    Receiver(receiver::ReceiverArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hookyard-bench: cannot start the tokio runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Print the error chain on one line, without anyhow's backtrace
    // (RUST_BACKTRACE is often set in dev shells; it helps nobody here).
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookyard-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // reqwest is built with `rustls-no-provider`; `--client reqwest` needs a
    // process-wide crypto provider even for plain http:// URLs. An Err only
    // means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Load(args) => load::run(*args).await,
        Command::Ceiling(args) => ceiling::run(args).await,
        Command::Receiver(args) => receiver::run(args).await,
    }
}
