//! `hookyard-bench ceiling`: the bare server SPEC §10 measures hookyard
//! against. It answers `202` to every POST, doing nothing else ("bare hyper
//! server"), or, with `--redis`, one `XADD` of the body per request to the
//! stream `hookyard-bench:ceiling` (capped with `MAXLEN ~ 100000`) before
//! answering: the **ingest ceiling**, the most any durable-before-2xx
//! gateway could do on this machine.
//!
//! Plain hyper HTTP/1.1 with `service_fn`, no router and no middleware, so
//! the figure is the cost of HTTP (+ one Redis round trip) and nothing more.
//! All requests share one multiplexed Redis connection, which pipelines the
//! concurrent XADDs the way a real daemon's connection manager would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::request::{loopback_listen, loopback_url};

/// The stream written with --redis.
pub const STREAM: &str = "hookyard-bench:ceiling";
/// Approximate cap of that stream, so long runs do not fill memory.
const MAXLEN: u64 = 100_000;

#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    /// Address to listen on (loopback only), e.g. 127.0.0.1:8080 or
    /// 127.0.0.1:0 for any free port (printed at start).
    #[arg(long)]
    listen: SocketAddr,
    /// Do one XADD per request to this Redis (loopback only), e.g.
    /// redis://127.0.0.1:6379.
    #[arg(long)]
    redis: Option<url::Url>,
}

struct State {
    redis: Option<redis::aio::MultiplexedConnection>,
    served: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(args: CeilingArgs) -> anyhow::Result<()> {
    let listen = loopback_listen(args.listen)?;
    let redis = match &args.redis {
        Some(url) => {
            loopback_url(url).await?;
            let client = redis::Client::open(url.as_str())
                .with_context(|| format!("bad --redis URL {url}"))?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("cannot connect to Redis at {url}"))?;
            Some(conn)
        }
        None => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let mode = if redis.is_some() {
        format!("XADD to {STREAM} per request")
    } else {
        "bare 202".to_string()
    };
    println!("ceiling listening on http://{local}/ ({mode}); Ctrl-C to stop");
    let state = Arc::new(State {
        redis,
        served: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started = std::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        eprintln!("accept failed: {err}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    let served = state.served.load(Ordering::Relaxed);
    let failed = state.failed.load(Ordering::Relaxed);
    println!(
        "ceiling served {served} requests ({failed} Redis failures) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

type Body = http_body_util::Either<Empty<Bytes>, Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    if let Some(conn) = &state.redis {
        let mut conn = conn.clone();
        let added: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(MAXLEN)
            .arg("*")
            .arg("body")
            .arg(body.as_ref())
            .query_async(&mut conn)
            .await;
        if let Err(err) = added {
            state.failed.fetch_add(1, Ordering::Relaxed);
            let mut response = Response::new(Body::Right(Full::new(Bytes::from(err.to_string()))));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(response);
        }
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    Ok(status(StatusCode::ACCEPTED))
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Left(Empty::new()));
    *response.status_mut() = code;
    response
}
