//! The `hookyard` command line: run | validate | schema | render | keys |
//! health.
//!
//! `validate` and `run` use the same loader, so what validates is what runs.
//! Exit codes: 0 ok, 1 invalid config (or a Redis that would lose data,
//! SPEC §11), 2 usage or runtime failure. `health` answers 0 or 1 for any URL,
//! the codes a container HEALTHCHECK understands (a malformed flag is still
//! a usage error, 2).

mod health;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hookyard::config::{self, LoadOptions};

/// mimalloc instead of the system allocator: a profile of the daemon under
/// load showed glibc malloc/free/consolidate at ~30% of its CPU (many small
/// short-lived JSON values and buffers across worker threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hookyard", version, about = "Declarative webhook gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the config and serve until SIGTERM/SIGINT.
    Run {
        /// Config file or directory.
        #[arg(
            short = 'c',
            long = "config",
            env = "HOOKYARD_CONFIG",
            default_value = "./hookyard.yaml"
        )]
        config: PathBuf,
        /// Log format (default: text).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Accept and queue events but run no delivery workers: an
        /// ingest-only replica on a shared Redis queue (other replicas
        /// deliver), or holding every delivery for a maintenance window.
        #[arg(long, env = "HOOKYARD_NO_DELIVER")]
        no_deliver: bool,
    },
    /// Check the config; print every error as `file:line:col: message`.
    Validate {
        /// Config file or directory.
        #[arg(
            short = 'c',
            long = "config",
            env = "HOOKYARD_CONFIG",
            default_value = "./hookyard.yaml"
        )]
        config: PathBuf,
        /// Do not resolve `${VAR}` references and secrets (for CI).
        #[arg(long)]
        no_env: bool,
    },
    /// Print the JSON Schema of the config format.
    Schema,
    /// Show what an event would do: the mapped event, the workflows and
    /// subscriptions it matches, and each HTTP request that would be sent.
    /// Sends nothing.
    Render {
        /// Config file or directory.
        #[arg(
            short = 'c',
            long = "config",
            env = "HOOKYARD_CONFIG",
            default_value = "./hookyard.yaml"
        )]
        config: PathBuf,
        /// Trigger the request would arrive on (with --body).
        #[arg(long, requires = "body", conflicts_with = "event")]
        trigger: Option<String>,
        /// Request body file for --trigger.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Request header for --trigger, `Name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// An event as JSON: {"type", "data", "id"?, "timestamp"?, "source"?}.
        #[arg(long, required_unless_present = "trigger")]
        event: Option<PathBuf>,
    },
    /// GET a URL and exit 0 on a 2xx answer, else 1 with the reason on
    /// stderr: the container image's HEALTHCHECK (the image has no curl).
    /// Loopback is fine here: the delivery egress policy does not apply.
    Health {
        /// The URL to check, usually the daemon's `/readyz`.
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
        /// Give up after this long (SPEC §9: a 2xx within 2 s).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Signing keys: print what receivers need to verify.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the `whpk_` public key of a `whsk_` (Ed25519) signing secret,
    /// for receivers to verify Standard Webhooks `v1a` signatures. Never
    /// prints the secret itself.
    Public {
        /// Config file or directory.
        #[arg(
            short = 'c',
            long = "config",
            env = "HOOKYARD_CONFIG",
            default_value = "./hookyard.yaml"
        )]
        config: PathBuf,
        /// Name of the secret under `secrets:`.
        #[arg(long)]
        secret: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema => {
            print!("{}", config::schema::schema_json());
            ExitCode::SUCCESS
        }
        Command::Validate { config, no_env } => validate(&config, no_env),
        Command::Health { url, timeout } => health::check(&url, timeout),
        Command::Keys {
            command: KeysCommand::Public { config, secret },
        } => public_key(&config, &secret),
        Command::Render {
            config,
            trigger,
            body,
            headers,
            event,
        } => {
            let input = match (trigger, body, event) {
                (Some(trigger), Some(body), _) => RenderInput::Trigger {
                    trigger,
                    body,
                    headers,
                },
                (_, _, Some(event)) => RenderInput::Event(event),
                _ => {
                    eprintln!("hookyard render: give --trigger ID --body FILE, or --event FILE");
                    return ExitCode::from(2);
                }
            };
            render(&config, input)
        }
        Command::Run {
            config,
            log_format,
            no_deliver,
        } => match run(&config, log_format, !no_deliver) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("hookyard: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn validate(path: &std::path::Path, no_env: bool) -> ExitCode {
    match config::load(path, LoadOptions { no_env, env: None }) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{}: warning: {}", w.pos, w.message);
            }
            println!(
                "ok: {} triggers, {} actions, {} workflows, {} subscriptions, {} secrets, {} tokens",
                c.triggers.len(),
                c.actions.len(),
                c.workflows.len(),
                c.subscriptions.len(),
                c.secrets.len(),
                c.tokens.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            println!("{errs}");
            eprintln!("{} error(s) in {}", errs.errors.len(), path.display());
            ExitCode::from(1)
        }
    }
}

/// `keys public`: the public key of secret `name`, on stdout.
fn public_key(path: &std::path::Path, name: &str) -> ExitCode {
    let cfg = match config::load(path, LoadOptions::default()) {
        Ok(c) => c,
        Err(errs) => {
            println!("{errs}");
            return ExitCode::from(1);
        }
    };
    let Some(secret) = cfg.secrets.get(name) else {
        let mut known: Vec<&str> = cfg.secrets.keys().map(String::as_str).collect();
        known.sort_unstable();
        eprintln!(
            "hookyard keys public: no secret `{name}` under `secrets:` (declared: {})",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    match hookyard::model::signing::public_key_of(secret.expose()) {
        Some(Ok(public)) => {
            println!("{public}");
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("hookyard keys public: secret `{name}`: {e}");
            ExitCode::from(1)
        }
        None => {
            eprintln!(
                "hookyard keys public: secret `{name}` is not an Ed25519 signing key \
                 (its value does not start with `whsk_`), so it has no public key; \
                 HMAC secrets (`whsec_` or raw) are shared with the receiver instead"
            );
            ExitCode::from(2)
        }
    }
}

/// What `render` starts from.
enum RenderInput {
    /// A request to a trigger: `--trigger ID --body FILE [--header K:V]…`.
    Trigger {
        trigger: String,
        body: PathBuf,
        headers: Vec<String>,
    },
    /// An event file: `--event FILE`.
    Event(PathBuf),
}

fn render(path: &std::path::Path, input: RenderInput) -> ExitCode {
    use hookyard::preview::{self, TriggerOutcome};
    let cfg = match config::load(path, LoadOptions::default()) {
        Ok(c) => c,
        Err(errs) => {
            println!("{errs}");
            return ExitCode::from(1);
        }
    };
    let (event, trigger) = match input {
        RenderInput::Trigger {
            trigger,
            body,
            headers,
        } => {
            let bytes = match std::fs::read(&body) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("hookyard render: cannot read {}: {e}", body.display());
                    return ExitCode::from(2);
                }
            };
            let outcome = preview::parse_headers(&headers)
                .and_then(|h| preview::event_from_request(&cfg, &trigger, &h, &bytes));
            println!(
                "note: render does not check the trigger's `verify:` rules \
                 (signature, ip_allow, bearer/basic) nor its rate limit"
            );
            match outcome {
                Ok(TriggerOutcome::Event(event)) => (event, Some(trigger)),
                Ok(TriggerOutcome::Ignored) => {
                    println!(
                        "trigger {trigger} ignores this request (`otherwise: ignore`): \
                         it would answer 204 and enqueue nothing"
                    );
                    return ExitCode::SUCCESS;
                }
                Ok(TriggerOutcome::Handshake) => {
                    println!(
                        "this is a handshake request: trigger {trigger} answers it \
                         itself and enqueues nothing"
                    );
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("hookyard render: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        RenderInput::Event(event_path) => {
            let text = match std::fs::read_to_string(&event_path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("hookyard render: cannot read {}: {e}", event_path.display());
                    return ExitCode::from(2);
                }
            };
            match serde_json::from_str::<preview::EventFile>(&text) {
                Ok(f) => (f.into_event(), None),
                Err(e) => {
                    eprintln!(
                        "hookyard render: {} is not an event ({{\"type\", \"data\", ...}}): {e}",
                        event_path.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    print!(
        "{}",
        preview::preview(
            &cfg,
            &event,
            trigger.as_deref(),
            preview::Signatures::Computed
        )
    );
    ExitCode::SUCCESS
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(path: &std::path::Path, log_format: LogFormat, deliver: bool) -> anyhow::Result<ExitCode> {
    init_logs(log_format);
    let cfg = match config::load(path, LoadOptions::default()) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.errors {
                tracing::error!(target: "hookyard::config", "{e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &cfg.warnings {
        tracing::warn!(target: "hookyard::config", "{w}");
    }
    tracing::info!(
        listen = %cfg.server.listen,
        queue = ?cfg.queue.backend,
        triggers = cfg.triggers.len(),
        workflows = cfg.workflows.len(),
        subscriptions = cfg.subscriptions.len(),
        "config loaded from {}",
        path.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let listeners = hookyard::daemon::Listeners::bind(&cfg.server).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = wait_for_shutdown().await {
                tracing::error!("{e:#}");
            }
            signal.cancel();
        });
        let opts = hookyard::daemon::RunOptions { deliver };
        hookyard::daemon::run(cfg, path.to_owned(), listeners, shutdown, opts).await
    });
    // `run` returned by shutdown_delay + shutdown_grace; deliveries still
    // running are abandoned here (their jobs stay queued), and blocking
    // tasks get a short moment instead of being waited for, so the process
    // exits within the second SPEC §11 allows after that.
    rt.shutdown_timeout(std::time::Duration::from_millis(300));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A setting the operator must change (an unsafe Redis) exits 1,
        // like an invalid config; the message says what to change.
        Err(e) if e.exit_code() == 1 => {
            tracing::error!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
